"""What `Tokenizer.train` reads: text files (plain or .gz) or an iterator of texts, and whether any of it is text.

A tokenizer trained on nothing (an empty list, files or texts that are all blank) knows only its special tokens and
would encode every word as [UNK] or fail; `Tokenizer.train` refuses it with `NO_TEXT`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

NO_TEXT = "Tokenizer.train got {what}: a tokenizer trained on no text knows no tokens; pass files or texts with text"


def file_has_text(path: Path) -> bool:
    """Whether a plain text file holds anything but whitespace (read until the first such character)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


class TextCheck:
    """An iterator of texts (or batches of texts) passed through as it is, noting whether any held text."""

    def __init__(self, texts: Iterable[Any]) -> None:
        self.texts, self.items, self.seen_text = iter(texts), 0, False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self.texts)
        self.items += 1
        if not self.seen_text:
            pieces = [item] if isinstance(item, str) else item if isinstance(item, list | tuple) else []
            self.seen_text = any(isinstance(p, str) and p.strip() for p in pieces)
        return item


def as_files(source: Any) -> list[Path] | None:
    """Paths, if `source` names files (a path, or a list/tuple of paths); None for an iterator of texts."""
    if isinstance(source, str | os.PathLike):
        source = [source]
    elif not (isinstance(source, list | tuple) and all(isinstance(s, str | os.PathLike) for s in source)):
        return None
    files = [Path(s) for s in source]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"no such file: {str(file)[:80]!r} (to train on texts in memory rather than "
                                    "files, pass an iterator: Tokenizer.train(iter(texts), ...))")
    return files


def read_batches(files: list[Path], lines_per_batch: int = 2000) -> Iterator[list[str]]:
    """The lines of the files as they are (newlines kept), in batches; .gz files are decompressed as they stream."""
    for file in files:
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", newline="") as handle:
            batch: list[str] = []
            for line in handle:
                batch.append(line)
                if len(batch) == lines_per_batch:
                    yield batch
                    batch = []
            if batch:
                yield batch
