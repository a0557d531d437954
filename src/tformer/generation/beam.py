"""Beam search / N-best: keep the num_beams most probable partial sequences, collect finished ones in a list.

Follows Hugging Face's `_beam_search` step for step (its `BeamHypotheses` semantics), so the same model gives
the same sequences and scores:

* a finished hypothesis scores sum(log p of its new tokens) / (number of new tokens) ** length_penalty
  (the prompt is not counted; the end token is);
* each step draws the best 2 * num_beams candidates (more with several end tokens) over all beams, so
  num_beams of them are still running even if some end; only the first num_beams may enter the N-best list;
* early_stopping=True stops an input once num_beams hypotheses are finished; False stops when the best running
  beam, normalised at its current length, cannot beat the worst finished one; "never" bounds the running beam
  at the longest reachable length when length_penalty > 0 (the canonical search).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tformer.generation.processors import Processor, apply_processors
from tformer.generation.state import DecoderState

NEG = -1.0e9  # "impossible" score, as in transformers (finite, so sums of it stay comparable)


def _candidates(totals: Tensor, keep: int, *, sample: bool,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The best `keep` (beam * vocab + token) continuations of each input, or `keep` drawn without replacement
    (beam sampling), best first either way: (scores, flat indices), each (batch, keep)."""
    if not sample:
        return torch.topk(totals, keep)
    flat = torch.multinomial(totals.softmax(dim=-1), num_samples=keep, generator=generator)
    scores, order = totals.gather(1, flat).sort(dim=-1, descending=True)  # best first, as topk gives them
    return scores, flat.gather(1, order)


def beam_search(
    state: DecoderState, *, batch_size: int, num_beams: int, max_new_tokens: int, eos: Tensor, fill: int,
    length_penalty: float, early_stopping: bool | str, num_return_sequences: int,
    warp: Callable[[Tensor], Tensor] | None = None, generator: torch.Generator | None = None,
    processors: list[Processor] | None = None, stop: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Beam search (with `warp`: beam sampling) over rows = batch_size * num_beams copies of each input.

    `processors` (logits processors) apply to the log-probabilities before `warp`, as in transformers; a
    candidate ends with an end token, at the last step, or when `stop(tokens)` (rows,) says its text just ended
    in a stop string.
    Returns the num_return_sequences best finished hypotheses of each input, best first: sequences
    (batch_size * num_return_sequences, prompt + longest new length), shorter ones padded with `fill`, and
    their length-normalised scores (batch_size * num_return_sequences,).
    """
    device = state.tokens.device
    prompt_len = state.length
    max_len = prompt_len + max_new_tokens
    keep = max(2, 1 + eos.numel()) * num_beams  # candidates per input and step
    first_beams = torch.arange(keep, device=device) < num_beams  # candidates allowed into the N-best list

    # The running beams: they all start as the prompt, so at first only beam 0 may expand (no duplicates).
    running_scores = torch.zeros(batch_size, num_beams, device=device)
    running_scores[:, 1:] = NEG
    # The N-best list of finished hypotheses per input, padded to max_len, with scores and generated lengths.
    best = state.tokens.new_full((batch_size, num_beams, max_len), fill)
    best[:, :, :prompt_len] = state.tokens.view(batch_size, num_beams, prompt_len)
    best_scores = torch.full((batch_size, num_beams), NEG, device=device)
    best_lengths = torch.zeros(batch_size, num_beams, dtype=torch.long, device=device)
    best_filled = torch.zeros(batch_size, num_beams, dtype=torch.bool, device=device)
    can_improve = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
    row_offset = torch.arange(batch_size, device=device)[:, None] * num_beams

    for step in range(max_new_tokens):
        cur_len = prompt_len + step
        log_probs = state.next_logits().log_softmax(dim=-1)  # (rows, vocab)
        if processors:
            log_probs = apply_processors(processors, state.tokens, log_probs)
        if warp is not None:
            log_probs = warp(log_probs)
        vocab = log_probs.size(-1)
        totals = (log_probs.view(batch_size, num_beams, vocab) + running_scores[:, :, None]).view(batch_size, -1)

        scores, flat = _candidates(totals, keep, sample=warp is not None, generator=generator)
        parents, tokens = flat // vocab, flat % vocab  # (batch, keep) each
        running = state.tokens.view(batch_size, num_beams, cur_len)
        candidates = torch.cat([running.gather(1, parents[:, :, None].expand(-1, -1, cur_len)),
                                tokens[:, :, None]], dim=2)  # (batch, keep, cur_len + 1)
        ended = torch.isin(tokens, eos) | (cur_len + 1 >= max_len)
        if stop is not None:
            ended |= stop(candidates.flatten(0, 1)).view(batch_size, keep)

        # The next running beams: the best num_beams candidates that did not end.
        alive_scores = scores + ended.float() * NEG
        chosen = torch.topk(alive_scores, num_beams).indices
        running_scores = alive_scores.gather(1, chosen)

        # The N-best list: merge in the candidates that ended, length-normalised, and keep the num_beams best.
        finished_scores = scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        list_closed = best_filled.all(dim=-1, keepdim=True) & (early_stopping is True)
        finished_scores += list_closed.float() * NEG
        finished_scores += (~can_improve).float() * NEG
        finished_scores += (~(ended & first_beams)).float() * NEG
        padded = torch.cat([candidates, candidates.new_full((batch_size, keep, max_len - cur_len - 1), fill)], dim=2)
        merged_scores = torch.cat([best_scores, finished_scores], dim=1)
        top = torch.topk(merged_scores, num_beams).indices
        best = torch.cat([best, padded], dim=1).gather(1, top[:, :, None].expand(-1, -1, max_len))
        best_scores = merged_scores.gather(1, top)
        new_lengths = torch.full_like(tokens, cur_len + 1 - prompt_len)
        best_lengths = torch.cat([best_lengths, new_lengths], dim=1).gather(1, top)
        best_filled = torch.cat([best_filled, ended & first_beams], dim=1).gather(1, top)

        # Stop when no input can improve its N-best list (one host-device sync per step).
        generated = cur_len + 1 - prompt_len
        hypothetical = max_new_tokens if early_stopping == "never" and length_penalty > 0 else generated
        best_possible = running_scores[:, :1] / (hypothetical ** length_penalty)
        worst_finished = torch.where(best_filled, best_scores.min(dim=1, keepdim=True).values, NEG)
        can_improve &= (best_possible > worst_finished).any(dim=-1, keepdim=True)
        all_closed = best_filled.all() & (early_stopping is True)
        if not (can_improve.any() & ~all_closed & ~ended.all()):
            break
        state.append(tokens.gather(1, chosen).view(-1), parents=(parents.gather(1, chosen) + row_offset).view(-1))

    sequences = best[:, :num_return_sequences].flatten(0, 1)
    length = prompt_len + int(best_lengths[:, :num_return_sequences].max())
    return sequences[:, :length], best_scores[:, :num_return_sequences].flatten()
