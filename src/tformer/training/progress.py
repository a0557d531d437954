"""What a run shows and records: a tqdm bar (or plain lines), metrics.jsonl, TensorBoard, loss.png."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


class RunLog:
    """Progress and metrics of one run (rank 0 only): `train(step, metrics)`, `eval(step, metrics)`, `close()`.

    Every record goes to RUN/metrics.jsonl as {"step", "split", "time", ...metrics}; TensorBoard scalars under
    RUN/tensorboard when `tensorboard` is installed and wanted; `close()` draws RUN/loss.png when matplotlib is.
    """

    def __init__(self, run_dir: Path, *, max_steps: int, start_step: int = 0, progress: str = "auto",
                 tensorboard: bool = True, plot: bool = True, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.plot = plot and enabled
        self.stream = stream or sys.stderr
        self.began = time.perf_counter()
        self.history: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
        self._jsonl = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # a resumed run redoes the steps after its checkpoint: their old events go
                self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step
                                             else None)
            except ImportError:
                self._writer = None
        mode = progress if progress != "auto" else ("bar" if self.stream.isatty() else "lines")
        self.mode = mode
        if mode == "bar":
            self._bar = tqdm(total=max_steps, initial=start_step, unit="step", file=self.stream, dynamic_ncols=True)

    def message(self, text: str) -> None:
        """A line for the person watching (above the bar when there is one)."""
        if not self.enabled or self.mode == "none":
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _record(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if self._jsonl is not None:
            row = {"step": step, "split": split, "time": round(time.perf_counter() - self.began, 3), **metrics}
            self._jsonl.write(json.dumps(row) + "\n")
            self._jsonl.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{split}/{key}", value, step)
        if "loss" in metrics:
            self.history[split].append((step, float(metrics["loss"])))

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def train(self, step: int, metrics: dict[str, float]) -> None:
        """Training metrics after `step` optimizer steps: loss, lr, tokens/s, ..."""
        if not self.enabled:
            return
        self._record(step, "train", metrics)
        if self._bar is not None:
            self._bar.set_postfix({k: _short(metrics[k]) for k in ("loss", "lr", "tok/s") if k in metrics},
                                  refresh=False)
        elif self.mode == "lines":
            self.message(f"step {step}: " + ", ".join(f"{k} {_short(v)}" for k, v in metrics.items()))

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._record(step, "eval", metrics)
        self.message(f"eval at step {step}: " + ", ".join(f"{k} {_short(v)}" for k, v in metrics.items()))

    def close(self, error: BaseException | None = None) -> Path | None:
        """Close the files; write loss.png (train and eval loss against step) when matplotlib is installed.

        With `error` (the run is failing) nothing more is drawn and nothing raised: a full disk's error in flight
        stays the one the user sees, not buried under a second failure of the plot.
        """
        if not self.enabled:
            return None
        closers = [c for c in (self._bar, self._jsonl, self._writer) if c is not None]
        for closer in closers:
            if error is None:
                closer.close()
            else:
                with contextlib.suppress(Exception):
                    closer.close()
        if error is not None or not self.plot:
            return None
        return plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")


def drop_rows_after(metrics_path: Path, step: int) -> int:
    """Remove the rows of metrics.jsonl past `step` (a resumed run logs those steps again); returns how many.

    A line that is not JSON (cut off by a kill) goes too. The file is rewritten under a temporary name.
    """
    if not metrics_path.is_file():
        return 0
    kept, dropped = [], 0
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = metrics_path.with_name(metrics_path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        tmp.replace(metrics_path)
    return dropped


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.4g}"
    return str(value)


def plot_losses(metrics_path: Path, out: Path) -> Path | None:
    """loss.png from a metrics.jsonl: training loss (and evaluation loss) against the optimizer step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[str, tuple[list[int], list[float]]] = {}
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "loss" in row:
            steps, losses = series.setdefault(row["split"], ([], []))
            steps.append(row["step"])
            losses.append(row["loss"])
    if not series:
        return None
    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    for split, (steps, losses) in series.items():
        axes.plot(steps, losses, marker="o" if split == "eval" else None, markersize=3, label=f"{split} loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(out)
    return out
