"""`tformer.accel.apply`: one transform, idempotent, state dict kept, off with one flag; applied by generate and the
Trainer; `layers/` and `models/` stay plain PyTorch."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import tformer
from tests.training.conftest import make_recipe  # noqa: F401 - the Trainer test's fixture
from tformer import accel
from tformer.accel import AcceleratedLinear, AcceleratedMaskedLMHead
from tformer.models.bert import MaskedLMHead

SRC = Path(tformer.__file__).parent


def _bert() -> nn.Module:
    torch.manual_seed(0)
    return tformer.build_model(tformer.ModelConfig.preset("bert-tiny", dropout=0.0)).eval()


def _gpt() -> nn.Module:
    torch.manual_seed(0)
    return tformer.build_model(tformer.ModelConfig.preset("gpt2-tiny", dropout=0.0)).eval()


def _classes(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_apply_swaps_every_linear_in_place_keeping_parameters_and_state_dict() -> None:
    model = _bert()
    before = {name: (tensor.data_ptr(), tensor.clone()) for name, tensor in model.state_dict().items()}
    parameters = list(model.parameters())
    assert accel.apply(model, enabled=True) is model
    assert nn.Linear not in _classes(model) and MaskedLMHead not in _classes(model)
    assert {AcceleratedLinear, AcceleratedMaskedLMHead} <= _classes(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[n].data_ptr() == ptr and torch.equal(after[n], old) for n, (ptr, old) in before.items())
    assert all(a is b for a, b in zip(model.parameters(), parameters, strict=True))
    assert model.mlm_head.decoder.weight is model.encoder.embeddings.token.weight  # still tied


def test_apply_is_idempotent_and_enabled_false_turns_it_back() -> None:
    model = _bert()
    x = torch.randint(0, model.config.vocab_size, (2, 3))
    with torch.no_grad():
        plain = model(x).logits
        accel.apply(model, enabled=True)
        once, classes = model(x).logits, _classes(model)
        accel.apply(model, enabled=True)
        assert _classes(model) == classes and torch.equal(model(x).logits, once)
        torch.testing.assert_close(once, plain, rtol=1e-5, atol=1e-5)
        accel.apply(model, enabled=False)
        assert AcceleratedLinear not in _classes(model) and nn.Linear in _classes(model)
        assert torch.equal(model(x).logits, plain)


def test_the_environment_flag_switches_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFORMER_ACCEL", "0")
    model, reference = _gpt(), _gpt()
    assert not accel.enabled()
    accel.apply(model)
    assert AcceleratedLinear not in _classes(model) and type(model.lm_head) is nn.Linear
    x = torch.randint(0, model.config.vocab_size, (3, 1))  # few rows: the accelerated path would multiply otherwise
    with torch.no_grad():
        assert torch.equal(model(x).logits, reference(x).logits)
    monkeypatch.setenv("TFORMER_ACCEL", "1")
    assert type(accel.apply(model).lm_head) is AcceleratedLinear
    monkeypatch.setenv("TFORMER_ACCEL", "maybe")
    with pytest.raises(ValueError, match="TFORMER_ACCEL='maybe' .* 1 \\(on\\) or 0 \\(off\\)"):
        accel.apply(model)


def test_applied_gives_the_former_classes_back() -> None:
    model = accel.apply(_gpt(), enabled=False)
    with accel.applied(model, enabled=True):
        assert type(model.lm_head) is AcceleratedLinear
    assert type(model.lm_head) is nn.Linear
    accel.apply(model, enabled=True)
    with accel.applied(model, enabled=False):
        assert type(model.lm_head) is nn.Linear
    assert type(model.lm_head) is AcceleratedLinear


def _classes_seen_by_generate(model: nn.Module, **kwargs: object) -> tuple[set[type], torch.Tensor]:
    seen: set[type] = set()
    handle = model.lm_head.register_forward_hook(lambda module, args, out: seen.add(type(module)))
    try:
        ids = tformer.generate(model, torch.tensor([[5, 6, 7], [8, 9, 10]]), max_new_tokens=4, eos_token_id=[],
                               **kwargs)
    finally:
        handle.remove()
    return seen, ids


@pytest.mark.parametrize("num_beams", [1, 2], ids=["greedy", "beam"])
def test_generate_runs_with_accel_and_leaves_the_model_plain(monkeypatch: pytest.MonkeyPatch, num_beams: int) -> None:
    model = _gpt()
    monkeypatch.delenv("TFORMER_ACCEL", raising=False)
    seen_on, ids_on = _classes_seen_by_generate(model, num_beams=num_beams)
    assert seen_on == {AcceleratedLinear} and type(model.lm_head) is nn.Linear
    monkeypatch.setenv("TFORMER_ACCEL", "0")
    seen_off, ids_off = _classes_seen_by_generate(model, num_beams=num_beams)
    assert seen_off == {nn.Linear}
    assert torch.equal(ids_on, ids_off)


def test_the_trainer_trains_the_accelerated_model(make_recipe, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from tformer.training import Trainer

    trainer = Trainer(make_recipe("causal_lm", "--train.max_steps=1"))
    assert type(trainer.model.lm_head) is AcceleratedLinear
    monkeypatch.setenv("TFORMER_ACCEL", "0")
    trainer = Trainer(make_recipe("causal_lm", "--train.max_steps=1", run="plain"))
    assert AcceleratedLinear not in _classes(trainer.model)


PLATFORM_WORDS = re.compile(r"mkldnn|onednn|\bmkl\b|inductor|_native_bf16|AVX512|AMX", re.IGNORECASE)


@pytest.mark.parametrize("package", ["layers", "models"])
def test_layers_and_models_are_plain_pytorch(package: str) -> None:
    """No import of accel, no platform-specific kernel named: what a learner reads next to the notes."""
    files = sorted((SRC / package).rglob("*.py"))
    assert files
    for path in files:
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("tformer.accel") or n == "tformer.accel" for n in names), (path, names)
        assert not PLATFORM_WORDS.search(source), (path, PLATFORM_WORDS.search(source))
    assert not (SRC / "layers" / "linear.py").exists()
