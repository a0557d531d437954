"""Attention as pictures: one head's weights as a heatmap, and a translation's cross-attention alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tformer.viz.figure import DPI, image_path, inches_for, new_figure, plain_text, save_figure
from tformer.viz.page import AttentionView


def view_weights(view: AttentionView) -> np.ndarray:
    """The view's weights as a (layers, heads, queries, keys) float numpy array, shape-checked against its tokens."""
    weights = view.weights
    weights = np.asarray(weights.detach().cpu().float() if hasattr(weights, "detach") else weights, dtype=np.float64)
    expected = (len(view.query_tokens), len(view.key_tokens))
    if weights.ndim != 4 or weights.shape[2:] != expected:
        raise ValueError(f"view {view.name!r} has weights of shape {weights.shape}; expected (layers, heads, "
                         f"{expected[0]}, {expected[1]}) for its {expected[0]} query and {expected[1]} key tokens")
    return weights


def check_index(index: int, count: int, what: str, view: AttentionView) -> int:
    """index as 0..count-1 (negative counts from the end, -1 = last); out of range is an error naming the range."""
    if not -count <= index < count:
        raise ValueError(f"{what} {index} is out of range: {view.name} has {what}s 0..{count - 1} (or -1 for the last)")
    return index % count


def heatmap_size(n_queries: int, n_keys: int) -> tuple[float, float]:
    """Figure size in inches for a queries x keys heatmap with a colour bar: about 0.3 inch per token."""
    return inches_for(n_keys, 3.0, 0.3, 5.0, 16.0), inches_for(n_queries, 2.0, 0.3, 4.0, 16.0)


def plot_attention(view: AttentionView, layer: int, head: int, path: str | Path, *,
                   figsize: tuple[float, float] | None = None, dpi: int = DPI) -> Path:
    """A heatmap of one head's weights: key tokens along x, query tokens along y (row i: where token i looks),
    with a colour bar. layer and head count from 0; -1 is the last. figsize defaults to `heatmap_size`."""
    image_path(path)
    weights = view_weights(view)
    layer = check_index(layer, weights.shape[0], "layer", view)
    head = check_index(head, weights.shape[1], "head", view)
    title = f"{view.name}: layer {layer}, head {head}"
    return _heatmap(weights[layer, head], view, title, path, figsize, dpi)


def plot_alignment(view: AttentionView, path: str | Path, *, layer: int = -1,
                   figsize: tuple[float, float] | None = None, dpi: int = DPI) -> Path:
    """A translation's alignment: the cross-attention of one layer (default: the last) averaged over its heads;
    source tokens along x, target (decoder) tokens along y. Row i is where the decoder looks while reading
    target token i to choose token i + 1."""
    image_path(path)
    weights = view_weights(view)
    layer = check_index(layer, weights.shape[0], "layer", view)
    heads = weights.shape[1]
    title = f"{view.name}: layer {layer}" + (f", mean of {heads} heads" if heads > 1 else "")  # RNNsearch: 1 head
    return _heatmap(weights[layer].mean(axis=0), view, title, path, figsize, dpi,
                    xlabel="source token (key)", ylabel="target token (query)")


def _heatmap(matrix: np.ndarray, view: AttentionView, title: str, path: str | Path,
             figsize: tuple[float, float] | None, dpi: int, xlabel: str = "key token",
             ylabel: str = "query token") -> Path:
    width, height = figsize or heatmap_size(len(view.query_tokens), len(view.key_tokens))
    figure = new_figure(width, height, dpi)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9), aspect="auto",
                        interpolation="nearest")
    axes.set_xticks(range(len(view.key_tokens)), [plain_text(t) for t in view.key_tokens], rotation=90, fontsize=8)
    axes.set_yticks(range(len(view.query_tokens)), [plain_text(t) for t in view.query_tokens], fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(plain_text(title), fontsize=10)
    figure.colorbar(image, ax=axes, label="attention weight")
    return save_figure(figure, path)
