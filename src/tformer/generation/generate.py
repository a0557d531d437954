"""`generate`: the front door to greedy decoding, sampling and beam search, with Hugging Face's arguments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from tformer.accel import during_call
from tformer.generation.beam import beam_search
from tformer.generation.logits import check_sampling_args, filter_logits
from tformer.generation.processors import LogitsControls, Processor, build_processors, check_controls
from tformer.generation.sampling import greedy_or_sample
from tformer.generation.settings import resolve, resolve_max_new_tokens, special_token, warn_unused
from tformer.generation.state import DecoderState, can_generate, is_encoder_decoder
from tformer.generation.static import StaticDecoderState, can_use_static_cache, static_cache_by_default
from tformer.generation.stop_strings import Decodes, StopStrings, check_stop_strings
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
@during_call  # accel's CPU paths (few-rows products, the compiled step's backend) for this call; TFORMER_ACCEL=0: off
def generate(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int | None = None,
    num_beams: int | None = None, num_return_sequences: int | None = None, do_sample: bool | None = None,
    temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
    length_penalty: float | None = None, early_stopping: bool | str | None = None,
    eos_token_id: int | Sequence[int] | None = None, pad_token_id: int | None = None,
    repetition_penalty: float | None = None, no_repeat_ngram_size: int | None = None,
    min_new_tokens: int | None = None, min_length: int | None = None, forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | Sequence[int] | None = None, bad_words_ids: Sequence[Sequence[int]] | None = None,
    stop_strings: str | Sequence[str] | None = None, tokenizer: Decodes | None = None,
    use_cache: bool | None = None, seed: int | None = None, return_scores: bool = False,
    streamer: Streamer | None = None, cache_implementation: str | None = None, compile: bool | None = None,
) -> Tensor | GenerateOutput:
    """Continue input_ids (batch, length) by up to max_new_tokens: greedy decoding, sampling, beam search / N-best.

    The arguments mean what they mean in `transformers`' `generate`, and the same model gives the same tokens.
    An argument left None takes the model folder's generation config (generation_config.json, or the legacy
    fields of config.json: `model.generation_config`), else the default named here; explicit arguments win.
    * max_new_tokens: required unless the generation config has max_new_tokens or max_length.
    * num_beams > 1 (default 1): beam search (with do_sample: beam sampling), num_return_sequences (default 1)
      best hypotheses per input, scored sum(log p) / new_length ** length_penalty (default 1.0); early_stopping
      True, False (default) or "never".
    * do_sample: sample from softmax(logits / temperature) restricted to the top_k tokens and the top_p nucleus
      (`filter_logits`); temperature=0 is greedy decoding; top_k None or 0 and top_p None or 1 keep all tokens.
    * Logits processors, in transformers' order, before the sampling filters (beam search: on the
      log-probabilities): repetition_penalty (> 0; 1.0 is off) divides the positive and multiplies the negative
      scores of every token already in the sequence (the prompt too, not its padding); no_repeat_ngram_size N
      bans a token that would repeat an N-gram; bad_words_ids bans token sequences; min_new_tokens / min_length
      ban the end tokens until that many new tokens / that total length; forced_bos_token_id is the only
      choice after a one-token decoder prompt; forced_eos_token_id (one id or several; [] switches off the
      folder's) the only choice at the last step (max_new_tokens).
    * stop_strings (with tokenizer): a sequence is finished once its text ends in one of them (the last token
      may run past it, as in transformers); the tokens that made the string stay in the output.
    * Decoder-only models continue the prompt; batched prompts of different lengths are left-padded, with
      attention_mask (batch, length) 1 on tokens and 0 on padding. An encoder-decoder reads input_ids as the
      source and decodes from decoder_start_token_id (or bos_token_id).
    * eos_token_id (one id or several): a sequence ends when it produces one. None takes the generation config's
      or model.config's; [] means no end token. pad_token_id fills finished sequences; None takes the config's,
      else the first end token.
    * use_cache (default True): keep keys and values of past positions (KV cache).
    * seed: sampling draws from torch.Generator().manual_seed(seed), else from torch's global generator.
      temperature, top_k, top_p or seed given without sampling, or length_penalty without beams: a warning.
    * streamer (greedy decoding and sampling only): `streamer.put(tokens)` with each step's new tokens (rows,) as
      they are chosen, then `streamer.end()`, e.g. `TextStreamer(tokenizer)` to print text as it comes.
    * cache_implementation: "static" (a pre-allocated KV cache, fixed shapes: the fast path), "dynamic" (grows
      each step), or None: "static" for greedy decoding and sampling, "dynamic" for beam search.
    * compile: run the static path's one-token decoding step through torch.compile (compiled once per model,
      rows and cache size). None: False. Where compiling fails, a one-line warning and the same results.
    Returns token ids (batch * num_return_sequences, length), or with return_scores a `GenerateOutput`.
    """
    if not can_generate(model):
        raise ValueError(f"{type(model).__name__} cannot generate: it needs a decoder with forward(..., cache=...) "
                         "and new_cache() (GPT or EncoderDecoder)")
    explicit = dict(num_beams=num_beams, num_return_sequences=num_return_sequences, do_sample=do_sample,
                    temperature=temperature, top_k=top_k, top_p=top_p, length_penalty=length_penalty,
                    early_stopping=early_stopping, use_cache=use_cache, repetition_penalty=repetition_penalty,
                    no_repeat_ngram_size=no_repeat_ngram_size, min_new_tokens=min_new_tokens, min_length=min_length,
                    forced_bos_token_id=forced_bos_token_id, forced_eos_token_id=forced_eos_token_id,
                    bad_words_ids=bad_words_ids, stop_strings=stop_strings, seed=seed)
    plan = _plan(model, input_ids, attention_mask, explicit, max_new_tokens, eos_token_id, pad_token_id, tokenizer)
    s = plan.settings
    if streamer is not None and s["num_beams"] > 1:
        raise ValueError(f"a streamer gets tokens as they are chosen, which beam search (num_beams={s['num_beams']}) "
                         "does not do: use num_beams=1, or read the sequences when generate returns")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} must be an integer or None")
    static = _use_static_cache(model, cache_implementation, s["num_beams"], s["use_cache"])
    warn_unused(explicit, plan.sampling, s["num_beams"])

    generator = None
    if plan.sampling and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    end_tokens = torch.tensor(plan.eos, dtype=torch.long, device=input_ids.device)
    num_beams, copies = s["num_beams"], s["num_beams"] if s["num_beams"] > 1 else s["num_return_sequences"]
    state: DecoderState | StaticDecoderState
    if static:
        state = StaticDecoderState(model, input_ids, attention_mask, copies, plan.max_new_tokens,
                                   compile=bool(compile), decoder_start_token_id=plan.start)
    else:
        state = DecoderState(model, input_ids, attention_mask, copies, s["use_cache"],
                             decoder_start_token_id=plan.start)
    processors = _processors(plan, attention_mask, copies)
    stop = StopStrings(plan.stop_strings, tokenizer) if plan.stop_strings and tokenizer is not None else None
    filters = dict(temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"])
    if num_beams > 1:
        # Beam sampling keeps one token more than there are end tokens, as transformers does.
        warp = partial(filter_logits, **filters, min_tokens_to_keep=max(len(plan.eos), 1) + 1) if plan.sampling \
            else None
        sequences, scores = beam_search(
            state, batch_size=input_ids.size(0), num_beams=num_beams, max_new_tokens=plan.max_new_tokens,
            eos=end_tokens, fill=plan.pad if plan.pad is not None else -1, length_penalty=s["length_penalty"],
            early_stopping=s["early_stopping"], num_return_sequences=s["num_return_sequences"], warp=warp,
            generator=generator, processors=processors, stop=stop)
    else:
        warp = partial(filter_logits, **filters) if plan.sampling else None
        sequences, scores = greedy_or_sample(state, max_new_tokens=plan.max_new_tokens, eos=end_tokens,
                                             pad=plan.pad, warp=warp, generator=generator, streamer=streamer,
                                             with_scores=return_scores, processors=processors, stop=stop)
    return GenerateOutput(sequences, scores) if return_scores else sequences


@dataclass
class _Plan:
    """The settings generate resolved and checked, and what follows from them."""

    settings: dict[str, Any]
    max_new_tokens: int
    prompt_len: int  # the decoder's length before the first new token
    eos: list[int]
    pad: int | None
    start: int | None
    sampling: bool
    controls: LogitsControls
    stop_strings: list[str]


def _plan(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, explicit: dict[str, Any],
          max_new_tokens: int | None, eos_token_id: Any, pad_token_id: Any, tokenizer: Decodes | None) -> _Plan:
    config = model.config
    s = resolve(explicit, model)
    _check_inputs(input_ids, attention_mask, config.vocab_size)
    start = None
    if is_encoder_decoder(model):
        start = special_token("decoder_start_token_id", None, model)
        start = start if start is not None else special_token("bos_token_id", None, model)
        if start is None:
            raise ValueError("an encoder-decoder needs config.decoder_start_token_id (or bos_token_id) to decode")
    prompt_len = input_ids.size(1) if start is None else 1
    max_new = resolve_max_new_tokens(max_new_tokens, model, prompt_len)
    _check_search_args(max_new, s["num_beams"], s["num_return_sequences"], s["do_sample"], s["length_penalty"],
                       s["early_stopping"])
    check_sampling_args(s["temperature"], s["top_k"], s["top_p"])
    eos = _end_tokens(special_token("eos_token_id", eos_token_id, model), config.vocab_size)
    pad = special_token("pad_token_id", pad_token_id, model)
    pad = pad if pad is not None else (eos[0] if eos else None)
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.vocab_size):
        raise ValueError(f"pad_token_id={pad!r} is outside the vocabulary [0, {config.vocab_size})")
    forced_eos = s["forced_eos_token_id"]
    controls = LogitsControls(
        repetition_penalty=s["repetition_penalty"], no_repeat_ngram_size=s["no_repeat_ngram_size"],
        bad_words_ids=s["bad_words_ids"], min_length=s["min_length"], min_new_tokens=s["min_new_tokens"],
        forced_bos_token_id=s["forced_bos_token_id"],
        forced_eos_token_id=[forced_eos] if isinstance(forced_eos, int) else (list(forced_eos or []) or None))
    check_controls(controls, config.vocab_size, max_new)
    stops = check_stop_strings(s["stop_strings"], tokenizer)
    _check_length(prompt_len, max_new, config.max_positions)
    return _Plan(s, max_new, prompt_len, eos, pad, start, bool(s["do_sample"]) and s["temperature"] > 0, controls,
                 stops)


def _processors(plan: _Plan, attention_mask: Tensor | None, copies: int) -> list[Processor]:
    ignored = None
    if plan.start is None and attention_mask is not None and plan.controls.repetition_penalty != 1.0:
        ignored = (attention_mask != 0).int().argmax(dim=1).repeat_interleave(copies)  # left padding per row
    return build_processors(plan.controls, prompt_len=plan.prompt_len, max_new_tokens=plan.max_new_tokens,
                            eos=plan.eos, ignored_prefix=ignored)


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
    applies = use_cache and can_use_static_cache(model)
    if cache_implementation == "static" and not applies:
        raise ValueError("cache_implementation='static' needs use_cache=True and a model with new_static_cache() "
                         f"(got {type(model).__name__}, use_cache={use_cache}); use cache_implementation='dynamic' "
                         "or None")
    # By default beam search keeps the dynamic cache: its rows are reordered every step, which a growing cache
    # does without copying the unused slots of a static one. A model without a static form (local or compressed
    # layers) keeps it too; asked for "static" explicitly, its new_static_cache says why not.
    default = cache_implementation is None and num_beams == 1 and static_cache_by_default(model)
    return applies and (cache_implementation == "static" or default)


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
