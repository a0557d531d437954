"""`tformer generate` and `tformer translate`: load a model folder and its tokenizer, decode, print the text.

Greedy decoding and sampling of one sequence stream their text as the tokens are chosen (`TextStreamer`);
beam search and several sequences print each finished sequence, ranked, with its score.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tformer.cli.common import load_model_and_tokenizer, one_line_warnings

if TYPE_CHECKING:  # the command functions import these when they run (`tformer --help` stays light)
    from tformer.models import TransformerModel
    from tformer.tokenization import Tokenizer

DEFAULT_NEW_TOKENS = 50
SOURCE_READERS = ("encoder-decoder", "rnn")  # the families that encode a source and decode from a start token
EARLY_STOPPING = {"true": True, "false": False, "never": "never"}


def generate(*args: Any, **kwargs: Any) -> Any:
    """`tformer.generate`, imported when a command runs."""
    from tformer.generation import generate as library_generate

    return library_generate(*args, **kwargs)


def encode_input(tokenizer: Tokenizer, model: TransformerModel, text: str, what: str,
                 separator: str | None = None) -> list[int]:
    """Token ids of the prompt or source (with a T-D model: source [SEP]); an empty or too long text is an error."""
    from tformer.models.base import check_encoded_text

    if not text.strip():
        raise ValueError(f"the {what} is empty: give some text to start from")
    if separator is None:
        ids = tokenizer.encode(text)
    else:
        sep = tokenizer.token_to_id(separator)
        if sep is None:
            raise ValueError(f"the model reads source {separator} target, but its tokenizer has no {separator} token; "
                             "save the tokenizer it was trained with into the model folder")
        ids = [*tokenizer.encode(text, add_special_tokens=False), sep]
    check_encoded_text(ids, model.config, what, text)
    return ids


def _read_text(text: str) -> str:
    """The text argument; `-` reads standard input (its trailing newlines dropped)."""
    return sys.stdin.read().rstrip("\n") if text == "-" else text


def _generate_command(args: argparse.Namespace) -> None:
    _check_flags(args)
    model, tokenizer = _load(args, "generate")
    family = model.config.family
    if family == "bert":
        raise ValueError(f"{args.model} holds a bert model, an encoder that fills in masked tokens but does not "
                         "continue text; generate needs a gpt model")
    if family in SOURCE_READERS:
        raise ValueError(f"{args.model} holds an {family} model, which reads a source and writes a new "
                         "text: use `tformer translate` for it")
    ids = encode_input(tokenizer, model, _read_text(args.prompt), "prompt")
    room = model.config.max_positions - len(ids) + 1  # the last new token is never read back
    _decode_and_print(model, tokenizer, ids, args, _max_new_tokens(args, model, min(DEFAULT_NEW_TOKENS, room)),
                      prompt_len=0)


def _translate_command(args: argparse.Namespace) -> None:
    from tformer.interop.generation_config import source_separator

    _check_flags(args)
    model, tokenizer = _load(args, "translate")
    family, separator = model.config.family, source_separator(model)
    if family not in SOURCE_READERS and separator is None:
        hint = "; use `tformer generate` for it" if family == "gpt" else ""
        raise ValueError(f"{args.model} holds a {family} model, but translate needs an encoder-decoder "
                         f"(marian, transformer-*, rnnsearch-*) or a decoder-only seq2seq (T-D) model{hint}")
    ids = encode_input(tokenizer, model, _read_text(args.sentence), "sentence", separator)
    room = model.config.max_positions - (len(ids) - 1 if separator is not None else 0)
    max_new_tokens = _max_new_tokens(args, model, min(2 * len(ids) + 10, room))
    _decode_and_print(model, tokenizer, ids, args, max_new_tokens, prompt_len=len(ids) if separator else 1)


def _load(args: argparse.Namespace, command: str) -> tuple[TransformerModel, Tokenizer]:
    import torch

    device = _device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with one_line_warnings(command):  # e.g. folder settings tformer does not apply
        model, tokenizer = load_model_and_tokenizer(args.model, command)
    return model.to(device), tokenizer


def _device(name: str | None) -> Any:
    import torch

    from tformer.training.distributed import pick_device

    device = pick_device("auto" if name is None else name, option="--device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device={name} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                         f"use --device=cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or --device=cpu")
    return device


def _max_new_tokens(args: argparse.Namespace, model: TransformerModel, default: int) -> int | None:
    """--max-new-tokens, else None where the folder's generation config sets a length, else `default`."""
    from tformer.generation.settings import folder_settings

    if args.max_new_tokens is not None:
        return args.max_new_tokens
    folder = folder_settings(model)
    return None if folder.get("max_new_tokens") is not None or folder.get("max_length") is not None else default


def _check_flags(args: argparse.Namespace) -> None:
    """One line for a flag value that cannot work, before the model is loaded."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads={args.threads} must be at least 1 (torch CPU threads)")
    if args.repetition_penalty is not None and not args.repetition_penalty > 0:
        raise ValueError(f"--repetition-penalty={args.repetition_penalty} must be > 0 (1.0 is no penalty, above 1 "
                         "makes repeated tokens less likely)")
    for flag, value in (("--no-repeat-ngram-size", args.no_repeat_ngram_size),
                        ("--min-new-tokens", args.min_new_tokens), ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < (1 if flag == "--max-new-tokens" else 0):
            raise ValueError(f"{flag}={value} must be {'at least 1' if flag == '--max-new-tokens' else '>= 0'}")
    if args.min_new_tokens is not None and args.max_new_tokens is not None and args.min_new_tokens > \
            args.max_new_tokens:
        raise ValueError(f"--min-new-tokens={args.min_new_tokens} is more than --max-new-tokens={args.max_new_tokens}; "
                         "lower one or raise the other")
    for text in args.stop or []:
        if not text:
            raise ValueError("--stop='' is empty: give the text that ends a sequence, e.g. --stop=$'\\n\\n'")
    for flag, token in (("--forced-bos-token-id", args.forced_bos_token_id),
                        ("--forced-eos-token-id", args.forced_eos_token_id)):
        if token is not None and token < 0:
            raise ValueError(f"{flag}={token} must be a token id >= 0")


def _decode_and_print(model: TransformerModel, tokenizer: Tokenizer, ids: list[int], args: argparse.Namespace,
                      max_new_tokens: int | None, prompt_len: int) -> None:
    """Stream one greedy or sampled sequence; otherwise print every finished sequence, ranked, with scores.

    prompt_len: how many leading tokens of each sequence are not printed (0: the prompt is shown).
    """
    import torch

    from tformer.generation import GenerateOutput, TextStreamer
    from tformer.generation.settings import resolve

    input_ids = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    given: dict[str, Any] = dict(
        num_beams=args.num_beams, num_return_sequences=args.num_return_sequences,
        do_sample=True if args.do_sample else None, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        length_penalty=args.length_penalty, early_stopping=EARLY_STOPPING.get(args.early_stopping),
        use_cache=False if args.no_cache else None, seed=args.seed, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, min_new_tokens=args.min_new_tokens,
        forced_bos_token_id=args.forced_bos_token_id, forced_eos_token_id=args.forced_eos_token_id,
        stop_strings=args.stop)
    settings = resolve(given, model)
    options = dict(given, max_new_tokens=max_new_tokens, tokenizer=tokenizer, compile=getattr(args, "compile", False))
    with one_line_warnings(args.command):
        if settings["num_beams"] == 1 and settings["num_return_sequences"] == 1:
            streamer = TextStreamer(tokenizer, prompt=ids if prompt_len == 0 else ())
            generate(model, input_ids, streamer=streamer, **options)
            return
        out = generate(model, input_ids, return_scores=True, **options)
    assert isinstance(out, GenerateOutput)
    texts = tokenizer.decode_batch(out.sequences[:, prompt_len:].cpu())
    if len(texts) == 1:
        print(texts[0])
        return
    # Beam search: the length-normalised score it ranks by; sampling: the log-probability of the new tokens.
    label, scores = ("score", out.scores) if settings["num_beams"] > 1 else ("log p", out.scores.sum(dim=1))
    for rank, (text, score) in enumerate(zip(texts, scores.tolist(), strict=True), start=1):
        print(f"{rank}. {text}  ({label} {score:.3f})")


def _add_decoding_flags(parser: argparse.ArgumentParser, default_new_tokens: str) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="model folder: config.json, model.safetensors and tokenizer.json")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help=f"most tokens to add ({default_new_tokens}; "
                        "a max_new_tokens or max_length in the folder's generation_config.json comes first)")
    parser.add_argument("--do-sample", action="store_true", help="sample instead of taking the most probable token")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="sampling: divide the logits by T (default: 1.0; 0 is greedy)")
    parser.add_argument("--top-k", type=int, metavar="K", help="sampling: keep the K most probable tokens")
    parser.add_argument("--top-p", type=float, metavar="P", help="sampling: keep the smallest set of tokens "
                        "whose probability reaches P (nucleus)")
    parser.add_argument("--seed", type=int, metavar="S", help="sampling: the same seed gives the same text")
    parser.add_argument("--num-beams", type=int, metavar="N", help="beam search with N beams (default: 1)")
    parser.add_argument("--num-return-sequences", type=int, metavar="N",
                        help="print the N best beams (N <= --num-beams), or N samples, each with its score")
    parser.add_argument("--length-penalty", type=float, metavar="A",
                        help="beam search ranks by sum(log p) / length ** A (default: 1.0)")
    parser.add_argument("--early-stopping", choices=list(EARLY_STOPPING),
                        help="beam search: stop at num-beams finished hypotheses (true), when none can improve "
                        "(false, the default), or never before the canonical bound (never)")
    parser.add_argument("--repetition-penalty", type=float, metavar="P",
                        help="make tokens already in the text less likely (P > 1) or more (P < 1); default 1.0: off")
    parser.add_argument("--no-repeat-ngram-size", type=int, metavar="N", help="never repeat an N-gram (0: off)")
    parser.add_argument("--min-new-tokens", type=int, metavar="N", help="no end token before N new tokens")
    parser.add_argument("--stop", action="append", metavar="TEXT",
                        help="end the text once it ends with TEXT (repeatable), e.g. --stop=$'\\n\\n'")
    parser.add_argument("--forced-bos-token-id", type=int, metavar="ID",
                        help="the first token the decoder writes (after a one-token decoder prompt)")
    parser.add_argument("--forced-eos-token-id", type=int, metavar="ID",
                        help="the token written at the last step (max-new-tokens)")
    parser.add_argument("--no-cache", action="store_true", help="re-read the whole sequence every step (no KV cache)")
    parser.add_argument("--device", metavar="NAME", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")


def add_generation_commands(commands: Any) -> None:  # argparse's _SubParsersAction has no public type
    """Register `generate` and `translate` on the `tformer` parser's subcommands."""
    gen = commands.add_parser("generate", help="continue a prompt with a GPT model folder, streaming the text")
    gen.add_argument("prompt", help="the text to continue; - reads it from standard input")
    _add_decoding_flags(gen, f"default: {DEFAULT_NEW_TOKENS}, fewer if the position table ends sooner")
    gen.add_argument("--compile", action="store_true",
                     help="greedy decoding and sampling: run the one-token step through torch.compile (the first "
                     "call compiles, about a minute for gpt2 on a CPU; worth it for long outputs)")
    gen.set_defaults(run=_generate_command)

    tra = commands.add_parser("translate", help="translate a sentence with an encoder-decoder or T-D model folder")
    tra.add_argument("sentence", help="the source sentence; - reads it from standard input")
    _add_decoding_flags(tra, "default: twice the source's tokens + 10, at most the position table")
    tra.set_defaults(run=_translate_command)
