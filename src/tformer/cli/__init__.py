"""The `tformer` command: parses arguments, calls the library, prints one line per error.

One module per command group registers its subcommands here (models, demo, prepare, generate, train, finetune,
evaluate-lm, viz, explain); common.py holds what several of them share. None imports torch before its command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from tformer import __version__
from tformer.cli.common import split_overrides
from tformer.cli.demo import add_demo_command
from tformer.cli.evaluate_lm import add_evaluate_lm_command
from tformer.cli.explain import add_explain_commands
from tformer.cli.finetune import add_finetune_commands
from tformer.cli.generate import add_generation_commands
from tformer.cli.models import add_models_command
from tformer.cli.prepare import add_prepare_command
from tformer.cli.train import add_training_commands
from tformer.cli.viz import add_viz_commands
from tformer.interrupt import EXIT_CODE as INTERRUPTED
from tformer.interrupt import Interrupted


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tformer", description="The Transformer family on PyTorch.")
    parser.add_argument("--version", action="version", version=f"tformer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    add_models_command(commands)
    add_demo_command(commands)
    add_prepare_command(commands)
    add_generation_commands(commands)
    add_training_commands(commands)
    add_finetune_commands(commands)
    add_evaluate_lm_command(commands)
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

