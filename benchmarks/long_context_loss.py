"""Validation loss by position of trained causal-LM runs (td-long-lm and its full-attention variants), side by side.

Each run folder (written by `tformer train`) holds its model in final/ and its prepared validation tokens in
data/val.bin; each model is scored on non-overlapping windows of its own length (its max_positions, or
--window), and the losses are averaged by position bucket (0-512, 512-2k, 2k-4k, ...; see
tformer.training.position_loss). A bucket past a model's window is left empty: that model never sees so far back.
Runs compared must share a tokenizer (the td-long-lm recipes prepare the same BPE from the same books).

    PYTHONPATH=src .venv/bin/python benchmarks/long_context_loss.py runs/td-long-lm runs/td-long-lm-full-512
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from long_attention_options import OneLineParser
from tformer.training.position_loss import PositionLoss, bucket_edges, position_losses


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="long_context_loss.py", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders of `tformer train` (final/ and data/val.bin)")
    p.add_argument("--window", type=int, default=None, help="window length (default: each model's max_positions)")
    p.add_argument("--max-windows", type=int, default=16, help="windows scored per run (default 16; 0: all)")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--plot", type=Path, default=None, help="also draw the loss against position (log-spaced "
                   "bins, one line per run) to this .png or .svg (needs matplotlib)")
    return p


def val_tokens(run: Path) -> torch.Tensor:
    meta_path, val_path = run / "data" / "meta.json", run / "data" / "val.bin"
    if not (meta_path.is_file() and val_path.is_file()):
        raise ValueError(f"{run} has no data/val.bin and data/meta.json; give a `tformer train` causal_lm run folder")
    dtype = json.loads(meta_path.read_text())["dtype"]
    return torch.from_numpy(np.fromfile(val_path, dtype=dtype).astype(np.int64))


def score(run: Path, args: argparse.Namespace) -> PositionLoss:
    import tformer

    if not (run / "final").is_dir():
        raise ValueError(f"{run} has no final/ model; train it to the end (or point at a finished run)")
    model = tformer.from_pretrained(run / "final")
    window = args.window or model.config.max_positions
    return position_losses(model, val_tokens(run), window, batch_size=args.batch_size,
                           max_windows=args.max_windows or None)


def side_by_side(names: list[str], losses: list[PositionLoss]) -> str:
    """One row per bucket of the longest window, one column per run (empty past that run's window)."""
    edges = bucket_edges(max(loss.window for loss in losses))
    rows = ["| positions | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for a, b in pairwise(edges):
        cells = [f"{loss.per_position[a:b].mean().item():.4f}" if b <= loss.window else "" for loss in losses]
        rows.append(f"| {a:,}-{b:,} | " + " | ".join(cells) + " |")
    rows.append("| window x windows scored | " + " | ".join(f"{x.window:,} x {x.windows}" for x in losses) + " |")
    rows.append("| all (perplexity) | " + " | ".join(f"{x.mean:.4f} ({math.exp(x.mean):.1f})" for x in losses) + " |")
    return "\n".join(rows)


def log_bins(window: int) -> list[int]:
    """Bin edges 0, 1, 2, 4, 8, ... ending at `window`: the loss curve over positions, finer where it moves most."""
    edges = [0, 1]
    while edges[-1] < window:
        edges.append(min(2 * edges[-1], window))
    return edges


def curve(loss: PositionLoss) -> list[tuple[int, int, float]]:
    """(start, end, mean loss) of each log-spaced bin of a run's window."""
    return [(a, b, loss.per_position[a:b].mean().item()) for a, b in pairwise(log_bins(loss.window))]


def plot(names: list[str], losses: list[PositionLoss], path: Path) -> bool:
    """Mean loss per log-spaced position bin, one line per run; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, loss in zip(names, losses, strict=True):
        bins = curve(loss)
        # the prediction at position p reads p + 1 tokens: bin [a, b) spans a + 1 to b tokens of context
        ax.plot([((a + 1) * b) ** 0.5 for a, b, _ in bins], [m for *_, m in bins],
                marker="o", markersize=3, label=f"{name} (window {loss.window:,})")
    ax.set_xscale("log")
    ax.set_xlabel("tokens of context the prediction reads (position in the window + 1)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title("next-token loss by position")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("window", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be at least 1")
    if args.max_windows < 0 or args.batch_size < 1:
        parser.error("--max-windows must be 0 (all) or more and --batch-size at least 1")
    if args.plot and (args.plot.suffix.lower() not in (".png", ".svg") or not args.plot.parent.is_dir()):
        parser.error(f"--plot {args.plot}: give a .png or .svg file in a folder that exists")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        losses = [score(run, args) for run in args.runs]
    except ValueError as error:
        parser.error(str(error))
    text = side_by_side([run.name for run in args.runs], losses)
    print(text)
    if args.json:
        figures = {str(run): {"window": x.window, "windows": x.windows, "buckets": x.buckets, "mean": x.mean,
                              "curve": curve(x)}
                   for run, x in zip(args.runs, losses, strict=True)}
        args.json.write_text(json.dumps(figures, indent=1))
    try:
        if args.plot and not plot([run.name for run in args.runs], losses, args.plot):
            print("no plot: matplotlib is not installed (pip install 'tformer[viz]')", file=sys.stderr)
    except OSError as error:
        parser.error(f"--plot {args.plot}: cannot write it ({error.strerror})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
