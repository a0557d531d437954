"""The sinusoidal positional encoding as a picture, and why PE(p)·PE(p+k) depends only on the offset k.

Each pair of dimensions (2i, 2i+1) holds (sin(p·w_i), cos(p·w_i)) with w_i = 10000^(-2i/d). Moving k positions
turns that pair by the angle k·w_i, a rotation that does not depend on p, so

    PE(p)·PE(p+k) = sum_i [sin(p·w_i) sin((p+k)·w_i) + cos(p·w_i) cos((p+k)·w_i)] = sum_i cos(k·w_i),

the same curve for every starting position p: an inner product of encodings measures relative displacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tformer.layers.positions import sinusoidal_table
from tformer.viz.figure import DPI, image_path, new_figure, save_figure

POSITIONS_FIGSIZE = (12.0, 4.5)
# how each layout orders the dimensions, for the matrix's axis label
LAYOUTS = {"interleaved": "dimension (2i: sin, 2i+1: cos, interleaved as in the paper; frequency falls to the right)",
           "halves": "dimension ([sin | cos] halves, as Marian and Pegasus; frequency falls to the right in each)"}


def offset_dot_products(d_model: int, length: int, starts: Sequence[int]) -> np.ndarray:
    """(len(starts), length): row j, column k is PE(p)·PE(p + k) for p = starts[j], from the models' own table."""
    _check(d_model, length)
    if any(p < 0 for p in starts):
        raise ValueError(f"start positions must be >= 0, got {list(starts)}")
    table = sinusoidal_table(max(starts, default=0) + length, d_model).double().numpy()
    return np.stack([table[p + np.arange(length)] @ table[p] for p in starts])


def plot_positions(path: str | Path, d_model: int = 128, length: int = 100, *, layout: str = "interleaved",
                   figsize: tuple[float, float] = POSITIONS_FIGSIZE, dpi: int = DPI) -> Path:
    """Two panels: the PE matrix (position x dimension) in `layout` ("interleaved": the paper's sin/cos pairs side
    by side; "halves": every sin, then every cos, as Marian), and PE(p)·PE(p+k) against the offset k for several
    p, which lie on one another (and on sum_i cos(k·w_i)) because a shift by k rotates each sin/cos pair by k·w_i
    (the same curves for both layouts: a dot product does not depend on the order of the dimensions)."""
    image_path(path)
    _check(d_model, length)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not a sinusoid layout; choose one of: {', '.join(LAYOUTS)}")
    table = sinusoidal_table(length, d_model, layout).numpy()
    starts = sorted({0, length // 4, length // 2, length})
    products = offset_dot_products(d_model, length, starts)
    frequencies = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    formula = np.cos(np.arange(length)[:, None] * frequencies).sum(axis=1)

    figure = new_figure(*figsize, dpi)
    matrix, offsets = figure.subplots(1, 2, width_ratios=(1, 1.3))
    image = matrix.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    matrix.set_xlabel(LAYOUTS[layout], fontsize=8)
    matrix.set_ylabel("position")
    matrix.set_title(f"sinusoidal positional encoding ({layout}), d_model={d_model}", fontsize=10)
    figure.colorbar(image, ax=matrix, fraction=0.05)

    for p, row in zip(starts, products, strict=True):
        offsets.plot(row, linewidth=1.5, alpha=0.7, label=f"p = {p}")
    offsets.plot(formula, "k:", linewidth=1.5, label=r"$\sum_i \cos(k\,w_i)$")
    offsets.set_xlabel("offset k")
    offsets.set_ylabel("PE(p) · PE(p + k)")
    offsets.set_title("the dot product depends only on the offset k, not on p", fontsize=10)
    offsets.legend(fontsize=8, loc="upper right")
    offsets.text(0.02, 0.03, "each (sin, cos) pair of frequency $w_i$ rotates by the angle $k\\,w_i$:\n"
                 "PE(p + k) is a rotation of PE(p) that does not depend on p",
                 transform=offsets.transAxes, fontsize=8, va="bottom")
    return save_figure(figure, path)


def _check(d_model: int, length: int) -> None:
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model={d_model} must be a positive even number (sin/cos pairs)")
    if length < 2:
        raise ValueError(f"length={length} must be at least 2 positions")
