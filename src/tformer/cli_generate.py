"""`tformer generate` and `tformer translate`: load a model folder and its tokenizer, decode, print the text.

Greedy decoding and sampling of one sequence stream their text as the tokens are chosen (`TextStreamer`);
beam search and several sequences print each finished sequence, ranked, with its score.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-heavy: imported in the functions that run, so `tformer --help` stays fast
    from tformer.models import TransformerModel
    from tformer.tokenization import Tokenizer

DEFAULT_NEW_TOKENS = 50
EARLY_STOPPING = {"true": True, "false": False, "never": "never"}


def load_model_and_tokenizer(folder: str, command: str) -> tuple[TransformerModel, Tokenizer]:
    """The model of a Hugging Face style folder (config.json, weights) and the tokenizer.json beside it; a Hub
    name ("gpt2") is found in the Hugging Face cache."""
    from tformer.interop.huggingface import from_pretrained
    from tformer.interop.model_folder import find_model_folder
    from tformer.tokenization import Tokenizer

    path = find_model_folder(folder)  # a name resolved, a file / run folder / missing config.json refused
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{str(tokenizer_file)!r} is missing: {command} needs the tokenizer the model was "
                                "trained with in its folder (write it with Tokenizer.save(folder))")
    model = from_pretrained(path)
    return model, Tokenizer.from_file(tokenizer_file)


def encode_input(tokenizer: Tokenizer, model: TransformerModel, text: str, what: str) -> list[int]:
    """Token ids of the prompt or source; an empty text, or one longer than the position table, is an error."""
    if not text.strip():
        raise ValueError(f"the {what} is empty: give some text to start from")
    from tformer.models.base import check_encoded_text

    ids = tokenizer.encode(text)
    check_encoded_text(ids, model.config, what, text)
    return ids


def _generate_command(args: argparse.Namespace) -> None:
    model, tokenizer = load_model_and_tokenizer(args.model, "generate")
    family = model.config.family
    if family == "bert":
        raise ValueError(f"{args.model} holds a bert model, an encoder that fills in masked tokens but does not "
                         "continue text; generate needs a gpt model")
    if family == "encoder-decoder":
        raise ValueError(f"{args.model} holds an encoder-decoder model, which reads a source and writes a new "
                         "text: use `tformer translate` for it")
    ids = encode_input(tokenizer, model, args.prompt, "prompt")
    room = model.config.max_positions - len(ids) + 1  # the last new token is never read back
    max_new_tokens = min(DEFAULT_NEW_TOKENS, room) if args.max_new_tokens is None else args.max_new_tokens
    _decode_and_print(model, tokenizer, ids, args, max_new_tokens, prompt_shown=True)


def _translate_command(args: argparse.Namespace) -> None:
    model, tokenizer = load_model_and_tokenizer(args.model, "translate")
    family = model.config.family
    if family != "encoder-decoder":
        hint = "; use `tformer generate` for it" if family == "gpt" else ""
        raise ValueError(f"{args.model} holds a {family} model, but translate needs an encoder-decoder "
                         f"(marian, transformer-*){hint}")
    ids = encode_input(tokenizer, model, args.sentence, "sentence")
    max_new_tokens = (min(2 * len(ids) + 10, model.config.max_positions) if args.max_new_tokens is None
                      else args.max_new_tokens)
    _decode_and_print(model, tokenizer, ids, args, max_new_tokens, prompt_shown=False)


def _decode_and_print(model: TransformerModel, tokenizer: Tokenizer, ids: list[int], args: argparse.Namespace,
                      max_new_tokens: int, prompt_shown: bool) -> None:
    """Stream one greedy or sampled sequence; otherwise print every finished sequence, ranked, with scores."""
    import torch

    from tformer.generation import GenerateOutput, TextStreamer, generate

    input_ids = torch.tensor([ids], dtype=torch.long)
    options: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, num_beams=args.num_beams, num_return_sequences=args.num_return_sequences,
        do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        length_penalty=args.length_penalty, early_stopping=EARLY_STOPPING[args.early_stopping],
        use_cache=not args.no_cache, seed=args.seed, compile=getattr(args, "compile", False))
    if args.num_beams == 1 and args.num_return_sequences == 1:
        streamer = TextStreamer(tokenizer, prompt=ids if prompt_shown else ())
        generate(model, input_ids, streamer=streamer, **options)
        return
    out = generate(model, input_ids, return_scores=True, **options)
    assert isinstance(out, GenerateOutput)
    texts = tokenizer.decode_batch(out.sequences)
    if len(texts) == 1:
        print(texts[0])
        return
    # Beam search: the length-normalised score it ranks by; sampling: the log-probability of the new tokens.
    label, scores = ("score", out.scores) if args.num_beams > 1 else ("log p", out.scores.sum(dim=1))
    for rank, (text, score) in enumerate(zip(texts, scores.tolist(), strict=True), start=1):
        print(f"{rank}. {text}  ({label} {score:.3f})")


def _add_decoding_flags(parser: argparse.ArgumentParser, default_new_tokens: str) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="model folder: config.json, model.safetensors and tokenizer.json")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help=f"most tokens to add ({default_new_tokens})")
    parser.add_argument("--do-sample", action="store_true", help="sample instead of taking the most probable token")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="sampling: divide the logits by T (default: 1.0; 0 is greedy)")
    parser.add_argument("--top-k", type=int, metavar="K", help="sampling: keep the K most probable tokens")
    parser.add_argument("--top-p", type=float, metavar="P", help="sampling: keep the smallest set of tokens "
                        "whose probability reaches P (nucleus)")
    parser.add_argument("--seed", type=int, metavar="S", help="sampling: the same seed gives the same text")
    parser.add_argument("--num-beams", type=int, default=1, metavar="N", help="beam search with N beams (default: 1)")
    parser.add_argument("--num-return-sequences", type=int, default=1, metavar="N",
                        help="print the N best beams (N <= --num-beams), or N samples, each with its score")
    parser.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                        help="beam search ranks by sum(log p) / length ** A (default: 1.0)")
    parser.add_argument("--early-stopping", choices=list(EARLY_STOPPING), default="false",
                        help="beam search: stop at num-beams finished hypotheses (true), when none can improve "
                        "(false, the default), or never before the canonical bound (never)")
    parser.add_argument("--no-cache", action="store_true", help="re-read the whole sequence every step (no KV cache)")


def add_generation_commands(commands: Any) -> None:  # argparse's _SubParsersAction has no public type
    """Register `generate` and `translate` on the `tformer` parser's subcommands."""
    gen = commands.add_parser("generate", help="continue a prompt with a GPT model folder, streaming the text")
    gen.add_argument("prompt", help="the text to continue")
    _add_decoding_flags(gen, f"default: {DEFAULT_NEW_TOKENS}, fewer if the position table ends sooner")
    gen.add_argument("--compile", action="store_true",
                     help="greedy decoding and sampling: run the one-token step through torch.compile (the first "
                     "call compiles, about a minute for gpt2 on a CPU; worth it for long outputs)")
    gen.set_defaults(run=_generate_command)

    tra = commands.add_parser("translate", help="translate a sentence with an encoder-decoder model folder")
    tra.add_argument("sentence", help="the source sentence")
    _add_decoding_flags(tra, "default: twice the source's tokens + 10, at most the position table")
    tra.set_defaults(run=_translate_command)
