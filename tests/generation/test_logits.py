"""Sampling's filters give the distribution `transformers`' logits warpers give (temperature, top-k, top-p)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dev_dependency import import_dev
from tformer.generation import filter_logits

transformers = import_dev("transformers")
from transformers.generation.logits_process import (  # noqa: E402
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

VOCAB = 50


def _their_filter(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                  min_tokens_to_keep: int = 1) -> torch.Tensor:
    """The warpers transformers' generate builds for these arguments, in its order."""
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(temperature)))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep))
    return warpers(torch.zeros(logits.size(0), 1, dtype=torch.long), logits)


def _logits(seed: int, rows: int = 4, ties: bool = False) -> torch.Tensor:
    logits = torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3
    if ties:  # many exactly equal values, to check that both keep the same tied tokens
        logits = logits.round()
    return logits


def _assert_same_distribution(logits: torch.Tensor, **args: object) -> None:
    ours = filter_logits(logits, **args).softmax(dim=-1)  # type: ignore[arg-type]
    theirs = _their_filter(logits, **args).softmax(dim=-1)  # type: ignore[arg-type]
    assert (ours - theirs).abs().max() < 1e-6
    assert torch.equal(ours == 0, theirs == 0)  # exactly the same tokens removed


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize(
    "args",
    [dict(temperature=0.7), dict(temperature=2.5), dict(top_k=1), dict(top_k=10), dict(top_k=VOCAB + 5),
     dict(top_p=0.9), dict(top_p=0.3), dict(temperature=0.5, top_k=8), dict(temperature=1.5, top_p=0.8),
     dict(top_k=12, top_p=0.7), dict(temperature=0.8, top_k=20, top_p=0.95),
     dict(temperature=0.8, top_k=1, top_p=0.5, min_tokens_to_keep=2), dict(top_p=0.1, min_tokens_to_keep=3)],
    ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()),
)
def test_filter_matches_transformers_warpers(args: dict[str, float], ties: bool) -> None:
    args = {"temperature": 1.0, "top_k": None, "top_p": None, **args}
    for seed in range(3):
        _assert_same_distribution(_logits(seed, ties=ties), **args)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.05, 5.0), top_k=st.integers(0, VOCAB),
       top_p=st.floats(0.0, 1.0), ties=st.booleans())
def test_filter_matches_transformers_warpers_everywhere(seed: int, temperature: float, top_k: int, top_p: float,
                                                        ties: bool) -> None:
    _assert_same_distribution(_logits(seed, ties=ties), temperature=temperature, top_k=top_k, top_p=top_p)


@pytest.mark.parametrize("top_p", [0.0, 1e-9, 1e-3])
def test_tiny_top_p_keeps_exactly_the_argmax(top_p: float) -> None:
    logits = _logits(0)
    probs = filter_logits(logits, top_p=top_p).softmax(dim=-1)
    assert torch.equal(probs.argmax(dim=-1), logits.argmax(dim=-1))
    assert torch.equal((probs > 0).sum(dim=-1), torch.ones(logits.size(0), dtype=torch.long))


def test_temperature_zero_keeps_only_the_argmax() -> None:
    logits = _logits(1)
    probs = filter_logits(logits, temperature=0).softmax(dim=-1)
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(dim=-1), VOCAB).float())


def test_no_filter_is_the_identity() -> None:
    logits = _logits(2)
    assert torch.equal(filter_logits(logits), logits)
    assert torch.equal(filter_logits(logits, top_k=0, top_p=1.0), logits)


@pytest.mark.parametrize("args, named", [
    (dict(temperature=-0.5), "temperature=-0.5"), (dict(temperature=float("nan")), "temperature=nan"),
    (dict(top_k=-1), "top_k=-1"), (dict(top_k=2.5), "top_k=2.5"),
    (dict(top_p=1.5), "top_p=1.5"), (dict(top_p=-0.1), "top_p=-0.1"),
])
def test_bad_values_are_named(args: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        filter_logits(_logits(0), **args)  # type: ignore[arg-type]
