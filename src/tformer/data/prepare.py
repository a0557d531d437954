"""`tformer prepare`: text files to a tokenizer and the token files of nanoGPT (`train.bin`, `val.bin`, `meta.json`).

The steps:

1. Read each file (plain or .gz) as UTF-8, drop a byte-order mark, turn CRLF into LF, and, for Project Gutenberg
   books, keep only the lines between the `*** START OF` and `*** END OF` marker lines (blank lines at both ends of
   the body dropped). Several files are joined in the order given with one empty line between two of them (a
   file that does not end with a newline gets one first); a single file is used exactly as read.
2. Split by characters as nanoGPT does: with n characters, train = text[:int(n * (1 - val_fraction))], val = the
   rest. For tinyshakespeare and the char tokenizer that is 1,003,854 + 111,540 tokens.
3. Train a tokenizer on the whole text, as nanoGPT's char vocabulary is (or load one from a tokenizer.json:
   `--tokenizer-file`), and encode both splits in chunks, in parallel threads (`encode_batch_fast` releases the
   GIL). The text is cut only after a newline where the tokenizer's own normalizer and pre-tokenizer give the
   same pieces with and without the cut, so the ids are exactly those of encoding each split whole (a plain cut
   at every line would not do: GPT-2's pattern keeps "\n\n" and " \n" together). No special tokens are added.
4. Write train.bin and val.bin (flat numpy uint16 ids when the vocabulary has at most 65,536 entries, else uint32),
   tokenizer.json and meta.json, each through a temporary file and a rename.

The output folder is checked before any input is read: a file, a model folder (its tokenizer.json would be
replaced and the model then decodes garbage) or a training run folder is refused; a folder that already holds
these files (an earlier prepare) is refused unless `overwrite=True` (`--overwrite`), as transformers refuses a
non-empty output_dir without overwrite_output_dir.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tformer.tokenization import KINDS, Tokenizer

START_MARKER = re.compile(r"^\*\*\* ?START OF.*$", re.MULTILINE | re.IGNORECASE)
END_MARKER = re.compile(r"^\*\*\* ?END OF.*$", re.MULTILINE | re.IGNORECASE)
CHUNK_CHARS = 1 << 18  # 256 Ki characters per encoding task
WINDOW = 256  # characters on each side of a candidate cut that its check looks at
OUTPUT_FILES = ("train.bin", "val.bin", "tokenizer.json", "meta.json")
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
               "pytorch_model.bin.index.json")  # interop.huggingface's names (data/ does not import it)
RUN_FILES = ("recipe.yaml", "checkpoints", "final", "metrics.jsonl")  # what a `tformer train` run folder holds


def read_text(path: str | os.PathLike, strip_gutenberg: bool = True) -> str:
    """The text of one file (plain or .gz): UTF-8 without BOM, LF line ends, a Gutenberg book's body only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (EOFError, zlib.error) as error:
        raise ValueError(f"{path} is a truncated or damaged .gz file ({error}); download or compress it "
                         "again") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
                         "convert it first, e.g. iconv -f latin1 -t utf-8") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    return gutenberg_body(text) if strip_gutenberg else text


def gutenberg_body(text: str) -> str:
    """The text between a Project Gutenberg book's START and END marker lines; text without markers is unchanged."""
    start, end = START_MARKER.search(text), None
    begin = start.end() if start else 0
    end = END_MARKER.search(text, begin)
    if start is None and end is None:
        return text
    body = text[begin:end.start() if end else len(text)].strip("\n")
    return body + "\n" if body else ""


def join_texts(texts: Sequence[str]) -> str:
    """Files in the order given, one empty line between two of them; a single text is returned as it is."""
    if len(texts) <= 1:
        return texts[0] if texts else ""
    return "\n".join(t if t.endswith("\n") else t + "\n" for t in texts[:-1]) + "\n" + texts[-1]


def split_train_val(text: str, val_fraction: float) -> tuple[str, str]:
    """nanoGPT's split: the first int(n * (1 - val_fraction)) characters train, the rest validate."""
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def chunks(text: str, tokenizer: Tokenizer, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Pieces of `text` whose encodings, concatenated, are the encoding of `text` (cuts after safe newlines)."""
    start = 0
    while start < len(text):
        end = _safe_cut(text, start + size, tokenizer) if start + size < len(text) else len(text)
        yield text[start:end]
        start = end


def _safe_cut(text: str, target: int, tokenizer: Tokenizer) -> int:
    """The first position at or after `target` just past a newline where cutting leaves the pre-tokens as they are."""
    backend = tokenizer.backend
    normalize = backend.normalizer.normalize_str if backend.normalizer else (lambda s: s)
    split = backend.pre_tokenizer.pre_tokenize_str if backend.pre_tokenizer else (lambda s: [(s, None)])

    def pieces(s: str) -> list[str]:
        return [piece for piece, _ in split(normalize(s))]

    newline = text.find("\n", target)
    while newline != -1 and newline + 1 < len(text):
        cut = newline + 1
        left, right = text[max(0, cut - WINDOW):cut], text[cut:cut + WINDOW]
        if pieces(left + right) == pieces(left) + pieces(right):
            return cut
        newline = text.find("\n", cut)
    return len(text)


def encode_to_file(text: str, tokenizer: Tokenizer, path: Path, dtype: np.dtype, workers: int | None = None,
                   progress: Callable[[int], Any] = lambda _: None) -> int:
    """Encode `text` (no special tokens) in `workers` threads (default: one per CPU) and write the ids to `path`;
    returns the number of tokens. `encode_batch_fast` releases the GIL, so the threads run in parallel."""
    backend = tokenizer.backend
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # the fast one skips the offsets
    workers = workers or os.cpu_count() or 1

    def encode_chunk(chunk: str) -> np.ndarray:
        try:
            return np.asarray(encode([chunk], add_special_tokens=False)[0].ids, dtype=dtype)
        except Exception:  # the Rust side raises a bare Exception; `encode` says which character is unknown
            tokenizer.encode(chunk, add_special_tokens=False)
            raise

    count = 0
    with open(path, "wb") as handle, ThreadPoolExecutor(workers) as pool:
        pieces = chunks(text, tokenizer)
        while group := list(itertools.islice(pieces, 4 * workers)):  # a few chunks in memory at a time
            for ids in pool.map(encode_chunk, group):
                ids.tofile(handle)
                count += ids.size
            progress(sum(map(len, group)))
    return count


def prepare(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, tokenizer: str | Tokenizer = "char",
            tokenizer_file: str | os.PathLike | None = None, vocab_size: int | None = None,
            val_fraction: float = 0.1, workers: int | None = None, strip_gutenberg: bool = True,
            progress: bool | None = None, log: Callable[[str], Any] = print, overwrite: bool = False) -> dict[str, Any]:
    """Text files -> `out`/train.bin, val.bin, tokenizer.json, meta.json; returns the meta dict.

    `tokenizer` is a kind to train on the whole text ("char", "word", "bpe", "wordpiece") or a `Tokenizer`;
    `tokenizer_file` loads one instead. `workers`: encoding threads (default: one per CPU). `progress=None` shows
    a tqdm bar when stderr is a terminal. `overwrite=True` replaces the files of an earlier prepare in `out`.
    """
    began = time.perf_counter()
    _check_arguments(inputs, tokenizer, tokenizer_file, vocab_size, val_fraction, workers)
    check_out_folder(out, overwrite=overwrite, tokenizer_file=tokenizer_file)
    given = Tokenizer.from_file(tokenizer_file) if tokenizer_file is not None else None  # refused before the reading
    texts = [read_text(path, strip_gutenberg) for path in inputs]  # every file is checked before any work
    text = join_texts(texts)
    if not text.strip():
        # Only blame the Gutenberg markers when the files do hold text outside them.
        outside_markers = strip_gutenberg and any(read_text(path, False).strip() for path in inputs)
        raise ValueError(f"the corpus is empty: {', '.join(map(str, inputs))} "
                         + ("holds no text between its Gutenberg START/END markers; pass --no-strip-gutenberg"
                            if outside_markers else "holds no text; pass files with text in them"))
    train_text, val_text = split_train_val(text, val_fraction)
    log(f"read {len(inputs)} file{'s' * (len(inputs) > 1)}: {len(text):,} characters "
        f"({len(train_text):,} train, {len(val_text):,} val)")

    started = time.perf_counter()
    if tokenizer_file is not None:
        tok, how = given, f"loaded from {tokenizer_file}"
    elif isinstance(tokenizer, Tokenizer):
        tok, how = tokenizer, "given"
    else:
        tok = Tokenizer.train(_lines(text), kind=tokenizer, vocab_size=vocab_size,
                              show_progress=sys.stderr.isatty() if progress is None else progress)
        how = f"trained on the corpus in {time.perf_counter() - started:.1f} s"
    dtype = token_dtype(tok.vocab_size)
    log(f"tokenizer: {tok.kind}, {tok.vocab_size:,} tokens, {how}")

    started = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (tqdm(total=len(text), unit="char", unit_scale=True, desc="encoding", disable=not show) as bar,
          _atomic(out / "train.bin") as train_tmp, _atomic(out / "val.bin") as val_tmp):  # both files, or neither
        counts = {split: encode_to_file(part, tok, tmp, dtype, workers, bar.update)
                  for split, part, tmp in (("train", train_text, train_tmp), ("val", val_text, val_tmp))}
    tok.save(out / "tokenizer.json")
    encoding_s = time.perf_counter() - started
    meta = {
        "tokenizer": tok.kind, "tokenizer_file": "tokenizer.json", "vocab_size": tok.vocab_size,
        "dtype": dtype.name, "train_tokens": counts["train"], "val_tokens": counts["val"],
        "train_characters": len(train_text), "val_characters": len(val_text), "val_fraction": val_fraction,
        "strip_gutenberg": strip_gutenberg, "inputs": [str(path) for path in inputs],
        "special_tokens": tok.special_tokens,
    }
    with _atomic(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"train.bin: {counts['train']:,} tokens, val.bin: {counts['val']:,} tokens ({dtype.name}); "
        f"encoded at {len(text.encode()) / 1e6 / max(encoding_s, 1e-9):.1f} MB/s")
    log(f"wrote {out}/train.bin, val.bin, tokenizer.json, meta.json in {time.perf_counter() - began:.1f} s")
    return meta


def _check_arguments(inputs: Sequence[str | os.PathLike], tokenizer: str | Tokenizer,
                     tokenizer_file: str | os.PathLike | None, vocab_size: int | None, val_fraction: float,
                     workers: int | None) -> None:
    """The cheap checks, before any input is read: values, and that every input file is there."""
    if not inputs:
        raise ValueError("no input files given; pass one or more text files (plain or .gz)")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} is not in [0, 1); nanoGPT uses 0.1")
    if isinstance(tokenizer, str) and tokenizer_file is None and tokenizer not in KINDS:
        raise ValueError(f"unknown tokenizer kind {tokenizer!r}; choose one of {', '.join(KINDS)}")
    if vocab_size is not None and vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size} must be at least 1 (or None for the tokenizer's default)")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers} must be at least 1 (or None for one per CPU)")
    for path in inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such input file: {path}" + (" (a folder; pass the files in it)"
                                                                     if Path(path).is_dir() else ""))


def check_out_folder(out: str | os.PathLike, *, overwrite: bool = False,
                     tokenizer_file: str | os.PathLike | None = None) -> None:
    """Refuse an output folder that prepare would damage: a file, a model or run folder, an earlier prepare's files."""
    out = Path(out)
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"--out {out}: {blocking} is a file, not a folder; pass a folder (new or empty) for "
                                 f"train.bin, val.bin, tokenizer.json and meta.json")
    if not out.is_dir():
        return
    found = [name for name in MODEL_FILES if (out / name).exists()]
    if found:
        raise FileExistsError(f"--out {out} is a model folder ({', '.join(found)}): preparing there would replace "
                              f"its tokenizer.json and the model would then decode garbage; pass another --out")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found:
        raise FileExistsError(f"--out {out} is a training run folder ({', '.join(found)}); pass another --out (a run "
                              f"prepares its own data in RUN/data)")
    reused = tokenizer_file is not None and (out / "tokenizer.json").is_file() and \
        _same_file(out / "tokenizer.json", tokenizer_file)  # rewriting the very file it reads changes nothing
    found = [name for name in OUTPUT_FILES if (out / name).exists() and not (name == "tokenizer.json" and reused)]
    if found and not overwrite:
        raise FileExistsError(f"--out {out} already holds {', '.join(found)} (an earlier prepare?); pass --overwrite "
                              f"to replace them, or pick another --out")


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    b = Path(b)
    b = b / "tokenizer.json" if b.is_dir() else b
    return b.exists() and os.path.samefile(a, b)


def _lines(text: str, per_batch: int = 5000) -> Iterator[list[str]]:
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), per_batch):
        yield lines[i:i + per_batch]


class _atomic:
    """`with _atomic(path) as tmp:` write tmp; on success it replaces `path`, on failure it is removed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        return self.tmp

    def __exit__(self, kind: type | None, *_: Any) -> None:
        if kind is None:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)
