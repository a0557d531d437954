"""`tformer evaluate-lm MODEL TEXT... [--max-length N] [--stride N] [--batch-size N] [--mlm] [--json]`: the
perplexity of a language model on text files (sliding windows, as transformers' perplexity guide), its bits per
byte and per character; `--mlm`: the pseudo-perplexity of a masked LM. The library is `tformer.evaluate_lm`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from tformer.cli.common import one_line_warnings

if TYPE_CHECKING:  # imported when the command runs (`tformer --help` stays light)
    from tformer.evaluation.lm import LMEvaluation


def _evaluate_lm_command(args: argparse.Namespace) -> None:
    from tformer.evaluation.lm import evaluate_lm

    with one_line_warnings("evaluate-lm"):  # e.g. folder settings tformer does not apply
        result = evaluate_lm(args.model, args.texts, max_length=args.max_length, stride=args.stride,
                             batch_size=args.batch_size, mlm=args.mlm, device=args.device, threads=args.threads,
                             data=args.data, strip_gutenberg=args.strip_gutenberg, val_fraction=args.val_fraction)
    if args.json:
        print(json.dumps({**result.to_dict(), "model": args.model, "inputs": args.texts}))
    else:
        print(report(result))


def report(result: LMEvaluation) -> str:
    """Two lines: the figures, then what was scored (the bytes and characters of the scored tokens, the context-only
    ones left out) and how fast."""
    pseudo = "pseudo-" if result.mlm else ""
    figures = (f"{pseudo}loss {result.loss:.4f} nats/token  {pseudo}perplexity {result.perplexity:.4g}  "
               f"bits/byte {result.bits_per_byte:.4f}  bits/char {result.bits_per_char:.4f}")
    if result.mlm:
        how = f"each masked in turn, {result.windows:,} blocks of up to {result.max_length - 2} in [CLS] ... [SEP]"
    else:
        how = f"{result.windows:,} windows, max-length {result.max_length}, stride {result.stride}"
    scored = (f"{result.tokens:,} tokens scored ({how}): {result.bytes:,} of the text's {result.text_bytes:,} bytes, "
              f"{result.chars:,} of its {result.text_chars:,} characters; {result.tokens_per_s:,.0f} tokens/s")
    return f"{figures}\n{scored}"


def add_evaluate_lm_command(commands: Any) -> None:  # argparse's _SubParsersAction has no public type
    """Register `evaluate-lm` on the `tformer` parser's subcommands."""
    lm = commands.add_parser("evaluate-lm", help="perplexity and bits per byte of a language model on text files")
    lm.add_argument("model", metavar="MODEL", help="model folder (config.json, weights, tokenizer.json), a Hub name, "
                    "or a `tformer train` run folder (its final/ model)")
    lm.add_argument("texts", nargs="+", metavar="TEXT", help="text files, plain or .gz, joined in this order with an "
                    "empty line between two; a relative name not found here is looked for under the data folder "
                    "(--data), e.g. wikitext-2/test.txt.gz or 'gutenberg/*.txt.gz'")
    lm.add_argument("--max-length", type=int, metavar="N",
                    help="tokens per window (default: the model's position table, max_positions)")
    lm.add_argument("--stride", type=int, metavar="N", help="windows begin every N tokens; each scores the tokens "
                    "not scored before, the rest is context (default: max-length / 2; max-length: non-overlapping)")
    lm.add_argument("--batch-size", type=int, default=8, metavar="N",
                    help="windows (--mlm: masked copies) per forward (default: 8)")
    lm.add_argument("--mlm", action="store_true", help="a masked LM (bert): the pseudo-perplexity, each token "
                    "masked in turn (Salazar et al. 2020), blocks of --max-length")
    lm.add_argument("--json", action="store_true", help="print one JSON line (loss, perplexity, bits_per_byte, "
                    "bits_per_char, tokens, bytes, chars, text_bytes, text_chars, tokens_per_s, ...)")
    lm.add_argument("--val-fraction", type=float, metavar="F", help="score only the last F of the text's "
                    "characters, the held-out split of `tformer prepare` and the recipes (e.g. 0.1)")
    lm.add_argument("--strip-gutenberg", action=argparse.BooleanOptionalAction, default=True,
                    help="keep only the text between Project Gutenberg's START and END lines (default: on)")
    lm.add_argument("--data", metavar="DIR", help="the data folder (default: $TFORMER_DATA, else ../shared/data)")
    lm.add_argument("--device", metavar="NAME", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    lm.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    lm.set_defaults(run=_evaluate_lm_command)
