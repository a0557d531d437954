"""`generate`: the front door to greedy decoding, sampling and beam search, with Hugging Face's arguments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from tformer.generation.beam import beam_search
from tformer.generation.logits import check_sampling_args, filter_logits
from tformer.generation.sampling import greedy_or_sample
from tformer.generation.state import DecoderState, can_generate, is_encoder_decoder
from tformer.generation.static import StaticDecoderState, can_use_static_cache
from tformer.generation.streamer import Streamer


@dataclass
class GenerateOutput:
    """Generated ids and their scores.

    sequences: (batch * num_return_sequences, length): the prompt and the new tokens (decoder-only), or the
    decoder's sequence from its start token (encoder-decoder). scores: for beam search one length-normalised
    score per sequence (batch * num_return_sequences,), as `transformers`' sequences_scores; for greedy decoding
    and sampling the log-probability of each new token (batch * num_return_sequences, new length), 0 after the end.
    """

    sequences: Tensor
    scores: Tensor


@torch.no_grad()
def generate(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int,
    num_beams: int = 1, num_return_sequences: int = 1, do_sample: bool = False, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, length_penalty: float = 1.0,
    early_stopping: bool | str = False, eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None, use_cache: bool = True, seed: int | None = None, return_scores: bool = False,
    streamer: Streamer | None = None, cache_implementation: str | None = None, compile: bool | None = None,
) -> Tensor | GenerateOutput:
    """Continue input_ids (batch, length) by up to max_new_tokens: greedy decoding, sampling, beam search / N-best.

    The arguments mean what they mean in `transformers`' `generate`, and the same model gives the same tokens:
    * num_beams > 1: beam search (with do_sample: beam sampling), num_return_sequences best hypotheses per input,
      scored sum(log p) / new_length ** length_penalty; early_stopping True, False or "never".
    * do_sample: sample from softmax(logits / temperature) restricted to the top_k tokens and the top_p nucleus
      (`filter_logits`); temperature=0 is greedy decoding; top_k None or 0 and top_p None or 1 keep all tokens.
    * Decoder-only models continue the prompt; batched prompts of different lengths are left-padded, with
      attention_mask (batch, length) 1 on tokens and 0 on padding. An encoder-decoder reads input_ids as the
      source and decodes from config.decoder_start_token_id (or config.bos_token_id).
    * eos_token_id (one id or several): a sequence ends when it produces one. None takes model.config.eos_token_id;
      [] means no end token (every sequence gets max_new_tokens). pad_token_id fills finished sequences; None
      takes model.config.pad_token_id, else the first end token.
    * use_cache: keep keys and values of past positions (KV cache) instead of re-reading the whole sequence.
    * seed: sampling draws from torch.Generator().manual_seed(seed), else from torch's global generator.
    * streamer (greedy decoding and sampling only): `streamer.put(tokens)` with each step's new tokens (rows,) as
      they are chosen, then `streamer.end()`, e.g. `TextStreamer(tokenizer)` to print text as it comes.
    * cache_implementation: "static" (a KV cache pre-allocated for the whole output, fixed shapes: the fast path,
      decoder-only greedy decoding and sampling only), "dynamic" (grows each step; beam search, encoder-decoders),
      or None: "static" wherever it applies, else "dynamic".
    * compile: run the static path's one-token decoding step through torch.compile (compiled once per model,
      rows and cache size, about a minute for gpt2 on a 2-core CPU; then each token is faster). None: False.
      Where compiling fails (no C++ compiler), a one-line warning and the same results without it.
    Returns token ids (batch * num_return_sequences, length), or with return_scores a `GenerateOutput`.
    """
    if not can_generate(model):
        raise ValueError(f"{type(model).__name__} cannot generate: it needs a decoder with forward(..., cache=...) "
                         "and new_cache() (GPT or EncoderDecoder)")
    config = model.config
    _check_search_args(max_new_tokens, num_beams, num_return_sequences, do_sample, length_penalty, early_stopping)
    check_sampling_args(temperature, top_k, top_p)
    if streamer is not None and num_beams > 1:
        raise ValueError(f"a streamer gets tokens as they are chosen, which beam search (num_beams={num_beams}) "
                         "does not do: use num_beams=1, or read the sequences when generate returns")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} must be an integer or None")
    _check_inputs(input_ids, attention_mask, config.vocab_size)
    static = _use_static_cache(model, cache_implementation, num_beams, use_cache)
    eos = _end_tokens(eos_token_id if eos_token_id is not None else config.eos_token_id, config.vocab_size)
    pad = pad_token_id if pad_token_id is not None else config.pad_token_id
    pad = pad if pad is not None else (eos[0] if eos else None)
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.vocab_size):
        raise ValueError(f"pad_token_id={pad!r} is outside the vocabulary [0, {config.vocab_size})")
    start = None
    if is_encoder_decoder(model):
        start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
        if start is None:
            raise ValueError("an encoder-decoder needs config.decoder_start_token_id (or bos_token_id) to decode")
    _check_length(input_ids.size(1) if start is None else 1, max_new_tokens, config.max_positions)

    sampling = do_sample and temperature > 0
    generator = None
    if sampling and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    end_tokens = torch.tensor(eos, dtype=torch.long, device=input_ids.device)
    copies = num_beams if num_beams > 1 else num_return_sequences
    state: DecoderState | StaticDecoderState
    if static:
        state = StaticDecoderState(model, input_ids, attention_mask, copies, max_new_tokens, compile=bool(compile))
    else:
        state = DecoderState(model, input_ids, attention_mask, copies, use_cache, decoder_start_token_id=start)
    if num_beams > 1:
        # Beam sampling keeps one token more than there are end tokens, as transformers does.
        warp = partial(filter_logits, temperature=temperature, top_k=top_k, top_p=top_p,
                       min_tokens_to_keep=max(len(eos), 1) + 1) if sampling else None
        sequences, scores = beam_search(
            state, batch_size=input_ids.size(0), num_beams=num_beams, max_new_tokens=max_new_tokens,
            eos=end_tokens, fill=pad if pad is not None else -1, length_penalty=length_penalty,
            early_stopping=early_stopping, num_return_sequences=num_return_sequences, warp=warp, generator=generator)
    else:
        warp = partial(filter_logits, temperature=temperature, top_k=top_k, top_p=top_p) if sampling else None
        sequences, scores = greedy_or_sample(state, max_new_tokens=max_new_tokens, eos=end_tokens, pad=pad,
                                             warp=warp, generator=generator, streamer=streamer,
                                             with_scores=return_scores)
    return GenerateOutput(sequences, scores) if return_scores else sequences


def _check_search_args(max_new_tokens: int, num_beams: int, num_return_sequences: int, do_sample: bool,
                       length_penalty: float, early_stopping: bool | str) -> None:
    for name, value in (("max_new_tokens", max_new_tokens), ("num_beams", num_beams),
                        ("num_return_sequences", num_return_sequences)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if num_beams > 1 and num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences={num_return_sequences} must be <= num_beams={num_beams}: "
                         "beam search keeps num_beams hypotheses")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        raise ValueError(f"num_return_sequences={num_return_sequences} needs num_beams >= {num_return_sequences} "
                         "or do_sample=True: greedy decoding has one answer")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, int | float):
        raise ValueError(f"length_penalty={length_penalty!r} must be a number")
    if early_stopping not in (True, False, "never") or not isinstance(early_stopping, bool | str):
        raise ValueError(f"early_stopping={early_stopping!r} must be True, False or 'never'")


def _use_static_cache(model: nn.Module, cache_implementation: str | None, num_beams: int, use_cache: bool) -> bool:
    if cache_implementation not in (None, "static", "dynamic"):
        raise ValueError(f"cache_implementation={cache_implementation!r} must be 'static', 'dynamic' or None")
    applies = use_cache and num_beams == 1 and can_use_static_cache(model)
    if cache_implementation == "static" and not applies:
        raise ValueError("cache_implementation='static' serves decoder-only greedy decoding and sampling with "
                         f"use_cache=True (got {type(model).__name__}, num_beams={num_beams}, use_cache={use_cache}); "
                         "use cache_implementation='dynamic' or None")
    return applies and cache_implementation != "dynamic"


def _check_inputs(input_ids: Tensor, attention_mask: Tensor | None, vocab_size: int) -> None:
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(f"input_ids must have shape (batch, length) with length >= 1, got {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    low, high = torch.aminmax(input_ids)  # once, here: the decoding steps feed back ids the model chose
    if high >= vocab_size or low < 0:
        bad = int(high) if high >= vocab_size else int(low)
        raise ValueError(f"token id {bad} in input_ids is outside the vocabulary [0, {vocab_size}); use the "
                         "tokenizer that belongs to this model or enlarge vocab_size")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                         f"{tuple(input_ids.shape)}; 1 marks a token, 0 padding")


def _end_tokens(eos_token_id: int | Sequence[int] | None, vocab_size: int) -> list[int]:
    ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise ValueError(f"eos_token_id {token!r} is outside the vocabulary [0, {vocab_size})")
    return ids


def _check_length(prompt_len: int, max_new_tokens: int, max_positions: int) -> None:
    # The last new token is never fed back, so the model reads prompt_len + max_new_tokens - 1 positions.
    if prompt_len + max_new_tokens - 1 > max_positions:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds the position table: the model "
            f"would read {prompt_len + max_new_tokens - 1} positions but max_positions={max_positions}; use "
            f"max_new_tokens <= {max(max_positions - prompt_len + 1, 0)} or a shorter prompt")
