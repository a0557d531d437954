"""Tokenization throughput of `tformer prepare`'s encoding path against a plain `tokenizers` encode_batch.

What it measures: MB/s of raw UTF-8 text turned into a uint16 token file by a byte-level BPE tokenizer of 8,192
entries, on WikiText-2 (valid + test) and the 33 Project Gutenberg books of ../shared/data, read as `tformer
prepare` reads them (BOM dropped, CRLF -> LF, only the text between the Gutenberg START/END lines).

* tformer: `tformer.data.prepare.encode_to_file`, the code `tformer prepare` runs: the text cut into ~256 Ki
  character chunks after newlines where the cut cannot change a token, each chunk encoded by
  `encode_batch_fast` in one of `--workers` threads (the Rust encoder releases the GIL), ids written as uint16.
* peer: what a user of `tokenizers` writes by hand: `Tokenizer.encode_batch(lines)` over the text's lines (Rust
  threads, the library's own parallelism), ids gathered with `np.fromiter` and written as uint16. Cutting at
  every line can change byte-level BPE ids (GPT-2's pattern keeps "\\n\\n" together); the table says whether
  the two id files came out identical. tformer's ids are those of encoding the text whole.

The tokenizer is trained once on the whole text (as `tformer prepare` does) and its training time is reported on
its own. The two paths alternate for `--rounds` rounds so that a slow phase of a shared machine hits both; the
headline is the median of the per-round ratios tformer / peer (> 1: tformer is faster). A round-trip check
(decode(tformer's ids) == text) runs once before timing. Progress goes to stderr, the table to stdout.

Run (from the repository root; about 2-4 minutes on 2 cores):

    .venv/bin/python benchmarks/tokenization.py
    .venv/bin/python benchmarks/tokenization.py --data ../shared/data --rounds 3 --workers 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tokenizers

from tformer import Tokenizer
from tformer.data.prepare import encode_to_file, join_texts, read_text

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def corpus_files(data: Path) -> list[Path]:
    files = [data / "wikitext-2" / "valid.txt.gz", data / "wikitext-2" / "test.txt.gz"]
    files += sorted((data / "gutenberg").glob("*.txt.gz"))
    missing = [f for f in files if not f.is_file()]
    if missing or len(files) != 35:
        raise FileNotFoundError(f"expected WikiText-2 valid/test and 33 Gutenberg books under {data}; "
                                f"missing {missing[:3]}; pass --data DIR")
    return files


def run_tformer(text: str, tok: Tokenizer, out: Path, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    count = encode_to_file(text, tok, out, np.dtype(np.uint16), workers, lambda _: None)
    return time.perf_counter() - started, count


def run_peer(lines: list[str], backend: tokenizers.Tokenizer, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    encodings = backend.encode_batch(lines, add_special_tokens=False)
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.uint16)
    ids.tofile(out)
    return time.perf_counter() - started, ids.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, each one run of both paths")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tformer's encoding threads")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    files = corpus_files(args.data)
    started = time.perf_counter()
    text = join_texts([read_text(f) for f in files])
    megabytes = len(text.encode("utf-8")) / 1e6
    read_s = time.perf_counter() - started
    log(f"read {len(files)} files: {megabytes:.2f} MB of UTF-8, {len(text):,} characters in {read_s:.1f} s")

    started = time.perf_counter()
    lines = text.splitlines(keepends=True)
    tok = Tokenizer.train(iter(lines[i:i + 5000] for i in range(0, len(lines), 5000)), kind="bpe",
                          vocab_size=args.vocab_size)
    train_s = time.perf_counter() - started
    log(f"trained {tok} in {train_s:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        ours_path, peer_path = Path(tmp) / "tformer.bin", Path(tmp) / "peer.bin"
        _, tokens = run_tformer(text, tok, ours_path, args.workers)  # warm-up, and the round-trip check
        assert tok.decode(np.fromfile(ours_path, dtype=np.uint16).tolist()) == text, "round trip failed"
        _, peer_tokens = run_peer(lines, tok.backend, peer_path)
        same = np.array_equal(np.fromfile(ours_path, dtype=np.uint16), np.fromfile(peer_path, dtype=np.uint16))
        log(f"round trip ok; tformer {tokens:,} tokens, peer {peer_tokens:,} tokens, identical ids: {same}")
        ours, peer = [], []
        for round_ in range(args.rounds):
            ours.append(run_tformer(text, tok, ours_path, args.workers)[0])
            peer.append(run_peer(lines, tok.backend, peer_path)[0])
            log(f"round {round_ + 1}: tformer {ours[-1]:.2f} s, peer {peer[-1]:.2f} s")

    def speeds(times: list[float]) -> str:
        mbs = sorted(megabytes / t for t in times)
        return f"{statistics.median(mbs):.2f} [{mbs[0]:.2f}-{mbs[-1]:.2f}]"

    ratios = sorted(p / o for o, p in zip(ours, peer, strict=True))
    print("## Tokenization throughput, tformer prepare's encoding vs tokenizers encode_batch\n")
    print(f"tokenizers {tokenizers.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"cpu: {cpu_name()}; {os.cpu_count()} logical CPUs; tformer workers {args.workers}; "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}")
    print(f"corpus: WikiText-2 valid+test + 33 Gutenberg books (bodies), {megabytes:.2f} MB UTF-8, "
          f"{len(text):,} characters, {len(lines):,} lines")
    print(f"tokenizer: byte-level BPE, {tok.vocab_size:,} entries, trained once in {train_s:.1f} s "
          f"(reading the files: {read_s:.1f} s); {args.rounds} timed rounds after one warm-up; "
          f"the two id files are {'identical' if same else 'different'}\n")
    print("| path | tokens | MB/s median [min-max] | ratio tformer / peer, per round: median [min-max] |")
    print("|---|---|---|---|")
    print(f"| tformer prepare (encode_to_file) | {tokens:,} | {speeds(ours)} | "
          f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}] |")
    print(f"| tokenizers encode_batch(lines) | {peer_tokens:,} | {speeds(peer)} | 1 |")
    print("\nMB/s = megabytes of raw UTF-8 text per second, ids written to a uint16 file by both; "
          "ratio above 1 means tformer is faster.")
    log(f"total wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
