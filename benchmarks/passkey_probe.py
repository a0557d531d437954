"""The passkey probe: can full, local-only and LMLML attention fetch a key stated once early in a long row?

Each kind trains a fresh small decoder-only model (5 layers, learned positions, dropout off) for the same
steps on the same rows of `tformer.data.passkey` (its docstring gives the task's design), then answers rows it
has not seen: the accuracy of the key's digits (teacher-forced argmax, which equals greedy decoding when every
digit is right) and the exact-match rate, at the target length and at every length of the curriculum.

Why a tiny CPU model learns it in minutes: the vocabulary is 66 tokens (one token per phrase, one per digit),
the loss counts only the answer's digits, and a curriculum starts on short rows (--start-length, where every
pattern can reach the key and the copy is learned cheaply: `--first-share` of the steps), then doubles the
length up to --length with the rest of the steps shared equally, at about --tokens tokens per step.
Learned positions (initialised as small as the token embeddings), not sinusoidal ones: sinusoids of norm
sqrt(d_model / 2) drown token embeddings of std 0.02, and the lookup is by content (measured: a 2-layer model at
24 tokens stayed at chance, loss 2.32 after 750 steps, with sinusoidal positions; 0.017 after 150 with learned).

Local attention sees its own block and `look_back` blocks before it (a window of at most (look_back + 1) *
block_size tokens), so past that window it cannot reach the key: its accuracy should fall to chance (10 % per
digit) there. That is the point of the probe.

    PYTHONPATH=src .venv/bin/python benchmarks/passkey_probe.py --length 2048 --out /tmp/passkey
    PYTHONPATH=src .venv/bin/python benchmarks/passkey_probe.py --quick --out /tmp/pq      # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from long_attention_options import OneLineParser, add_sized_options, check_out, fill_sized_defaults
from tformer.config import ModelConfig
from tformer.data.passkey import VOCABULARY, PasskeyTask, answer_digits, min_length, passkey_batch
from tformer.models import build_model

KINDS = {"full": None, "local": "LLLLL", "compressed": "MMMMM", "lmlml": "LMLML"}
MARKER = ".written-by-passkey_probe"
QUICK = dict(length=64, start_length=16, steps=60, tokens=512, eval_rows=16, d_model=32, n_heads=2, block_size=8)
DEFAULTS = dict(length=2048, start_length=32, steps=600, tokens=8192, eval_rows=64, d_model=64, n_heads=2,
                block_size=128)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="passkey_probe.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny model and short rows (seconds): a smoke run")
    p.add_argument("--kinds", default="full,local,lmlml", help=f"comma-separated, among {', '.join(KINDS)}")
    p.add_argument("--out", required=True, help="folder for results.md and results.json (a new or empty one, "
                   "or one this probe wrote)")
    add_sized_options(p, [(name, int, text) for name, text in (
        ("length", "row length of the probe (the last curriculum stage)"),
        ("start-length", "row length of the first curriculum stage"),
        ("steps", "optimizer steps per model, the whole curriculum"),
        ("tokens", "tokens per step (rows = tokens // length, at least 1)"),
        ("eval-rows", "unseen rows scored per length"), ("d-model", "model width"),
        ("n-heads", "attention heads"), ("block-size", "local attention block b"))], DEFAULTS, QUICK)
    p.add_argument("--digits", type=int, default=5, help="digits of the key (default 5)")
    p.add_argument("--look-back", type=int, default=1, help="local attention: earlier blocks seen (default 1)")
    p.add_argument("--compression", type=int, default=3, help="memory-compressed kernel = stride (default 3)")
    p.add_argument("--first-share", type=float, default=0.5, help="share of the steps on the first stage")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3, 50 warmup steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fill_sized_defaults(args, DEFAULTS, QUICK)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown or not args.kinds:
        parser.error(f"--kinds: unknown kind {unknown[0] if unknown else '(none)'!r}; choose among {', '.join(KINDS)}")
    for name in ("steps", "tokens", "eval_rows", "d_model", "n_heads", "block_size", "digits", "compression",
                 "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be at least 1")
    if args.d_model % args.n_heads:
        parser.error(f"--d-model={args.d_model} is not divisible by --n-heads={args.n_heads}")
    shortest = max(min_length(args.digits), args.compression)
    if not shortest <= args.start_length <= args.length:
        parser.error(f"--start-length={args.start_length} must be between {shortest} (a {args.digits}-digit key "
                     f"and its question) and --length={args.length}")
    if not 0 < args.first_share <= 1 or not args.lr > 0 or args.look_back < 0:
        parser.error("--first-share must be in (0, 1], --lr above 0 and --look-back 0 or more")
    check_out(parser, Path(args.out), MARKER, "benchmarks/passkey_probe.py")
    return args


def curriculum(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(row length, steps) per stage: start_length doubling up to length, the first stage `first_share` of the
    steps and the others an equal share of the rest."""
    lengths = [args.start_length]
    while lengths[-1] < args.length:
        lengths.append(min(2 * lengths[-1], args.length))
    if len(lengths) == 1:
        return [(lengths[0], args.steps)]
    first = max(1, round(args.steps * args.first_share)) if len(lengths) > 1 else args.steps
    rest = args.steps - first
    shares = [rest // (len(lengths) - 1) + (i < rest % (len(lengths) - 1)) for i in range(len(lengths) - 1)]
    return [(lengths[0], first), *zip(lengths[1:], shares, strict=True)]


def build(args: argparse.Namespace, kind: str) -> torch.nn.Module:
    fields: dict[str, Any] = dict(family="gpt", vocab_size=len(VOCABULARY), d_model=args.d_model,
                                  n_heads=args.n_heads, n_layers=5, d_ff=4 * args.d_model,
                                  max_positions=args.length, dropout=0.0, attention_dropout=0.0)
    if KINDS[kind] is not None:
        fields.update(attention_pattern=KINDS[kind], local_block_size=args.block_size,
                      local_look_back=args.look_back, compression=args.compression)
    torch.manual_seed(args.seed)
    return build_model(ModelConfig(**fields))


def train(model: torch.nn.Module, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The curriculum, one AdamW step per batch; the seconds and the last loss of each stage."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    step, stages = 0, []
    model.train()
    for length, steps in curriculum(args):
        task, rows = PasskeyTask(length, args.digits), max(1, args.tokens // length)
        began, loss = time.perf_counter(), math.nan
        for _ in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / 50)
            batch = passkey_batch(task, rows, generator)
            loss = model(batch["input_ids"], labels=batch["labels"]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step, loss = step + 1, loss.item()
        seconds = time.perf_counter() - began
        stages.append({"length": length, "steps": steps, "rows": rows, "seconds": seconds, "loss": loss})
        log(f"  stage {length:>6} tokens x {rows} rows: {steps} steps, {seconds:.1f} s, last loss {loss:.3f}")
    return {"stages": stages, "train_s": sum(s["seconds"] for s in stages)}


@torch.no_grad()
def accuracy(model: torch.nn.Module, args: argparse.Namespace, length: int) -> dict[str, float]:
    """Digit accuracy and exact match on `eval_rows` unseen rows of `length` (their own seed)."""
    model.eval()
    task, generator = PasskeyTask(length, args.digits), torch.Generator().manual_seed(args.seed + 10_000 + length)
    rows, right, exact = max(1, args.tokens // length), 0, 0
    for start in range(0, args.eval_rows, rows):
        batch = passkey_batch(task, min(rows, args.eval_rows - start), generator)
        hits = answer_digits(model(batch["input_ids"]).logits, task) == batch["keys"]
        right, exact = right + int(hits.sum()), exact + int(hits.all(-1).sum())
    return {"length": length, "digit_accuracy": right / (args.eval_rows * args.digits),
            "exact_match": exact / args.eval_rows}


def probe(args: argparse.Namespace, kind: str, log: Any) -> dict[str, Any]:
    try:
        model = build(args, kind)
    except TypeError as error:  # no attention_pattern in this tformer: the stack is not merged
        return {"kind": kind, "status": "unavailable", "why": str(error)}
    log(f"{kind}: {sum(p.numel() for p in model.parameters()):,} parameters")
    result = {"kind": kind, "status": "ok", "parameters": sum(p.numel() for p in model.parameters()),
              **train(model, args, log)}
    result["accuracy"] = [accuracy(model, args, length) for length, _ in curriculum(args)]
    return result


def report(results: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    lengths = [length for length, _ in curriculum(args)]
    window = (args.look_back + 1) * args.block_size
    lines = ["## Passkey probe", "", f"Command: `benchmarks/passkey_probe.py {' '.join(sys.argv[1:])}`  ",
             f"Model: 5 layers, d_model {args.d_model}, {args.n_heads} heads, vocabulary {len(VOCABULARY)}; "
             f"{args.steps} steps, about {args.tokens} tokens a step, curriculum "
             f"{', '.join(f'{n}x{s}' for n, s in curriculum(args))} (length x steps); a {args.digits}-digit key "
             f"within the first 20 % of the row; local window {window} tokens (b={args.block_size}, look_back="
             f"{args.look_back}); compression {args.compression}  ", f"Wall time: {wall:.0f} s", "",
             "Digit accuracy / exact match on unseen rows (" + f"{args.eval_rows} per length; chance 10 % / "
             f"{100 * 0.1 ** args.digits:.3g} %):", "",
             "| kind | train s | " + " | ".join(f"N={n:,}" for n in lengths) + " |",
             "|---|---:|" + "---|" * len(lengths)]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['kind']} | {r['status']} |" + " |" * len(lengths))
            continue
        cells = [f"{100 * a['digit_accuracy']:.0f} % / {100 * a['exact_match']:.0f} %" for a in r["accuracy"]]
        lines.append(f"| {r['kind']} | {r['train_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
    results = [probe(args, kind, log) for kind in args.kinds]
    text = report(results, args, time.perf_counter() - began)
    print(text)
    out = Path(args.out)
    (out / "results.md").write_text(text + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"options": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
