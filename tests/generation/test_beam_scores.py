"""Beam search's N-best scores, recomputed by hand: sum(log p of the new tokens) / new_length ** length_penalty.

That is transformers' `BeamHypotheses.add` (the prompt is not counted, the end token is). The log-probabilities
come from one teacher-forced forward pass of the model over each returned sequence, not from the search.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import tformer
from tests.generation.conftest import Pair

MAX_NEW_TOKENS = 8
BEAMS = 4
UNEVEN_PENALTY = 0.6


def _search(pair: Pair, eos: list[int], length_penalty: float) -> tformer.generation.GenerateOutput:
    # forced_eos_token_id=[]: Marian's folder forces the end token at the last step, which would rewrite its
    # log-probabilities; the hand computation below reads the model's own.
    return tformer.generate(pair.ours, pair.input_ids[:1], max_new_tokens=MAX_NEW_TOKENS, num_beams=BEAMS,
                            num_return_sequences=BEAMS, length_penalty=length_penalty, early_stopping=False,
                            eos_token_id=eos, forced_eos_token_id=[], return_scores=True)


def _prompt_length(pair: Pair) -> int:
    return 1 if pair.is_encoder_decoder else pair.input_ids.size(1)


def _new_token_log_probs(pair: Pair, sequences: torch.Tensor) -> torch.Tensor:
    """log p(token | everything before it) of each new token (rows, new length), by one forward pass."""
    with torch.no_grad():
        if pair.is_encoder_decoder:
            source = pair.input_ids[:1].expand(sequences.size(0), -1)
            logits = pair.ours(input_ids=source, decoder_input_ids=sequences[:, :-1]).logits
        else:
            logits = pair.ours(sequences[:, :-1]).logits
    start = _prompt_length(pair) - 1  # the logits at position t predict token t + 1
    log_probs = logits[:, start:].float().log_softmax(dim=-1)
    return log_probs.gather(2, sequences[:, start + 1:, None]).squeeze(2)


def _new_lengths(pair: Pair, sequences: torch.Tensor, eos: list[int]) -> torch.Tensor:
    """How many new tokens each hypothesis has: up to and including its first end token, else all of them."""
    new = sequences[:, _prompt_length(pair):]
    ended = torch.isin(new, torch.tensor(eos, dtype=new.dtype)) if eos else torch.zeros_like(new, dtype=torch.bool)
    first_end = torch.where(ended.any(1), ended.int().argmax(1) + 1, new.size(1))
    return first_end


def _hand_scores(pair: Pair, sequences: torch.Tensor, eos: list[int], length_penalty: float) -> torch.Tensor:
    log_probs = _new_token_log_probs(pair, sequences)
    lengths = _new_lengths(pair, sequences, eos)
    kept = torch.arange(log_probs.size(1))[None, :] < lengths[:, None]
    return (log_probs * kept).sum(1) / lengths.double().pow(length_penalty).float()


def _uneven_end_token(pair: Pair) -> list[int]:
    """An end token that makes the N-best list hold hypotheses of different lengths at length_penalty=0.6 (one that
    favours short ones), so the eos cases compare hypotheses the penalty divides differently."""
    plain = _search(pair, [], 1.0).sequences[:, _prompt_length(pair):]
    for token, _ in Counter(plain.flatten().tolist()).most_common():
        out = _search(pair, [token], UNEVEN_PENALTY).sequences
        if _new_lengths(pair, out, [token]).unique().numel() > 1:
            return [token]
    raise AssertionError(f"{pair.name}: no end token gives N-best hypotheses of different lengths")


@pytest.mark.parametrize("length_penalty", [0.6, 1.0, 2.0], ids=lambda v: f"lp={v}")
@pytest.mark.parametrize("with_eos", [False, True], ids=["no-eos", "eos"])
def test_beam_scores_are_log_prob_sums_over_new_length_to_the_penalty(
    pair: Pair, with_eos: bool, length_penalty: float,
) -> None:
    eos = _uneven_end_token(pair) if with_eos else []
    out = _search(pair, eos, length_penalty)
    expected = _hand_scores(pair, out.sequences, eos, length_penalty)
    assert (out.scores - expected).abs().max() < 1e-4, (out.scores, expected)
    assert torch.equal(out.scores.sort(descending=True).values, out.scores)  # best first
    if with_eos and length_penalty == UNEVEN_PENALTY:  # the case is not vacuous
        assert _new_lengths(pair, out.sequences, eos).unique().numel() > 1

