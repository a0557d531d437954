"""The attention page: one self-contained HTML file for exploring attention weights in a browser.

In the spirit of bertviz's head view, each view shows the query tokens in a left column and the key tokens in a
right column, with one line per (query, key) pair whose weight is above a threshold. A line's opacity and width
grow with its weight and its colour names the head. Controls choose the view (encoder self-attention,
decoder self-attention, cross-attention, "A -> B" for sentence pairs, ...), the layer, the heads and the
threshold. Hovering a token shows only that token's lines.

The file carries its own script, style and data, so it opens from disk (file://) with no network:

    from tformer.viz.page import AttentionView, write_attention_page
    view = AttentionView("encoder self-attention", tokens, tokens, weights)  # weights: (layers, heads, q, k)
    write_attention_page("attention.html", [view])
    # then open attention.html in any browser (e.g. `python -m webbrowser attention.html`)

Token text is data, never markup: the weights and tokens travel as JSON inside a
`<script type="application/json">` with `<`, `>` and `&` escaped, and the page writes tokens with textContent.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

SIGNIFICANT_DIGITS = 4
# Below this a weight is written as 0: exact powers of ten stop at 1e22, so rounding tinier values to 4 digits
# would print long numbers (1.2159999999999998e-22); no line that faint is visible anyway.
SMALLEST_WEIGHT = 1e-15


@dataclass
class AttentionView:
    """One panel of the attention page. weights: (layers, heads, queries, keys); rows sum to 1 (0 if fully masked)."""

    name: str  # "encoder self-attention", "cross-attention", "A -> B", ...
    query_tokens: list[str]  # left column, len == queries
    key_tokens: list[str]  # right column, len == keys
    weights: np.ndarray | torch.Tensor  # float, (layers, heads, queries, keys)


def attention_page_html(
    views: Sequence[AttentionView], *, title: str = "tformer attention", threshold: float = 0.01
) -> str:
    """The attention page for `views` as one HTML string (script, style and data inlined)."""
    if len(views) == 0:
        raise ValueError("views is empty: pass at least one AttentionView to draw")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold {threshold} is outside [0, 1): pass a weight such as 0.01")
    data = {"threshold": threshold, "views": [_view_data(view) for view in views]}
    parts = {
        "title": html.escape(title),
        "css": _template_text("attention_page.css"),
        "js": _template_text("attention_page.js"),
        "data": _json_for_script(data),
    }
    # One pass, so text coming from the data (a token spelled "{{js}}") is never substituted again.
    return re.sub(r"\{\{(\w+)\}\}", lambda match: parts[match.group(1)], _template_text("attention_page.html"))


def write_attention_page(
    path: str | os.PathLike,
    views: Sequence[AttentionView],
    *,
    title: str = "tformer attention",
    threshold: float = 0.01,
) -> Path:
    """Write the attention page to `path` (parent folders are created) and return the path."""
    page = attention_page_html(views, title=title, threshold=threshold)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _view_data(view: AttentionView) -> dict[str, Any]:
    weights = _as_numpy(view.weights)
    name = view.name
    if weights.ndim != 4:
        hint = " (one layer? add the axis with weights[None])" if weights.ndim == 3 else ""
        raise ValueError(
            f"view {name!r}: weights have shape {tuple(weights.shape)}; pass a 4-D (layers, heads, queries, keys) "
            f"array{hint}"
        )
    layers, heads, queries, keys = weights.shape
    if layers == 0 or heads == 0:
        raise ValueError(f"view {name!r}: weights have shape {weights.shape}, no layers or heads: pass at least one")
    if queries != len(view.query_tokens):
        raise ValueError(
            f"view {name!r}: weights have {queries} queries (shape {weights.shape}) but query_tokens has "
            f"{len(view.query_tokens)}: pass one query token per row of weights"
        )
    if keys != len(view.key_tokens):
        raise ValueError(
            f"view {name!r}: weights have {keys} keys (shape {weights.shape}) but key_tokens has "
            f"{len(view.key_tokens)}: pass one key token per column of weights"
        )
    if not np.isfinite(weights).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(weights))[0])
        raise ValueError(
            f"view {name!r}: weights are NaN or infinite at (layer, head, query, key) = {where}: replace fully "
            "masked rows with 0 (e.g. torch.nan_to_num) before drawing"
        )
    return {
        "name": str(name),
        "queryTokens": [str(token) for token in view.query_tokens],
        "keyTokens": [str(token) for token in view.key_tokens],
        "weights": _round_significant(weights).tolist(),
    }


def _as_numpy(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):  # a torch.Tensor, possibly bfloat16 or on an accelerator
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float64)


def _round_significant(weights: np.ndarray) -> np.ndarray:
    """Round to SIGNIFICANT_DIGITS digits so the JSON prints 0.1234 rather than 0.12341234567890123."""
    magnitude = np.abs(weights)
    tiny = magnitude < SMALLEST_WEIGHT
    exponent = np.floor(np.log10(np.where(tiny, 1.0, magnitude)))
    # Dividing by an exact power of ten gives the double nearest the rounded decimal, which prints short.
    scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - exponent)
    rounded = np.round(weights * scale) / scale
    return np.where(tiny, 0.0, rounded) + 0.0  # + 0.0 turns -0.0 into 0.0


def _json_for_script(data: Any) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&', so a token can never close the element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _template_text(name: str) -> str:
    return resources.files("tformer.viz").joinpath(name).read_text(encoding="utf-8")
