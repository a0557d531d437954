"""Greedy decoding and sampling: one token per step for every row, until max_new_tokens or the end token."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tformer.generation.processors import Processor, apply_processors
from tformer.generation.state import DecoderState
from tformer.generation.streamer import Streamer


def greedy_or_sample(
    state: DecoderState, *, max_new_tokens: int, eos: Tensor, pad: int | None,
    warp: Callable[[Tensor], Tensor] | None = None, generator: torch.Generator | None = None,
    streamer: Streamer | None = None, with_scores: bool = True, processors: list[Processor] | None = None,
    stop: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy decoding (argmax each step), or, given `warp` (the sampling filter), sampling from softmax(warp(logits)).

    Returns the sequences (rows, prompt + new length) and each new token's log-probability (rows, new length)
    under the distribution it was chosen from. A row that has produced an end token (`eos`, (n,)) is finished:
    it gets `pad` (log-probability 0) until every row is finished or max_new_tokens are made.
    `processors` (logits processors) come before `warp`; `stop(tokens)` (rows,) marks rows whose text just ended in a
    stop string: they are finished too (padded only when there are end tokens, as in transformers).
    `streamer.put(tokens)` gets each step's tokens (rows,) as they are chosen, `streamer.end()` the end.
    with_scores=False skips the log-probabilities (a softmax over the vocabulary per step) and returns them empty.
    """
    if eos.numel() and pad is None:
        raise ValueError("finished sequences need a pad_token_id to fill them")
    unfinished = torch.ones(state.tokens.size(0), dtype=torch.bool, device=state.tokens.device)
    log_probs = []
    for _ in range(max_new_tokens):
        scores = state.next_logits()  # (rows, vocab)
        if processors:
            scores = apply_processors(processors, state.tokens, scores)
        if warp is not None:
            scores = warp(scores)
            next_tokens = torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        if with_scores:
            log_prob = scores.log_softmax(dim=-1).gather(1, next_tokens[:, None]).squeeze(1)
            log_probs.append(torch.where(unfinished, log_prob, 0.0) if eos.numel() or stop else log_prob)
        if eos.numel():
            next_tokens = torch.where(unfinished, next_tokens, pad)
        state.append(next_tokens)
        if streamer is not None:
            streamer.put(next_tokens)
        if eos.numel():
            unfinished &= ~torch.isin(next_tokens, eos)
        if stop is not None:
            unfinished &= ~stop(state.tokens)
        if (eos.numel() or stop is not None) and not unfinished.any():  # the one host-device sync per step
            break
    if streamer is not None:
        streamer.end()
    rows = state.tokens.size(0)
    return state.tokens, torch.stack(log_probs, dim=1) if log_probs else state.tokens.new_zeros(rows, 0).float()
