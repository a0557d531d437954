"""benchmarks/scaling.py's report: the fits of L(N) and L(D), results.json, results.md and the two plots."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaling_fit import fit_power_law


def fits(points: list[dict[str, Any]]) -> dict[str, Any]:
    """L(N) for each data amount (over the sizes), L(D) for the largest model (over the data amounts)."""
    by_n: dict[str, Any] = {}
    for tokens in sorted({p["data_tokens"] for p in points}):
        row = [p for p in points if p["data_tokens"] == tokens]
        by_n[str(tokens)] = _fit([p["non_embedding_parameters"] for p in row], [p["val_loss"] for p in row])
    largest = max(p["non_embedding_parameters"] for p in points)
    row = [p for p in points if p["non_embedding_parameters"] == largest]
    return {"loss_vs_params": by_n, "loss_vs_data": {"non_embedding_parameters": largest,
                                                     **_fit([p["data_tokens"] for p in row],
                                                            [p["val_loss"] for p in row])}}


def _fit(xs: list[float], ys: list[float]) -> dict[str, Any]:
    try:
        return fit_power_law(xs, ys)
    except ValueError as error:
        return {"error": str(error)}


def _alpha(fit: dict[str, Any]) -> str:
    if "error" in fit:
        return f"no fit ({fit['error']})"
    se = f" ± {fit['alpha_se']:.3f}" if fit["alpha_se"] is not None else " (no standard error: 3 points)"
    bound = "; at a bound of the search, so not pinned down by these points" if fit["at_bound"] else ""
    return f"α = {fit['alpha']:.3f}{se}, L∞ = {fit['l_inf']:.3f}, X_c = {_x_c(fit)}, rms residual " \
           f"{fit['rms_residual']:.4f}{bound}"


def _x_c(fit: dict[str, Any]) -> str:
    return f"{fit['x_c']:.3g}" if fit["x_c"] is not None else f"e^{fit['log_x_c']:.0f}"


def markdown(report: dict[str, Any]) -> str:
    s, points = report["settings"], report["points"]
    lines = ["# Does scale help? (benchmarks/scaling.py)", "",
             f"Command: `{report['command']}`; training took {report['train_seconds'] / 3600:.2f} h in all "
             f"(this invocation {report['wall_seconds'] / 60:.1f} min) at {s['threads']} thread(s).", "",
             f"Every point: {s['steps']} steps x {s['batch_size']} x {s['block_size']} = "
             f"{s['steps'] * s['batch_size'] * s['block_size']:,} training tokens; BPE vocabulary "
             f"{report['vocab_size']:,} trained once on {len(report['files'])} book file(s); validation loss on the "
             f"same {s['eval_batches']} fixed windows of the held-out last {s['val_fraction']:.0%} of the books.", "",
             "| size | layers | d_model | heads | non-embedding N | data tokens D | epochs | C = 6 N tokens (FLOPs) "
             "| val loss | SST-2 zero-shot |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        sst2 = (f"{p['sst2']['accuracy']:.3f} ({p['sst2']['examples']}, chance {p['sst2']['chance']:.2f})"
                if p["sst2"] else "-")
        lines.append(f"| {p['size']} | {p['n_layers']} | {p['d_model']} | {p['n_heads']} | "
                     f"{p['non_embedding_parameters']:,} | {p['data_tokens']:,} | {p['epochs']:.1f} | "
                     f"{p['compute_flops']:.3g} | {p['val_loss']:.4f} | {sst2} |")
    lines += ["", "## Fits: L(X) = (X_c / X)^α + L∞", ""]
    for tokens, fit in report["fits"]["loss_vs_params"].items():
        lines.append(f"- L(N) on {int(tokens):,} data tokens: {_alpha(fit)}")
    by_d = report["fits"]["loss_vs_data"]
    lines.append(f"- L(D) of the largest model (N = {by_d['non_embedding_parameters']:,}): {_alpha(by_d)}")
    lines += ["", "![loss against parameters](loss_vs_params.png)", "",
              "![loss against compute](loss_vs_compute.png)", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    """loss_vs_params.png (a line per data amount, with its fit) and loss_vs_compute.png (training curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from scaling_fit import power_law

    points = report["points"]
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for tokens, fit in report["fits"]["loss_vs_params"].items():
        row = sorted((p for p in points if p["data_tokens"] == int(tokens)),
                     key=lambda p: p["non_embedding_parameters"])
        xs = [p["non_embedding_parameters"] for p in row]
        line = axis.plot(xs, [p["val_loss"] for p in row], "o", label=f"D = {int(tokens):,} tokens")[0]
        if "error" not in fit:
            grid = np.geomspace(min(xs), max(xs), 50)
            axis.plot(grid, power_law(grid, fit["log_x_c"], fit["alpha"], fit["l_inf"]), "-",
                      color=line.get_color(), alpha=0.7)
    axis.set(xscale="log", xlabel="non-embedding parameters N", ylabel="validation loss (nats/token)",
             title="Loss against model size, a line per data amount")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "loss_vs_params.png", dpi=120)
    plt.close(figure)
    _plot_compute(report, out, plt)


def _plot_compute(report: dict[str, Any], out: Path, plt: Any) -> None:
    """Each size's training loss against C = 6 N tokens-so-far, on the largest data amount; its final val loss."""
    points = report["points"]
    largest = max(p["data_tokens"] for p in points)
    tokens_per_step = report["settings"]["batch_size"] * report["settings"]["block_size"]
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for p in sorted((p for p in points if p["data_tokens"] == largest), key=lambda p: p["non_embedding_parameters"]):
        rows = [json.loads(line) for line in (Path(p["run"]) / "metrics.jsonl").read_text().splitlines() if line]
        train = [(r["step"], r["loss"]) for r in rows if r["split"] == "train" and "loss" in r]
        n = p["non_embedding_parameters"]
        line = axis.plot([6 * n * s * tokens_per_step for s, _ in train], [loss for _, loss in train], "-",
                         label=f"{p['size']} (N = {n:,})")[0]
        axis.plot([p["compute_flops"]], [p["val_loss"]], "o", color=line.get_color())
    axis.set(xscale="log", yscale="log", xlabel="training compute C = 6 N tokens (FLOPs)", ylabel="loss",
             title=f"Training loss against compute (D = {largest:,}); dots: validation")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "loss_vs_compute.png", dpi=120)
    plt.close(figure)


def write_report(args: Any, points: list[dict[str, Any]], guess: dict[str, Any], files: list[Path], wall: float,
                 log: Callable[[str], Any]) -> dict[str, Any]:
    settings = {key: getattr(args, key) for key in ("steps", "batch_size", "block_size", "vocab_size", "val_fraction",
                                                     "eval_batches", "zero_shot_examples", "lr", "threads")}
    vocab = json.loads((args.runs / "data" / "all" / "meta.json").read_text())["vocab_size"]
    report = {"command": " ".join(["python benchmarks/scaling.py", *sys.argv[1:]]), "settings": settings,
              "vocab_size": vocab, "files": [str(f) for f in files], "estimate": guess, "wall_seconds": wall,
              "train_seconds": sum(p["train_seconds"] for p in points),
              "points": points, "fits": fits(points)}
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(report))
    plot(report, args.out)
    log(f"wrote {args.out}/results.md, results.json, loss_vs_params.png, loss_vs_compute.png")
    for tokens, fit in report["fits"]["loss_vs_params"].items():
        log(f"L(N) on D = {int(tokens):,}: {_alpha(fit)}")
    return report
