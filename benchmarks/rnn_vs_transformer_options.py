"""benchmarks/rnn_vs_transformer.py's command line: options, the --quick sizes, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SECTIONS = ("params", "parallelism", "path", "demo", "multi30k")
MARKER = ".written-by-rnn_vs_transformer"  # the out folder holds this benchmark's files, which it may replace
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "rnn_vs_transformer"
# --quick: tiny models and sizes, about a minute on two cores (the test in tests/benchmarks/ runs it)
QUICK = dict(size="tiny", lengths="32,64,128", transformer_lengths="256", tokens=256, repeats=1, warmup=1,
             distances="4,16", path_steps=20, path_tokens=128, path_eval=32, demo_budget=6.0, multi30k_budget=6.0,
             evals=2, eval_pairs=20, demo_test_pairs=20, multi30k_test_sentences=10, calibration=3)
DEFAULTS = dict(size="demo", lengths="32,64,128,256,512,1024", transformer_lengths="2048", tokens=2048, repeats=3,
                warmup=1, distances="4,8,16,32,64,128,256,512", path_steps=2000, path_tokens=2048, path_eval=256,
                demo_budget=300.0, multi30k_budget=900.0, evals=6, eval_pairs=200, demo_test_pairs=2000,
                multi30k_test_sentences=None, calibration=20)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (`rnn_vs_transformer.py: error: ...`), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _ints(parser: OneLineParser, name: str, text: str, low: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--{name}={text!r} must be comma-separated integers, e.g. 32,64,128")
    if not values or min(values) < low:
        parser.error(f"--{name}={text!r} needs integers of at least {low}")
    return values


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="rnn_vs_transformer.py", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny models and sizes (about a minute): a smoke run")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, among {', '.join(SECTIONS)}")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for results.md, results.json and the PNGs "
                   "(default docs/rnn_vs_transformer; a folder holding other files is refused)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the parallelism "
                   "section (default: all cores); the side-by-side runs have one thread each")
    p.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="runs side by side in the path and quality "
                   "sections (2: one core each; 1: one after the other)")
    p.add_argument("--work-dir", default=None, help="where the quality runs write (default: a temporary folder, "
                   "removed at the end)")
    for name, kind, text in (
            ("lengths", str, "parallelism: lengths of both models"),
            ("transformer-lengths", str, "parallelism: lengths of the Transformer only"),
            ("tokens", int, "parallelism: target tokens per step (batch = tokens // length)"),
            ("repeats", int, "parallelism: timed steps per point (median)"),
            ("warmup", int, "parallelism: untimed steps first"),
            ("distances", str, "path: the distances d"), ("path-steps", int, "path: training steps"),
            ("path-tokens", int, "path: source tokens per step (rows = tokens // source length)"),
            ("path-eval", int, "path: test rows per d"),
            ("demo-budget", float, "demo numbers: training seconds per model"),
            ("multi30k-budget", float, "Multi30k: training seconds per model"),
            ("evals", int, "quality: learning-curve points"), ("eval-pairs", int, "quality: validation pairs "
                                                                                  "decoded per curve point"),
            ("demo-test-pairs", int, "demo numbers: test numbers decoded at the end"),
            ("multi30k-test-sentences", int, "Multi30k: test2016 sentences decoded at the end (default: all 1,000)"),
            ("calibration", int, "quality: steps timed before the schedule is fitted to the budget")):
        p.add_argument(f"--{name}", type=kind, default=None, help=f"{text} (default {DEFAULTS[name.replace('-', '_')]};"
                       f" --quick {QUICK[name.replace('-', '_')]})")
    return p


def check_out(parser: OneLineParser, out: Path) -> None:
    """The out folder is new, empty, or one this benchmark wrote before (its marker file); else refused."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        parser.error(f"--out {out} holds files this benchmark did not write; choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("benchmarks/rnn_vs_transformer.py writes and replaces its own files here\n")
    except OSError as error:
        parser.error(f"--out {out}: cannot write there ({error.strerror})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown or not args.sections:
        parser.error(f"--sections: unknown section {unknown[0] if unknown else '(none)'!r}; choose among "
                     f"{', '.join(SECTIONS)}")
    args.lengths = _ints(parser, "lengths", args.lengths, 2)
    args.transformer_lengths = _ints(parser, "transformer-lengths", args.transformer_lengths, 2) \
        if args.transformer_lengths else []
    args.distances = _ints(parser, "distances", args.distances, 1)
    for name in ("threads", "tokens", "repeats", "path_steps", "path_tokens", "path_eval", "evals", "eval_pairs",
                 "demo_test_pairs", "multi30k_test_sentences", "calibration"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be at least 1")
    if args.warmup < 0:
        parser.error(f"--warmup={args.warmup} must be 0 or more")
    for name in ("demo_budget", "multi30k_budget"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be above 0 seconds")
    check_out(parser, Path(args.out))
    return args
