"""Matplotlib for the viz modules: loaded on first use, figures drawn off-screen (Agg) and saved by extension."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'tformer[viz]'"
IMAGE_SUFFIXES = (".png", ".svg")
DPI = 100


def new_figure(width: float, height: float, dpi: int = DPI) -> Any:
    """A matplotlib Figure of width x height inches on an Agg canvas (no window, no global pyplot state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def image_path(path: str | Path) -> Path:
    """The path as a Path, if its extension is one a figure can be saved as."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write a figure to {str(path)!r}: unknown extension {path.suffix or '(none)'!r}; "
                         f"use {' or '.join(IMAGE_SUFFIXES)}")
    return path


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write the figure at exactly its size (width x height inches x dpi pixels) to a .png or .svg file."""
    path = image_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=figure.dpi)  # no bbox_inches="tight": that would change the pixel size
    return path


def inches_for(count: int, base: float, per_item: float, low: float, high: float) -> float:
    """Figure side for `count` labelled items, in steps of 1/4 inch so that inches x dpi is an exact integer."""
    return min(high, max(low, math.ceil((base + per_item * count) * 4) / 4))


def plain_text(text: str) -> str:
    """Text shown as typed: '$' escaped so that matplotlib does not read '$x$' as math."""
    return text.replace("$", r"\$")
