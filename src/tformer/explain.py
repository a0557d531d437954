"""Scaled dot-product attention explained: every intermediate for a small Q, K, V, printed as labelled matrices.

The numbers come from `tformer.layers.attention.attention_steps`, the function the models use. The default
inputs are the lecture notes' two worked examples (cross-attention "die Katze" -> "the cat danced", and
masked self-attention over "<s> die Katze tantze").

`format_pattern` prints which (query, key) pairs the T-DMCA's local and memory-compressed attention let through
(Liu et al. 2018), from the rules in `tformer.layers.windows` that the layers and caches use.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

import torch

from tformer.layers.attention import AttentionSteps, attention_steps, causal_mask
from tformer.layers.compressed_attention import check_compression, compressed_key_labels
from tformer.layers.windows import compressed_visible, local_visible

Matrix = list[list[float]]


@dataclass(frozen=True)
class AttentionExample:
    """A worked example: Q (queries, d_k), K (keys, d_k), V (keys, d_v), row labels, and whether it is causal."""

    q: Matrix
    k: Matrix
    v: Matrix
    queries: list[str]
    keys: list[str]
    causal: bool = False
    note: str | None = None  # how the notes' own printed numbers differ from ours


NOTES_CROSS_ATTENTION = AttentionExample(
    q=[[-1.0, -2.5], [4.0, 3.0]],
    k=[[-2.0, -4.0], [-2.5, -0.5], [4.5, 2.5]],
    v=[[-2.0, -4.0], [-2.5, -0.5], [4.5, 2.5]],
    queries=["die", "Katze"],
    keys=["the", "cat", "danced"],
    note="note: the lecture notes' printed scaled, alpha and out for this example divide the scores by 3 "
         "(scaled 4.0000 = 12/3, alpha 0.94 0.06 0.00, out -2.02 -3.78), not by sqrt(d_k) = sqrt(2); "
         "these follow the paper: softmax(scores / sqrt(2))",
)

NOTES_MASKED_SELF_ATTENTION = AttentionExample(
    q=[[1.0, 1.0], [-1.0, -2.5], [4.0, 3.0], [2.0, -3.0]],
    k=[[1.0, 1.0], [-1.0, -2.5], [4.0, 3.0], [2.0, -3.0]],
    v=[[1.0, 1.0], [-1.0, -2.5], [4.0, 3.0], [2.0, -3.0]],
    queries=["<s>", "die", "Katze", "tantze"],
    keys=["<s>", "die", "Katze", "tantze"],
    causal=True,
    note="note: the lecture notes' printed alpha and out for this example are the softmax of the unscaled "
         "masked scores (out 1.9983 -2.9997 for tantze), and their scaled and masked divide by 4, not by "
         "sqrt(d_k) = sqrt(2); these follow the paper: softmax(scores / sqrt(2))",
)


def _number(text: str, what: str, row: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} in row {row} is not a number; write numbers like -2.5") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: {text!r} in row {row} is not a finite number; write numbers like -2.5")
    return value


def _rows_of_list(text: str, what: str) -> list[list[str]]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{what}: {text!r} is not a nested list of numbers; write it as [[-1, -2.5], [4, 3]] "
                         "or as rows separated by ';': '-1 -2.5; 4 3'") from None
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (list, tuple)):
        value = [value]  # a flat list is one row
    if not isinstance(value, (list, tuple)) or not all(isinstance(row, (list, tuple)) for row in value):
        raise ValueError(f"{what}: {text!r} is not a list of rows; write it as [[-1, -2.5], [4, 3]]")
    return [[repr(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x) for x in row]
            for row in value]


def parse_matrix(text: str, what: str = "matrix") -> Matrix:
    """'[[-1, -2.5], [4, 3]]' or '-1 -2.5; 4 3' (spaces or commas between numbers) -> rows of floats."""
    text = text.strip()
    if text.startswith(("[", "(")):
        cells = _rows_of_list(text, what)
    else:
        cells = [[x for x in re.split(r"[,\s]+", row.strip()) if x] for row in text.split(";")]
    rows = [[_number(x, what, i + 1) for x in row] for i, row in enumerate(cells)]
    if not rows or any(not row for row in rows):
        raise ValueError(f"{what}: {text!r} has an empty row; give at least one number in every row, "
                         "e.g. '-1 -2.5; 4 3'")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        lengths = ", ".join(str(len(row)) for row in rows)
        raise ValueError(f"{what}: rows have different lengths ({lengths}); give every row the same number "
                         "of columns")
    return rows


def parse_labels(text: str, what: str) -> list[str]:
    """'die,Katze' -> ['die', 'Katze']."""
    labels = [label.strip() for label in text.split(",")]
    if any(not label for label in labels):
        raise ValueError(f"{what}: {text!r} has an empty name; separate names with commas: die,Katze")
    return labels


def check_example(example: AttentionExample) -> None:
    """Raise a ValueError naming the first shape that does not fit: d_k, key rows, labels, causal lengths."""
    q, k, v = example.q, example.k, example.v
    if len(q[0]) != len(k[0]):
        raise ValueError(f"Q has d_k={len(q[0])} columns but K has {len(k[0])}: queries and keys need the same "
                         "number of columns")
    if len(k) != len(v):
        raise ValueError(f"K has {len(k)} rows but V has {len(v)}: give one value row per key row")
    for labels, rows, name, option in ((example.queries, q, "Q", "--queries"), (example.keys, k, "K", "--keys")):
        if len(labels) != len(rows):
            raise ValueError(f"{option} names {len(labels)} tokens ({','.join(labels)}) but {name} has {len(rows)} "
                             f"rows: give one name per row of {name}")
    if example.causal and len(q) > len(k):
        raise ValueError(f"--causal needs at least as many keys as queries, got {len(q)} queries and {len(k)} "
                         "keys: give K more rows or drop --causal")


def explain_attention(example: AttentionExample) -> tuple[AttentionSteps, torch.Tensor | None]:
    """(every intermediate of softmax(Q K^T / sqrt(d_k)) V in float64, the causal mask or None)."""
    check_example(example)
    q, k, v = (torch.tensor(m, dtype=torch.float64) for m in (example.q, example.k, example.v))
    mask = causal_mask(q.size(0), k.size(0)) if example.causal else None
    return attention_steps(q, k, v, mask), mask


def _cell(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def format_matrix(title: str, matrix: torch.Tensor, rows: list[str], columns: list[str] | None,
                  decimals: int) -> str:
    """A title line, an optional header of column names, then one line per row: its label and its numbers."""
    cells = [[_cell(x, decimals) for x in row] for row in matrix.tolist()]
    width = max([len(c) for row in cells for c in row] + [len(c) for c in columns or []])
    label_width = max(len(r) for r in rows)
    lines = [title]
    if columns is not None:
        lines.append(" " * label_width + "".join(f"  {c:>{width}}" for c in columns))
    lines += [f"{label:<{label_width}}" + "".join(f"  {c:>{width}}" for c in row)
              for label, row in zip(rows, cells, strict=True)]
    return "\n".join(lines)


def format_steps(example: AttentionExample, steps: AttentionSteps, mask: torch.Tensor | None,
                 decimals: int = 4) -> str:
    """Q, K, V and every step, each a labelled matrix, separated by blank lines."""
    if decimals < 0:
        raise ValueError(f"--decimals {decimals} is negative: give 0 or more digits after the point")
    d_k = len(example.q[0])
    queries, keys = example.queries, example.keys
    inputs = [torch.tensor(m, dtype=torch.float64) for m in (example.q, example.k, example.v)]
    blocks = [
        f"scaled dot-product attention (Vaswani et al. 2017): out = softmax(Q K^T / sqrt(d_k)) V with d_k = {d_k}, "
        f"{len(queries)} queries, {len(keys)} keys" + (", causal mask" if mask is not None else ""),
        format_matrix(f"Q  ({len(queries)} x {d_k})", inputs[0], queries, None, decimals),
        format_matrix(f"K  ({len(keys)} x {d_k})", inputs[1], keys, None, decimals),
        format_matrix(f"V  ({len(keys)} x {len(example.v[0])})", inputs[2], keys, None, decimals),
        format_matrix("scores = Q K^T", steps.scores, queries, keys, decimals),
        format_matrix(f"scaled = scores / sqrt({d_k})", steps.scaled, queries, keys, decimals),
    ]
    if mask is not None:
        blocks.append(format_matrix("mask (1 = the query may attend to the key)", mask.to(torch.float64), queries,
                                    keys, 0))
        blocks.append(format_matrix("masked = scaled, -inf where mask is 0", steps.masked, queries, keys, decimals))
    else:
        blocks.append(format_matrix("masked = scaled (no mask)", steps.masked, queries, keys, decimals))
    blocks.append(format_matrix("alpha = softmax(masked) over the keys", steps.alpha, queries, keys, decimals))
    blocks.append(format_matrix("out = alpha V", steps.out, queries, None, decimals))
    return "\n\n".join(blocks)


ATTENTION_PATTERNS = ("local", "compressed")


@dataclass(frozen=True)
class PatternExample:
    """Which (query, key) pairs a T-DMCA attention pattern lets through, over `length` tokens: `local` with blocks
    of `block_size` and `look_back` blocks before, or `compressed` with one key slot per `compression` tokens."""

    pattern: str
    length: int = 12
    block_size: int = 4
    look_back: int = 1
    compression: int = 3


def pattern_visibility(example: PatternExample) -> tuple[torch.Tensor, list[str]]:
    """(the (length, keys) bool mask, True = the query may attend, the name of each key): local keys are tokens,
    compressed keys are slots ("first (token 0)", "tokens 0–2", ...)."""
    if example.pattern not in ATTENTION_PATTERNS:
        raise ValueError(f"--pattern {example.pattern!r} is not an attention pattern: give one of "
                         f"{', '.join(ATTENTION_PATTERNS)}")
    if example.length < 1:
        raise ValueError(f"--length {example.length} has no tokens: give 1 or more (the default is 12)")
    positions = torch.arange(example.length)
    if example.pattern == "local":
        visible = local_visible(positions, positions, example.block_size, example.look_back)
        return visible, [f"token {i}" for i in range(example.length)]
    check_compression(example.compression)
    if example.length < example.compression:
        raise ValueError(f"--length {example.length} is shorter than --compression {example.compression}: no slot "
                         "would complete; give at least as many tokens as the compression")
    visible = compressed_visible(positions, example.length // example.compression, example.compression)
    return visible, compressed_key_labels([""] * example.length, example.compression, with_text=False)


def _pattern_rule(example: PatternExample) -> str:
    if example.pattern == "local":
        before = "its own block" if example.look_back == 0 else (
            f"its own block or the {example.look_back} block{'s' if example.look_back > 1 else ''} before it")
        return (f"local attention (Liu et al. 2018): {example.length} tokens in blocks of {example.block_size}, "
                f"look_back={example.look_back}: query i sees key j when j <= i and j is in {before}")
    c = example.compression
    return (f"memory-compressed attention (Liu et al. 2018): {example.length} tokens, compression {c}: a strided "
            f"convolution (kernel = stride = {c}) turns each group of {c} keys (and values) into one slot"
            + (", after a first slot holding token 0 uncompressed" if c > 1 else "")
            + f"; query i sees slot j (tokens {c}j to {c}j+{c - 1}) once its group has ended: {c}j+{c - 1} <= i")


def _slot_legend(example: PatternExample, keys: list[str]) -> str:
    c, first = example.compression, 1 if example.compression > 1 else 0
    lines = [f"key slots ({len(keys)} for {example.length} tokens)"]
    if first:
        lines.append(f"{keys[0]}: token 0's key and value, uncompressed; every query sees it")
    lines += [f"{key}: slot j={j}, compressed from {c} token{'s' if c > 1 else ''}; seen from query {c * j + c - 1} on"
              for j, key in enumerate(keys[first:])]
    return "\n".join(lines)


def format_pattern(example: PatternExample) -> str:
    """The rule in words, the key slots (compressed), the mask as a grid of queries x keys, and what it costs."""
    visible, keys = pattern_visibility(example)
    length, queries = example.length, [str(i) for i in range(example.length)]
    causal = f"full causal attention: {length * (length + 1) // 2} of {length} x {length} = {length * length}"
    if example.pattern == "local":
        blocks = [_pattern_rule(example)]
        columns = queries
        cost = f"{int(visible.sum())} visible (query, key) pairs; {causal}"
    else:
        blocks = [_pattern_rule(example), _slot_legend(example, keys)]
        c, n_slots = example.compression, length // example.compression
        spans = [str(j) if c == 1 else f"{c * j}–{c * j + c - 1}" for j in range(n_slots)]
        columns = (["first"] if c > 1 else []) + spans
        scores = f"{length} x {len(keys)} = {visible.numel()} scores"
        cost = f"{int(visible.sum())} visible (query, slot) pairs of {scores}; {causal}"
    blocks.append(format_matrix("mask (1 = the query (row) may attend to the key (column))",
                                visible.to(torch.float64), queries, columns, 0))
    blocks.append(cost)
    return "\n\n".join(blocks)
