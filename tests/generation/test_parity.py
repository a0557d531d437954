"""Same tokens and scores as `transformers`' generate: greedy decoding, beam search / N-best, sampling.

Every argument that matters is passed to both libraries explicitly; beyond those, both read the folder's
generation_config.json (conftest), so the Marian cases run with its forced_eos_token_id=0 in both.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
import transformers
from packaging.version import Version

import tformer
from tests.generation.conftest import Pair

SCORE_TOLERANCE = 1e-4
MAX_NEW_TOKENS = 10


def _theirs(pair: Pair, eos: list[int], **kwargs: Any) -> Any:
    """transformers' generate with the end tokens `eos` ([] = none) and the padding id tformer would choose."""
    special: dict[str, Any] = {"eos_token_id": eos} if eos else {}
    pad = pair.ours.config.pad_token_id
    pad = pad if pad is not None else (eos[0] if eos else None)
    if pad is not None:
        special["pad_token_id"] = pad
    with torch.no_grad():
        return pair.theirs.generate(input_ids=pair.input_ids, attention_mask=pair.attention_mask,
                                    max_new_tokens=MAX_NEW_TOKENS, return_dict_in_generate=True, output_scores=True,
                                    **special, **kwargs)


def _ours(pair: Pair, eos: list[int], **kwargs: Any) -> tformer.generation.GenerateOutput:
    return tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=MAX_NEW_TOKENS,
                            eos_token_id=eos, return_scores=True, **kwargs)


def _beam_modes(pair: Pair, eos: list[int], length_penalty: float) -> list[torch.Tensor]:
    return [_ours(pair, eos, num_beams=4, num_return_sequences=4, early_stopping=mode,
                  length_penalty=length_penalty).sequences for mode in (True, False, "never")]


def _distinct(tensors: list[torch.Tensor]) -> int:
    return len({(tuple(t.shape), tuple(t.flatten().tolist())) for t in tensors})


def _liked_token(pair: Pair) -> int:
    """An end token the random model produces, chosen among the three commonest new tokens of the no-eos N-best
    lists as the one whose early_stopping modes disagree most (so finishing is exercised, not trivial)."""
    out = _ours(pair, [], num_beams=4, num_return_sequences=4).sequences[:, -MAX_NEW_TOKENS:]
    candidates = [token for token, _ in Counter(out.flatten().tolist()).most_common(3)]
    return max(candidates, key=lambda token: _distinct(_beam_modes(pair, [token], 1.0)))


@pytest.fixture(scope="module")
def liked_token(pair: Pair) -> int:
    return _liked_token(pair)


def _token_log_probs(sequences: torch.Tensor, scores: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """transformers' per-step scores -> log-probability of each chosen token (rows, steps)."""
    steps = torch.stack(scores, dim=1).log_softmax(dim=-1)
    return steps.gather(2, sequences[:, -len(scores):, None]).squeeze(2)


@pytest.mark.parametrize("with_eos", [False, True], ids=["no-eos", "eos"])
def test_greedy_matches_transformers(pair: Pair, liked_token: int, with_eos: bool) -> None:
    eos = [liked_token] if with_eos else []
    expected = _theirs(pair, eos, do_sample=False, num_beams=1)
    got = _ours(pair, eos)
    assert torch.equal(got.sequences, expected.sequences)
    finished = got.sequences[:, -got.scores.size(1):] == (eos[0] if eos else -1)
    real = ~(finished.cumsum(1) - finished.long()).bool()  # each row up to and including its end token
    their_log_probs = _token_log_probs(expected.sequences, expected.scores)
    assert (got.scores - their_log_probs)[real].abs().max() < 1e-5
    assert (got.scores[~real] == 0).all()


@pytest.mark.parametrize("early_stopping", [True, False, "never"], ids=lambda v: f"early_stopping={v}")
@pytest.mark.parametrize("length_penalty", [0.6, 1.0, 2.0], ids=lambda v: f"lp={v}")
@pytest.mark.parametrize("with_eos", [False, True], ids=["no-eos", "eos"])
def test_beam_search_matches_transformers(
    pair: Pair, liked_token: int, with_eos: bool, length_penalty: float, early_stopping: bool | str,
) -> None:
    eos = [liked_token] if with_eos else []
    args = dict(num_beams=4, num_return_sequences=4, length_penalty=length_penalty, early_stopping=early_stopping)
    expected = _theirs(pair, eos, do_sample=False, **args)
    got = _ours(pair, eos, **args)
    assert got.sequences.shape == expected.sequences.shape
    assert torch.equal(got.sequences, expected.sequences)
    assert (got.scores - expected.sequences_scores).abs().max() < SCORE_TOLERANCE
    if with_eos:  # the case exercises finishing: some hypothesis ends with the end token
        assert (got.sequences[:, -MAX_NEW_TOKENS:] == liked_token).any()


def test_beam_search_exercises_early_finishing(pair: Pair, liked_token: int) -> None:
    """The eos cases above are not vacuous: hypotheses end early, and the early_stopping modes disagree."""
    outputs = _beam_modes(pair, [liked_token], 1.0)
    prompt = 1 if pair.is_encoder_decoder else pair.input_ids.size(1)
    assert min(out.size(1) for out in outputs) < prompt + MAX_NEW_TOKENS
    assert _distinct(outputs) >= 2


def test_beam_search_with_two_end_tokens_matches_transformers(pair: Pair, liked_token: int) -> None:
    eos = [liked_token, (liked_token + 1) % 99]
    args = dict(num_beams=3, num_return_sequences=2, length_penalty=1.0, early_stopping=False)
    expected = _theirs(pair, eos, do_sample=False, **args)
    got = _ours(pair, eos, **args)
    assert torch.equal(got.sequences, expected.sequences)
    assert (got.scores - expected.sequences_scores).abs().max() < SCORE_TOLERANCE


def test_single_unpadded_prompt_matches_transformers(pair: Pair, liked_token: int) -> None:
    ids = pair.input_ids[:1]
    args = dict(num_beams=4, num_return_sequences=2, length_penalty=1.0, early_stopping=False)
    with torch.no_grad():
        expected = pair.theirs.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                        eos_token_id=liked_token, pad_token_id=2, do_sample=False, **args)
    got = tformer.generate(pair.ours, ids, max_new_tokens=8, eos_token_id=liked_token, pad_token_id=2, **args)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("filters", [dict(temperature=1.3, top_k=0, top_p=1.0), dict(temperature=0.7, top_k=5,
                                     top_p=0.9), dict(temperature=1.0, top_k=0, top_p=0.6)], ids=["T", "T-k-p", "p"])
def test_sampling_with_one_seed_matches_transformers(pair: Pair, liked_token: int, filters: dict[str, Any]) -> None:
    """Same filters, same generator state: transformers draws from torch's global generator seeded the same way."""
    torch.manual_seed(7)
    expected = _theirs(pair, [liked_token], do_sample=True, num_return_sequences=3, **filters)
    got = _ours(pair, [liked_token], do_sample=True, num_return_sequences=3, seed=7, **filters)
    assert torch.equal(got.sequences, expected.sequences)


@pytest.mark.skipif(Version(transformers.__version__) < Version("5.24"),
                    reason="transformers < 5.24 kept sampled beam candidates in draw order; since 5.24 it ranks them "
                    "by score, as tformer does")
def test_beam_sampling_with_one_seed_matches_transformers(pair: Pair, liked_token: int) -> None:
    args = dict(num_beams=3, num_return_sequences=2, temperature=0.8, top_k=20, top_p=0.95)
    torch.manual_seed(3)
    expected = _theirs(pair, [liked_token], do_sample=True, **args)
    got = _ours(pair, [liked_token], do_sample=True, seed=3, **args)
    assert torch.equal(got.sequences, expected.sequences)
    assert (got.scores - expected.sequences_scores).abs().max() < SCORE_TOLERANCE
