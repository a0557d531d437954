"""`tformer demo [--out DIR] [--resume] [--overwrite] [--model.family=rnn] [--key.sub=value ...]`: numbers."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> None:
    from tformer.demo import run_demo  # the Trainer's imports only when the demo runs

    run_demo(args.out, overrides=args.overrides, resume=args.resume, overwrite=args.overwrite)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="train the encoder-decoder on English->German numbers on this CPU and show the results",
        description="Train the demo-numbers recipe, then print exact match and BLEU on the held-out test numbers "
                    "and three 4-best beam lists. Recipe options can be overridden: --train.max_steps=300. "
                    "--model.family=rnn trains RNNsearch (the 2014 GRU encoder-decoder with additive attention, "
                    "recipe rnn-demo-numbers, in runs/demo-rnn) instead of the Transformer.")
    demo.add_argument("--out", metavar="DIR", help="the run folder (default: runs/demo, where each demo replaces the "
                      "previous one; a folder given here that holds a run is refused unless --resume)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo from its checkpoint")
    demo.add_argument("--overwrite", action="store_true", help="--out holds an earlier run: delete its files first")
    demo.set_defaults(run=_demo, overrides=[], accepts_overrides=True)
