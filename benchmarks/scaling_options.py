"""benchmarks/scaling.py's command line: the sizes, data amounts and token budget (default and --quick), the out
and runs folders, one-line errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from long_attention_options import OneLineParser, add_sized_options, check_out, fill_sized_defaults

MARKER = ".written-by-scaling"  # the out folder holds this benchmark's report, which it may replace
RUNS_MARKER = ".written-by-scaling-runs"  # the runs folder holds its prepared corpus and run folders
REPO = Path(__file__).resolve().parents[1]
# The default fits "3 hours of CPU in the background": steps x step time summed over the sizes, x 4 data amounts
# (the estimate is measured and printed at the start of every sweep).
DEFAULTS = dict(sizes="2x64x2,3x128x4,4x192x6,6x256x8,8x320x8", data_tokens="45000,135000,410000,1228800",
                steps=600, batch_size=16, block_size=128, vocab_size=4096, books="gutenberg/*.txt.gz",
                val_fraction=0.05, eval_batches=16, zero_shot_examples=200, lr=1e-3)
QUICK = dict(sizes="1x16x2,1x24x2,2x24x2,2x32x2,2x48x4", data_tokens="200,400,800", steps=6, batch_size=4,
             block_size=32, vocab_size=300, books="gutenberg/jekyll-and-hyde.txt.gz", val_fraction=0.1,
             eval_batches=2, zero_shot_examples=16, lr=3e-3)


@dataclass(frozen=True)
class Size:
    """One GPT of the sweep: n_layers, d_model, n_heads (d_ff = 4 d_model, GPT-2's)."""

    n_layers: int
    d_model: int
    n_heads: int

    @property
    def name(self) -> str:
        return f"L{self.n_layers}-d{self.d_model}-h{self.n_heads}"


def _sizes(parser: OneLineParser, text: str) -> list[Size]:
    sizes = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        try:
            layers, width, heads = (int(part) for part in item.split("x"))
        except ValueError:
            parser.error(f"--sizes: {item!r} is not LAYERSxD_MODELxHEADS, e.g. 4x192x6")
        if min(layers, width, heads) < 1 or width % heads:
            parser.error(f"--sizes: {item!r} needs positive numbers and d_model divisible by the heads")
        sizes.append(Size(layers, width, heads))
    if len(set(sizes)) < 3:
        parser.error(f"--sizes={text!r} gives {len(set(sizes))} distinct sizes; the L(N) fit needs 3 or more")
    return sorted(set(sizes), key=lambda s: s.n_layers * s.d_model ** 2)


def _amounts(parser: OneLineParser, text: str, block_size: int) -> list[int]:
    try:
        amounts = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--data-tokens={text!r} must be comma-separated integers, e.g. 45000,135000,410000")
    if len(amounts) < 3:
        parser.error(f"--data-tokens={text!r} gives {len(amounts)} amounts; the L(D) fit needs 3 or more")
    if amounts[0] <= block_size:
        parser.error(f"--data-tokens: {amounts[0]} tokens is not one window of --block-size={block_size} + 1")
    return amounts


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="scaling.py", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, data and steps on one short book: a smoke run")
    p.add_argument("--out", default=str(REPO / "docs" / "scaling"), help="folder for results.md, results.json, "
                   "loss_vs_params.png, loss_vs_compute.png (default docs/scaling; other files there: refused)")
    p.add_argument("--runs", default=str(REPO / "runs" / "scaling"), help="folder for the prepared corpus and one "
                   "run folder per point (default runs/scaling); a rerun skips finished points, resumes the rest")
    p.add_argument("--data", default=None, help="data root the --books patterns are under (default TFORMER_DATA, "
                   "else ../shared/data); SST-2 for the zero-shot column is read from DATA/glue/SST-2")
    p.add_argument("--estimate-only", action="store_true", help="prepare the corpus, print the measured time "
                   "estimate of the points still to train, and stop")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (default 1)")
    add_sized_options(p, (
            ("sizes", str, "GPTs as LAYERSxD_MODELxHEADS, comma-separated"),
            ("data-tokens", str, "training tokens available (prefixes of train.bin), comma-separated"),
            ("steps", int, "optimizer steps of every point (the token budget is steps x batch x block)"),
            ("batch-size", int, "rows per step"), ("block-size", int, "tokens per row"),
            ("vocab-size", int, "byte-level BPE vocabulary, trained once on the books"),
            ("books", str, "comma-separated file patterns under --data"),
            ("val-fraction", float, "last fraction of the joined books held out: every point's validation text"),
            ("eval-batches", int, "validation batches (fixed windows, the same for every point)"),
            ("zero-shot-examples", int, "SST-2 dev examples scored zero-shot per point (0: no zero-shot column)"),
            ("lr", float, "peak learning rate (cosine to a tenth, 5 %% warmup)")), DEFAULTS, QUICK)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fill_sized_defaults(args, DEFAULTS, QUICK)
    for name in ("threads", "steps", "batch_size", "block_size", "vocab_size", "eval_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be at least 1")
    if args.zero_shot_examples < 0:
        parser.error(f"--zero-shot-examples={args.zero_shot_examples} must be 0 (none) or more")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction={args.val_fraction} must be in (0, 1): the validation loss needs held-out text")
    if not args.lr > 0:
        parser.error(f"--lr={args.lr} must be above 0")
    args.sizes = _sizes(parser, args.sizes)
    args.data_tokens = _amounts(parser, args.data_tokens, args.block_size)
    args.books = [v.strip() for v in args.books.split(",") if v.strip()]
    if not args.books:
        parser.error("--books is empty; give file patterns under --data, e.g. gutenberg/*.txt.gz")
    args.out, args.runs = Path(args.out), Path(args.runs)
    if args.out.resolve() == args.runs.resolve():
        parser.error(f"--out and --runs are both {args.out}; give the runs their own folder")
    check_out(parser, args.out, MARKER, "benchmarks/scaling.py")
    check_out(parser, args.runs, RUNS_MARKER, "benchmarks/scaling.py (prepared corpus and run folders)")
    return args
