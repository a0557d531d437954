"""Attention as pictures: one head's weights as a heatmap, and a translation's cross-attention alignment.

A layer's keys are the view's `keys_of(layer)`: the tokens, or for a memory-compressed layer its slots, each named
by the tokens it summarises ("first (token 0: the)", "tokens 0–2: the cat sat", ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tformer.viz.figure import DPI, image_path, inches_for, new_figure, plain_text, save_figure
from tformer.viz.page import AttentionView, layer_weights


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
    layers = layer_weights(view)
    layer = check_index(layer, len(layers), "layer", view)
    head = check_index(head, layers[layer].shape[0], "head", view)
    title = f"{view.name}: layer {view.layer_name(layer)}, head {head}"
    return _heatmap(layers[layer][head], view.query_tokens, view.keys_of(layer), title, path, figsize, dpi)


def plot_alignment(view: AttentionView, path: str | Path, *, layer: int = -1,
                   figsize: tuple[float, float] | None = None, dpi: int = DPI) -> Path:
    """A translation's alignment: the cross-attention of one layer (default: the last) averaged over its heads;
    source tokens along x, target (decoder) tokens along y. Row i is where the decoder looks while reading
    target token i to choose token i + 1."""
    image_path(path)
    layers = layer_weights(view)
    layer = check_index(layer, len(layers), "layer", view)
    heads = layers[layer].shape[0]
    title = f"{view.name}: layer {view.layer_name(layer)}" + (f", mean of {heads} heads" if heads > 1 else "")
    return _heatmap(layers[layer].mean(axis=0), view.query_tokens, view.keys_of(layer), title, path, figsize, dpi,
                    xlabel="source token (key)", ylabel="target token (query)")


def _heatmap(matrix: np.ndarray, queries: list[str], keys: list[str], title: str, path: str | Path,
             figsize: tuple[float, float] | None, dpi: int, xlabel: str = "key token",
             ylabel: str = "query token") -> Path:
    width, height = figsize or heatmap_size(len(queries), len(keys))
    figure = new_figure(width, height, dpi)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9), aspect="auto",
                        interpolation="nearest")
    axes.set_xticks(range(len(keys)), [plain_text(t) for t in keys], rotation=90, fontsize=8)
    axes.set_yticks(range(len(queries)), [plain_text(t) for t in queries], fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(plain_text(title), fontsize=10)
    figure.colorbar(image, ax=axes, label="attention weight")
    return save_figure(figure, path)
