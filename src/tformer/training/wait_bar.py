"""A progress bar for a wait over a few seconds that is not a training loop (decoding a test set, scoring a dev
split): tqdm on stderr when it is a terminal, nothing otherwise (logs and pipes stay clean), as `RunLog` does."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def wait_bar(items: Iterable[T], *, total: int, desc: str, unit: str = "batch",
             stream: TextIO | None = None) -> Iterator[T]:
    """`items`, shown as a bar of `total` steps titled `desc` on `stream` (stderr) when it is a terminal; the bar
    is removed when done (leave=False), so the result lines that follow stand alone."""
    stream = stream or sys.stderr
    shown = stream.isatty() and total > 1
    yield from tqdm(items, total=total, desc=desc, unit=unit, file=stream, leave=False, dynamic_ncols=True,
                    disable=not shown)
