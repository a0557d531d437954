"""AdamW groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from tformer.config import ModelConfig
from tformer.models import build_model
from tformer.training.optim import build_optimizer, decay_groups, lr_multiplier


@pytest.mark.parametrize("preset", ["gpt2-tiny", "bert-tiny", "transformer-tiny"])
def test_no_weight_decay_on_biases_norms_and_embeddings(preset: str) -> None:
    model = build_model(ModelConfig.preset(preset))
    decay, rest = decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in rest["params"]}
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert decayed and all(n.endswith("weight") for n in decayed)
    assert not any("norm" in n or "embed" in n or "token" in n or "position" in n for n in decayed), decayed
    assert any(n.endswith("bias") for n in kept)
    assert decayed | kept == set(names.values())  # every parameter once (tied ones included once)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99), eps=1e-8)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_decay_embeddings_as_nanogpt() -> None:
    model = build_model(ModelConfig.preset("gpt2-tiny"))
    decay, rest = decay_groups(model, 0.1, decay_embeddings=True)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"embeddings.token.weight", "embeddings.positions.weight"} <= decayed
    assert not any("norm" in names[id(p)] for p in decay["params"])


def test_warmup_then_cosine_to_min_lr_as_nanogpt() -> None:
    f = lr_multiplier("cosine", max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)  # half way through the decay
    assert 0.1 < f(99) < 0.1005 and f(100) == pytest.approx(0.1)  # the last step still moves; min_lr at the end
    values = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_noam_is_the_papers_inverse_square_root() -> None:
    d_model, warmup = 512, 4000
    peak = d_model ** -0.5 * warmup ** -0.5
    f = lr_multiplier("noam", max_steps=100_000, warmup_steps=warmup, lr=peak)
    for step in (1, 100, 3999, 4000, 4001, 20_000, 99_999):
        paper = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
        assert peak * f(step - 1) == pytest.approx(paper, rel=1e-12)


def test_linear_and_constant() -> None:
    linear = lr_multiplier("linear", max_steps=11, warmup_steps=1, lr=1.0, min_lr=0.0)
    assert linear(0) == 0.5 and linear(1) == 1.0 and linear(6) == pytest.approx(0.5) and linear(11) == 0.0
    constant = lr_multiplier("constant", max_steps=10, warmup_steps=0, lr=1.0)
    assert all(constant(s) == 1.0 for s in range(12))
    assert math.isclose(lr_multiplier("constant", max_steps=10, warmup_steps=4, lr=1.0)(1), 0.4)
