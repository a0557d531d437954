"""The `tformer` command: parses arguments, calls the library, prints one line per error."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from tformer import __version__
from tformer.cli.common import split_overrides
from tformer.cli.explain import add_explain_commands
from tformer.cli.finetune import add_finetune_commands
from tformer.cli.generate import add_generation_commands
from tformer.cli.train import add_training_commands
from tformer.cli.viz import add_viz_commands
from tformer.config import PRESETS, PUBLISHED_PARAMETERS, ModelConfig
from tformer.interrupt import EXIT_CODE as INTERRUPTED
from tformer.interrupt import Interrupted

# tformer.tokenization.KINDS, written here so that `tformer --help` need not import torch (a test keeps them equal)
TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece")


def count_parameters(config: ModelConfig) -> int:
    """Parameters of the model a config describes, built on the meta device (no memory, no time)."""
    import torch

    from tformer.models import build_model

    with torch.device("meta"):
        return build_model(config).num_parameters()


def _models(args: argparse.Namespace) -> None:
    names = list(PRESETS) if args.all else list(PUBLISHED_PARAMETERS)
    print(f"{'preset':<18}{'family':<17}{'layers':>7}{'d_model':>9}{'heads':>7}{'parameters':>15}{'published':>12}")
    for name in names:
        config = ModelConfig.preset(name)
        layers = (f"{config.n_layers}+{config.decoder_layers}" if config.family == "encoder-decoder"
                  else str(config.n_layers))
        published = f"{PUBLISHED_PARAMETERS[name] / 1e6:.0f}M" if name in PUBLISHED_PARAMETERS else "-"
        print(f"{name:<18}{config.family:<17}{layers:>7}{config.d_model:>9}{config.n_heads:>7}"
              f"{count_parameters(config):>15,}{published:>12}")
    if not args.all:
        print(f"(the published sizes; tformer models --all also lists the {len(PRESETS) - len(names)} tiny test "
              "presets)")


def _demo(args: argparse.Namespace) -> None:
    from tformer.demo import run_demo  # the Trainer's imports only when the demo runs

    run_demo(args.out, overrides=args.overrides, resume=args.resume, overwrite=args.overwrite)


def _prepare(args: argparse.Namespace) -> None:
    from tformer.data.prepare import prepare  # numpy, tokenizers and torch only when it runs

    prepare(args.inputs, args.out, tokenizer=args.tokenizer or "char", tokenizer_file=args.tokenizer_file,
            vocab_size=args.vocab_size, val_fraction=args.val_fraction, workers=args.workers,
            strip_gutenberg=args.strip_gutenberg, overwrite=args.overwrite)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tformer", description="The Transformer family on PyTorch.")
    parser.add_argument("--version", action="version", version=f"tformer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the presets with their parameter counts")
    models.add_argument("--all", action="store_true", help="include the tiny test presets")
    models.set_defaults(run=_models)

    demo = commands.add_parser(
        "demo", help="train the encoder-decoder on English->German numbers on this CPU and show the results",
        description="Train the demo-numbers recipe, then print exact match and BLEU on the held-out test numbers "
                    "and three 4-best beam lists. Recipe options can be overridden: --train.max_steps=300.")
    demo.add_argument("--out", metavar="DIR", help="the run folder (default: runs/demo, where each demo replaces the "
                      "previous one; a folder given here that holds a run is refused unless --resume)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo from its checkpoint")
    demo.add_argument("--overwrite", action="store_true", help="--out holds an earlier run: delete its files first")
    demo.set_defaults(run=_demo, overrides=[], accepts_overrides=True)

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

    add_generation_commands(commands)
    add_training_commands(commands)
    add_finetune_commands(commands)
    add_viz_commands(commands)
    add_explain_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if extra:  # a command may read its own option words (finetune's --key=value); else --section.key=value
            args.overrides = getattr(args, "split_overrides", split_overrides)(extra)
        args.run(args)
    except Interrupted as error:  # a clean stop on Ctrl-C / SIGTERM: the message says what was kept
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process stops; one says so
            print(f"tformer {args.command}: {error}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print(f"tformer {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, OSError) as error:  # what a user can cause: bad values, files, folders, a full disk
        print(f"tformer {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


def one_line(error: BaseException) -> str:
    """The error's message on one line (an OSError without a message of ours says its errno text and file)."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())

