"""benchmarks/long_attention.py's report: the markdown tables, the longest length each kind fits, the plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

MIB = 1 << 20
STOPPED = ("over budget", "timed out")


def _mib(value: float) -> str:
    return f"{value / MIB:,.1f} MiB" if value < 100 * MIB else f"{value / MIB:,.0f} MiB"


def _seconds(value: float) -> str:
    return f"{value:.3g} s"


def cell(point: dict[str, Any] | None, part: str) -> str:
    """One table cell: the figures of `part` (train, prefill, decode) or why there are none."""
    if point is None:
        return ""
    status = point["status"]
    if status != "ok":
        if point.get("skipped"):
            return f"({status} below)" if status in STOPPED else status
        return status
    if part == "train":
        return f"{_mib(point['peak_bytes'])} · {_seconds(point['step_s'])}"
    if part == "prefill":
        return f"{_mib(point['prefill_peak_bytes'])} · {_seconds(point['prefill_s'])}"
    return f"{_mib(point['decode_peak_bytes'])} (cache {_mib(point['cache_bytes'])}) · {point['token_ms']:.3g} ms"


def _lookup(points: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(p["mode"], p["kind"], p["length"]): p for p in points}


def table(points: list[dict[str, Any]], kinds: list[str], lengths: list[int], mode: str, part: str) -> str:
    at = _lookup(points)
    rows = ["| N | " + " | ".join(kinds) + " |", "|---:|" + "---|" * len(kinds)]
    for n in lengths:
        rows.append(f"| {n:,} | " + " | ".join(cell(at.get((mode, k, n)), part) for k in kinds) + " |")
    return "\n".join(rows)


def longest_fits(points: list[dict[str, Any]], kind: str, mode: str, lengths: list[int]) -> str:
    """The longest length of `kind` that ran within the budget in `mode`, and the first that did not."""
    at = _lookup(points)
    fitted = [n for n in lengths if at.get((mode, kind, n), {}).get("status") == "ok"]
    over = [n for n in lengths if at.get((mode, kind, n), {}).get("status") in STOPPED
            and not at[(mode, kind, n)].get("skipped")]
    if not fitted:
        return f"none (from {over[0]:,}: {at[(mode, kind, over[0])]['status']})" if over else "not run"
    text = f"{fitted[-1]:,}"
    if over:
        text += f" ({over[0]:,}: {at[(mode, kind, over[0])]['status']})"
    elif fitted[-1] == lengths[-1]:
        text += " (every length tried)"
    return text


def memory_ratios(points: list[dict[str, Any]], lengths: list[int], kind: str = "lmlml") -> list[str]:
    """Training-step memory of `kind` against each full attention, at every length where both fitted."""
    at, lines = _lookup(points), []
    for reference in ("full", "full-explicit"):
        for n in lengths:
            mine, theirs = at.get(("train", kind, n)), at.get(("train", reference, n))
            if mine and theirs and mine["status"] == theirs["status"] == "ok" and mine["peak_bytes"] > 0:
                ratio = theirs["peak_bytes"] / mine["peak_bytes"]
                lines.append(f"- N = {n:,}: {kind} {_mib(mine['peak_bytes'])} against {reference} "
                             f"{_mib(theirs['peak_bytes'])}: {reference} / {kind} = {ratio:.2f}")
    return lines


def markdown(points: list[dict[str, Any]], args: Any, header: list[str]) -> str:
    kinds, lengths = args.kinds, args.lengths
    parts = header + [""]
    if "train" in args.modes:
        parts += ["### Training step (forward + loss + backward, batch 1): peak memory above the baseline · "
                  "median step time", "", table(points, kinds, lengths, "train", "train"), ""]
    if "decode" in args.modes:
        parts += [f"### Prefill (the prompt through the cache, {args.prefill_chunk} tokens a call): peak memory "
                  "· time", "", table(points, kinds, lengths, "decode", "prefill"), "",
                  f"### Decoding ({args.decode_tokens} tokens after an N-token prompt): peak memory (the cache "
                  "held) · median time per token", "", table(points, kinds, lengths, "decode", "decode"), ""]
    parts += [f"### Longest length within the {args.budget_gb:g} GB budget (lengths tried: "
              f"{', '.join(f'{n:,}' for n in lengths)})", "", "| kind | training step | decoding |", "|---|---|---|"]
    for kind in kinds:
        parts.append(f"| {kind} | {longest_fits(points, kind, 'train', lengths)} | "
                     f"{longest_fits(points, kind, 'decode', lengths)} |")
    ratios = memory_ratios(points, lengths) if "lmlml" in kinds else []
    if ratios:
        parts += ["", "### Training-step memory, LMLML against full attention", "", *ratios]
    return "\n".join(parts)


def _series(points: list[dict[str, Any]], kind: str, mode: str, key: str, scale: float) -> tuple[list, list]:
    chosen = sorted((p for p in points if p["kind"] == kind and p["mode"] == mode and p["status"] == "ok"
                     and p.get(key, 0) > 0), key=lambda p: p["length"])
    return [p["length"] for p in chosen], [p[key] / scale for p in chosen]


def plot(points: list[dict[str, Any]], args: Any, path: Path) -> bool:
    """Memory and time against N, log-log, one line per kind (False when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [("train", "peak_bytes", MIB, "training step: peak memory (MiB)"),
              ("train", "step_s", 1.0, "training step: time (s)"),
              ("decode", "decode_peak_bytes", MIB, "decoding: peak memory with the cache (MiB)"),
              ("decode", "token_ms", 1.0, "decoding: time per token (ms)")]
    panels = [p for p in panels if p[0] in args.modes]
    rows = math.ceil(len(panels) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(11, 4.2 * rows), squeeze=False)
    for axis, (mode, key, scale, title) in zip(axes.flat, panels, strict=False):
        for kind in args.kinds:
            xs, ys = _series(points, kind, mode, key, scale)
            if xs:
                axis.plot(xs, ys, marker="o", label=kind)
        if key.endswith("bytes"):
            axis.axhline(args.budget_gb * 1e9 / MIB, color="grey", linestyle="--", label="budget")
        axis.set(xscale="log", yscale="log", xlabel="sequence length N", title=title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
