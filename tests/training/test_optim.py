"""AdamW groups and learning-rate schedules."""

from __future__ import annotations

import io
import math

import pytest
import torch

from tformer.config import ModelConfig
from tformer.models import build_model
from tformer.training.checkpoint import restore_optimizer
from tformer.training.distributed import Distributed
from tformer.training.optim import build_optimizer, build_scheduler, decay_groups, lr_multiplier


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
    assert {"decoder.embeddings.token.weight", "decoder.embeddings.positions.weight"} <= decayed
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


def adamw_steps(fused: bool, steps: int, saved: bytes | None = None) -> tuple[torch.nn.Module, bytes]:
    """`steps` AdamW steps (warmup + cosine) of a tiny GPT on fixed batches, from an optimizer state when given."""
    torch.manual_seed(0)  # no biases: softmax ignores the key bias, whose rounding-level gradients Adam (dividing by
    # sqrt(v)) turns into full steps of either sign, in either kernel
    model = build_model(ModelConfig.preset("gpt2-tiny", dropout=0.0, attention_dropout=0.0, bias=False))
    optimizer = build_optimizer(model, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, fused=fused)
    assert bool(optimizer.defaults.get("fused")) == fused
    scheduler = build_scheduler(optimizer, "cosine", max_steps=6, warmup_steps=2, lr=3e-3)
    batches = torch.randint(0, model.config.vocab_size, (6, 2, 12), generator=torch.Generator().manual_seed(1))
    start = 0
    if saved is not None:  # as a resume does: weights, then the optimizer state read back from the file
        model.load_state_dict(torch.load(io.BytesIO(saved), weights_only=True)["model"])
        state = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
        restore_optimizer(model, optimizer, state["optimizer"], Distributed())
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
    for step in range(start, start + steps):
        model(batches[step], labels=batches[step]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": start + steps}, buffer)
    return model, buffer.getvalue()


def test_fused_adamw_on_cpu_steps_and_resumes_as_the_plain_one() -> None:
    # the kernel the trainer uses on CUDA, run where torch offers it on CPU: the same updates as the plain AdamW
    # (to rounding), and a resume from its saved state continues it exactly
    fused, _ = adamw_steps(True, 6)
    plain, _ = adamw_steps(False, 6)
    for (name, a), b in zip(fused.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    _, at_3 = adamw_steps(True, 3)
    resumed, _ = adamw_steps(True, 3, saved=at_3)
    for (name, a), b in zip(fused.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
