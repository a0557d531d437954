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

Layers may differ in their keys: a T-DMCA's memory-compressed layer attends to first + N // c compressed slots,
not to the N tokens. Its view then holds one (heads, queries, keys) array per layer and names that layer's keys in
`layer_keys` ("first (token 0: the)", "tokens 0–2: the cat sat", ...); the page redraws the key column per layer.

Token text is data, never markup: the weights and tokens travel as JSON inside a
`<script type="application/json">` with `<`, `>` and `&` escaped, and the page writes tokens with textContent.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    """One panel of the attention page. weights: (layers, heads, queries, keys), or one (heads, queries, keys) array
    per layer where layers differ in their keys (a memory-compressed layer attends to first + N // c slots, not to
    the N tokens); rows sum to 1 (0 if fully masked)."""

    name: str  # "encoder self-attention", "cross-attention", "A -> B", ...
    query_tokens: list[str]  # left column, len == queries
    key_tokens: list[str]  # right column, len == keys, for every layer not in layer_keys
    weights: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]
    # a layer whose keys are not key_tokens -> its own key labels (a compressed layer's "tokens 0–2: the cat sat")
    layer_keys: dict[int, list[str]] = field(default_factory=dict)
    # a layer -> its attention kind, shown beside its number ("local", "compressed"); none shows the number alone
    layer_kinds: dict[int, str] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """Layers in the weights (the first axis, or the list's length)."""
        return len(self.weights)

    @property
    def n_heads(self) -> int:
        """Heads of each layer."""
        return int(self.weights[0].shape[0])

    def keys_of(self, layer: int) -> list[str]:
        """The key labels of `layer` (from 0): its own in layer_keys, else key_tokens."""
        return self.layer_keys.get(layer, self.key_tokens)

    def layer_name(self, layer: int) -> str:
        """`layer` as the page and the plots name it: "1", or "1 (compressed)" when its kind is known."""
        kind = self.layer_kinds.get(layer)
        return f"{layer} ({kind})" if kind else str(layer)


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
    layers = layer_weights(view)
    return {
        "name": str(view.name),
        "queryTokens": [str(token) for token in view.query_tokens],
        "keyTokens": [str(token) for token in view.key_tokens],
        "layerKeyTokens": {str(layer): [str(label) for label in labels] for layer, labels in view.layer_keys.items()},
        "layerNames": [view.layer_name(layer) for layer in range(len(layers))],
        "weights": [_round_significant(weights).tolist() for weights in layers],
    }


def layer_weights(view: AttentionView) -> list[np.ndarray]:
    """The view's weights as one (heads, queries, keys) float64 array per layer, each checked against the query
    tokens and that layer's keys (`keys_of`); a wrong shape, no layers or heads, or a NaN is a one-line error."""
    name = view.name
    layers, shape = _weights_by_layer(view)
    if not layers or layers[0].shape[0] == 0:
        raise ValueError(f"view {name!r}: weights have shape {shape}, no layers or heads: pass at least one")
    outside = sorted(layer for layer in view.layer_keys if not 0 <= layer < len(layers))
    if outside:
        raise ValueError(f"view {name!r}: layer_keys names layer {outside[0]} but the weights have layers "
                         f"0..{len(layers) - 1}: give key labels only for layers that exist")
    for layer, weights in enumerate(layers):
        heads, queries, keys = weights.shape
        have = f"layer {layer}'s weights have" if isinstance(view.weights, (list, tuple)) else "weights have"
        if heads != layers[0].shape[0]:
            raise ValueError(f"view {name!r}: layer {layer} has {heads} heads but layer 0 has {layers[0].shape[0]}: "
                             "give every layer the same heads")
        if queries != len(view.query_tokens):
            raise ValueError(f"view {name!r}: {have} {queries} queries (shape {shape}) but query_tokens "
                             f"has {len(view.query_tokens)}: pass one query token per row of weights")
        labels, what = (view.layer_keys[layer], f"layer_keys[{layer}]") if layer in view.layer_keys \
            else (view.key_tokens, "key_tokens")
        if keys != len(labels):
            raise ValueError(f"view {name!r}: {have} {keys} keys (shape {shape}) but {what} has "
                             f"{len(labels)}: pass one key label per column of weights")
        if not np.isfinite(weights).all():
            found = tuple(int(i) for i in np.argwhere(~np.isfinite(weights))[0])
            raise ValueError(
                f"view {name!r}: weights are NaN or infinite at (layer, head, query, key) = {(layer, *found)}: "
                "replace fully masked rows with 0 (e.g. torch.nan_to_num) before drawing"
            )
    return layers


def _weights_by_layer(view: AttentionView) -> tuple[list[np.ndarray], str]:
    """(one (heads, queries, keys) array per layer, the weights' shape as errors name it)."""
    weights = view.weights
    if isinstance(weights, (list, tuple)):
        layers = [_as_numpy(layer) for layer in weights]
        shape = "[" + ", ".join(str(tuple(layer.shape)) for layer in layers) + "]"
        bad = next((i for i, layer in enumerate(layers) if layer.ndim != 3), None)
        if bad is not None:
            raise ValueError(f"view {view.name!r}: layer {bad}'s weights have shape {tuple(layers[bad].shape)}; pass "
                             "one 3-D (heads, queries, keys) array per layer")
        return layers, shape
    weights = _as_numpy(weights)
    if weights.ndim != 4:
        hint = " (one layer? add the axis with weights[None])" if weights.ndim == 3 else ""
        raise ValueError(
            f"view {view.name!r}: weights have shape {tuple(weights.shape)}; pass a 4-D (layers, heads, queries, "
            f"keys) array{hint}"
        )
    return list(weights), str(tuple(weights.shape))


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
