"""benchmarks/long_attention.py's command line: options, the --quick sizes, the out folder, one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# full: torch's fused SDPA (on CPU and CUDA a flash-style kernel: memory linear in N, time N^2);
# full-explicit: the N x N weights materialised (ModelConfig.attention="explicit"), as the paper's T-D did;
# local / compressed: every layer L / M; lmlml: the paper's 5-layer T-DMCA pattern.
KINDS = ("full", "full-explicit", "local", "compressed", "lmlml")
PATTERNS = {"full": None, "full-explicit": None, "local": "LLLLL", "compressed": "MMMMM", "lmlml": "LMLML"}
MODES = ("train", "decode")
MARKER = ".written-by-long_attention"  # the out folder holds this benchmark's files, which it may replace
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "long_attention"
# The fixed model of every point (stated in the report): 5 layers, as the paper's T-DMCA
MODEL = dict(d_model=256, n_heads=4, n_layers=5, d_ff=1024, vocab_size=8000)
QUICK = dict(lengths="64,128", budget_gb=1.0, repeats=1, decode_tokens=4, prefill_chunk=64, block_size=16,
             look_back=1, compression=3, point_timeout=60.0, d_model=32, n_heads=2, d_ff=64, vocab_size=100)
DEFAULTS = dict(lengths="512,1024,2048,4096,8192,16384,32768", budget_gb=8.0, repeats=3, decode_tokens=32,
                prefill_chunk=512, block_size=256, look_back=1, compression=3, point_timeout=600.0,
                d_model=MODEL["d_model"], n_heads=MODEL["n_heads"], d_ff=MODEL["d_ff"],
                vocab_size=MODEL["vocab_size"])


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (`long_attention.py: error: ...`), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def add_sized_options(parser: argparse.ArgumentParser, specs: Sequence[tuple[str, type, str]],
                      defaults: dict[str, Any], quick: dict[str, Any]) -> None:
    """One `--name` option per (name, type, help), left None so that `fill_sized_defaults` can tell a value the
    user gave from one to fill; the help names the default and the --quick value."""
    for name, kind, text in specs:
        key = name.replace("-", "_")
        parser.add_argument(f"--{name}", type=kind, default=None, help=f"{text} (default {defaults[key]}; --quick "
                            f"{quick[key]})")


def fill_sized_defaults(args: argparse.Namespace, defaults: dict[str, Any], quick: dict[str, Any]) -> None:
    """The options the user left out take the --quick value under --quick, else the default."""
    for key, value in (quick if args.quick else defaults).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def _choices(parser: OneLineParser, name: str, text: str, known: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        parser.error(f"--{name}: unknown value {unknown[0] if unknown else '(none)'!r}; choose among "
                     f"{', '.join(known)}")
    return values


def _lengths(parser: OneLineParser, text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--lengths={text!r} must be comma-separated integers, e.g. 512,1024,2048")
    if not values or values[0] < 8:
        parser.error(f"--lengths={text!r} needs lengths of at least 8 tokens")
    return values


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="long_attention.py", description="Peak memory and step time of a training step and of "
                      "cached decoding against sequence length, for full, local, compressed and LMLML attention.")
    p.add_argument("--quick", action="store_true", help="a tiny model and lengths (well under a minute): a smoke run")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, among {', '.join(KINDS)}")
    p.add_argument("--modes", default=",".join(MODES), help="train (forward + backward), decode (prefill, then "
                   "one token at a time with the cache), or both")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for results.md, results.json and "
                   "long_attention.png (default docs/long_attention; a folder holding other files is refused)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the points run (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each point (default: torch's)")
    add_sized_options(p, (
            ("lengths", str, "sequence lengths N"), ("budget-gb", float, "memory budget of one point, GB "
                                                                        "(peak minus the idle baseline)"),
            ("repeats", int, "timed training steps per point (median)"),
            ("decode-tokens", int, "tokens decoded after the prompt"),
            ("prefill-chunk", int, "prompt tokens per cached forward when prefilling"),
            ("block-size", int, "local attention block b"), ("look-back", int, "local attention: earlier blocks seen"),
            ("compression", int, "memory-compressed attention kernel = stride"),
            ("point-timeout", float, "seconds a point may run before it is stopped"),
            ("d-model", int, "model width"), ("n-heads", int, "attention heads"), ("d-ff", int, "feed-forward width"),
            ("vocab-size", int, "vocabulary")), DEFAULTS, QUICK)
    return p


def check_out(parser: OneLineParser, out: Path, marker: str = MARKER, writer: str = "benchmarks/long_attention.py"
              ) -> None:
    """The out folder is new, empty, or one this benchmark wrote before (its marker file); else refused."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        parser.error(f"--out {out} holds files this benchmark did not write; choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / marker).write_text(f"{writer} writes and replaces its own files here\n")
    except OSError as error:
        parser.error(f"--out {out}: cannot write there ({error.strerror})")


def _check_numbers(parser: OneLineParser, args: argparse.Namespace) -> None:
    for name in ("repeats", "decode_tokens", "prefill_chunk", "block_size", "compression", "d_model", "n_heads",
                 "d_ff", "vocab_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be at least 1")
    if args.look_back < 0:
        parser.error(f"--look-back={args.look_back} must be 0 or more")
    for name in ("budget_gb", "point_timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be above 0")
    if args.d_model % args.n_heads:
        parser.error(f"--d-model={args.d_model} is not divisible by --n-heads={args.n_heads}")
    if args.lengths[0] < args.compression:
        parser.error(f"--lengths: {args.lengths[0]} is shorter than the compression kernel {args.compression}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fill_sized_defaults(args, DEFAULTS, QUICK)
    args.kinds = _choices(parser, "kinds", args.kinds, KINDS)
    args.modes = _choices(parser, "modes", args.modes, MODES)
    args.lengths = _lengths(parser, args.lengths)
    _check_numbers(parser, args)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device here; use --device cpu")
    check_out(parser, Path(args.out))
    return args
