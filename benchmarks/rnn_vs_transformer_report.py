"""benchmarks/rnn_vs_transformer.py's output: markdown tables of every section and the PNG figures (matplotlib)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rnn_vs_transformer_models import FAMILIES, LABELS, PLACES

SHORT = {"rnn": "RNNsearch", "transformer": "Transformer"}
COLOURS = {"rnn": "tab:orange", "transformer": "tab:blue"}


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def speed_table(rows: list[dict]) -> list[str]:
    by = {(r["family"], r["length"]): r for r in rows}
    lengths = sorted({r["length"] for r in rows})
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    head = "| length | " + " | ".join(f"{SHORT[f]} batch | {SHORT[f]} s/step | {SHORT[f]} target tokens/s | "
                                     f"{SHORT[f]} sequential steps per layer" for f in families)
    lines = [head + (" | RNN / Transformer step time |" if len(families) == 2 else " |"),
             "|" + "---|" * (1 + 4 * len(families) + (len(families) == 2))]
    for n in lengths:
        cells = []
        for f in families:
            r = by.get((f, n))
            cells += ["—"] * 4 if r is None else [str(r["batch"]), _num(r["seconds"]), _num(r["tokens_per_s"], 0),
                                                  str(r["sequential_steps"])]
        ratio = ""
        if len(families) == 2:
            a, b = by.get(("rnn", n)), by.get(("transformer", n))
            ratio = f" {a['seconds'] / b['seconds']:.2f} |" if a and b and a["seconds"] and b["seconds"] else " — |"
        lines.append(f"| {n} | " + " | ".join(cells) + " |" + ratio)
    return lines


def path_table(results: dict[str, dict], chance: float) -> list[str]:
    families = [f for f in FAMILIES if f in results and "accuracy" in results[f]]
    distances = sorted({int(d) for f in families for d in results[f]["accuracy"]})
    lines = ["| d (RNNsearch: recurrent steps from the answer to the end) | "
             + " | ".join(f"{SHORT[f]} accuracy (final training loss, s)" for f in families) + " | chance |",
             "|---|" + "---|" * (len(families) + 1)]
    for d in distances:
        cells = [f"{100 * _at(results[f]['accuracy'], d):.1f} % ({_at(results[f]['loss_per_d'], d):.3f}, "
                 f"{_at(results[f]['seconds_per_d'], d):.0f} s)" for f in families]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {100 * chance:.1f} % |")
    lines.append("")
    for f in families:
        r = results[f]
        lines.append(f"{LABELS[f]}: {r['parameters']:,} parameters, a fresh model per d, {r['steps']} steps each, "
                     f"{r['train_seconds']:.0f} s of training in all (one thread).  ")
    for f in FAMILIES:
        if f in results and "error" in results[f]:
            lines.append(f"{LABELS[f]}: failed: {results[f]['error']}")
    return lines


def _at(values: dict, d: int) -> float:
    return values[d] if d in values else values[str(d)]


def quality_table(results: dict[str, dict], metric: str) -> list[str]:
    lines = ["| model | recipe | parameters | steps (fitted max) | training s | last curve point (val, greedy) | "
             "test pairs | test greedy: exact match / BLEU | test beam 4: exact match / BLEU | greedy tokens/s | "
             "beam 4 tokens/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in FAMILIES:
        r = results.get(f)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {SHORT[f]} | failed: {r['error']} |" + " |" * 9)
            continue
        last, test = r["curve"][-1], r["test"]
        beam = next(k for k in test if k != "greedy")
        lines.append(
            f"| {SHORT[f]} | {r['recipe']} | {r['parameters']:,} | {r['steps']} ({r['fitted_steps']}) | "
            f"{r['train_seconds']:.0f} | {metric} {last[metric]:.2f} | "
            f"{test['greedy']['pairs']:,} ({r['test_split']}) | "
            f"{test['greedy']['exact_match']:.2f} % / "
            f"{test['greedy']['bleu']:.2f} | {test[beam]['exact_match']:.2f} % / {test[beam]['bleu']:.2f} | "
            f"{test['greedy']['tokens_per_s']:.0f} | {test[beam]['tokens_per_s']:.0f} |")
    return lines


def params_table(places: dict[str, dict]) -> list[str]:
    lines = ["| model | total | " + " | ".join(PLACES) + " |", "|---|---|" + "---|" * len(PLACES)]
    for name, counts in places.items():
        total = sum(c["count"] for c in counts.values())
        cells = [f"{counts[p]['count']:,} ({100 * counts[p]['count'] / total:.0f} %)" if counts[p]["count"] else "0"
                 for p in PLACES]
        lines.append(f"| {name} | {total:,} | " + " | ".join(cells) + " |")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, note: str, path: Path) -> None:  # noqa: ANN001
    """The machine note under the axes (wrapped to the figure's width), then the PNG."""
    fig.text(0.01, 0.01, textwrap.fill(note, 120), fontsize=6.5, alpha=0.7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_speed(rows: list[dict], path: Path, note: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for f in FAMILIES:
        points = sorted((r["length"], r["seconds"]) for r in rows if r["family"] == f and r["seconds"])
        if points:
            ax.plot(*zip(*points, strict=True), "o-", color=COLOURS[f], label=LABELS[f])
    ax.set(xscale="log", yscale="log", xlabel="sequence length n (source = target = n tokens)",
           ylabel="training step, seconds", title="Training-step time against length (same tokens per step)")
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _finish(plt, fig, note, path)


def plot_path(results: dict[str, dict], chance: float, path: Path, note: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for f in FAMILIES:
        if f in results and "accuracy" in results[f]:
            points = sorted((int(d), 100 * a) for d, a in results[f]["accuracy"].items())
            ax.plot(*zip(*points, strict=True), "o-", color=COLOURS[f], label=LABELS[f])
    ax.axhline(100 * chance, color="grey", ls="--", label="chance")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="d: distance from [EOS] back to the token to reproduce", ylabel="accuracy, %", ylim=(0, 102),
           title="Reproduce the token d positions before the end of the source")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _finish(plt, fig, note, path)


def plot_quality(results: dict[str, dict], metric: str, title: str, path: Path, note: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for f in FAMILIES:
        r = results.get(f)
        if r and "curve" in r:
            points = [(0.0, 0.0)] + [(p["train_seconds"] / 60, p[metric]) for p in r["curve"]]
            ax.plot(*zip(*points, strict=True), "o-", color=COLOURS[f], label=LABELS[f])
    label = "exact match, %" if metric == "exact_match" else "BLEU"
    ax.set(xlabel="training wall time, minutes (one thread each, evaluation excluded)",
           ylabel=f"validation {label} (greedy)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    _finish(plt, fig, note, path)
