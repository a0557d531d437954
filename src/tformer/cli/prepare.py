"""`tformer prepare INPUT... --out DIR (--tokenizer KIND | --tokenizer-file PATH)`: text to train.bin/val.bin."""

from __future__ import annotations

import argparse

# tformer.tokenization.KINDS, written here so that `tformer --help` need not import torch (a test keeps them equal)
TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece")


def _prepare(args: argparse.Namespace) -> None:
    from tformer.data.prepare import prepare  # numpy, tokenizers and torch only when it runs

    prepare(args.inputs, args.out, tokenizer=args.tokenizer or "char", tokenizer_file=args.tokenizer_file,
            vocab_size=args.vocab_size, val_fraction=args.val_fraction, workers=args.workers,
            strip_gutenberg=args.strip_gutenberg, overwrite=args.overwrite)


def add_prepare_command(commands: argparse._SubParsersAction) -> None:
    prep = commands.add_parser("prepare", help="tokenize text files into train.bin/val.bin (nanoGPT's format)")
    prep.add_argument("inputs", nargs="+", metavar="INPUT", help="text files, plain or .gz, joined in this order")
    prep.add_argument("--out", required=True, metavar="DIR", help="folder for train.bin, val.bin, tokenizer.json, "
                      "meta.json")
    which = prep.add_mutually_exclusive_group(required=True)
    which.add_argument("--tokenizer", choices=TOKENIZER_KINDS, help="train a tokenizer of this kind on the text")
    which.add_argument("--tokenizer-file", metavar="PATH", help="use this tokenizer.json (or a folder holding one)")
    prep.add_argument("--vocab-size", type=int, metavar="N", help="vocabulary to train (default: every character "
                      "for char, 8192 for bpe and wordpiece, 30000 for word)")
    prep.add_argument("--val-fraction", type=float, default=0.1, metavar="F", help="the last part of the text kept for "
                      "validation (default: 0.1)")
    prep.add_argument("--workers", type=int, metavar="N", help="encoding threads (default: one per CPU)")
    prep.add_argument("--strip-gutenberg", action=argparse.BooleanOptionalAction, default=True,
                      help="keep only the text between Project Gutenberg's START and END lines (default: on)")
    prep.add_argument("--overwrite", action="store_true", help="replace the train.bin, val.bin, tokenizer.json and "
                      "meta.json of an earlier prepare in --out (without it, such a folder is refused)")
    prep.set_defaults(run=_prepare)
