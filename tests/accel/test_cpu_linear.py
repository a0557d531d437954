"""accel's CPU linear paths: nn.Linear's parameters and results, the few-rows inference product in the
(W @ x.T).T form, and the bf16 fallback's gradients, all reached through `tformer.accel.apply`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import tformer
from tformer import accel
from tformer.accel import cpu_linear
from tformer.accel.cpu_linear import SMALL_ROWS_MAX, AcceleratedLinear


class _MatrixProducts(TorchDispatchMode):
    """Records the (left, right) shapes of every mm / addmm."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            left, right = args[-2:] if func is torch.ops.aten.addmm.default else args
            self.shapes.append((tuple(left.shape), tuple(right.shape)))
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def _few_rows_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a CPU whose F.linear is slow for few rows (AMD): the few-rows path is the one under test."""
    monkeypatch.setattr(cpu_linear, "few_rows_slow", lambda: True)


def _layer(bias: bool) -> nn.Linear:
    torch.manual_seed(0)
    return accel.apply(nn.Linear(48, 80, bias=bias), enabled=True)


def test_same_parameters_and_state_dict_as_nn_linear() -> None:
    layer, reference = _layer(True), nn.Linear(48, 80)
    assert type(layer) is AcceleratedLinear and isinstance(layer, nn.Linear)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (2, 5), (SMALL_ROWS_MAX,), (SMALL_ROWS_MAX + 1,), (0,)])
def test_inference_equals_f_linear(shape: tuple[int, ...], bias: bool) -> None:
    layer = _layer(bias)
    x = torch.randn(*shape, 48)
    with torch.no_grad():
        out = layer(x)
    expected = F.linear(x, layer.weight, layer.bias)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_few_rows_at_inference_put_the_weight_on_the_left() -> None:
    layer = _layer(True)
    with torch.no_grad(), _MatrixProducts() as seen:
        layer(torch.randn(1, 1, 48))  # one row is doubled: the product has two columns
        layer(torch.randn(4, 48))
        layer(torch.randn(SMALL_ROWS_MAX + 1, 48))  # too many rows: F.linear's x @ W.T
    assert seen.shapes == [((80, 48), (48, 2)), ((80, 48), (48, 4)), ((SMALL_ROWS_MAX + 1, 48), (48, 80))]


def test_few_rows_path_is_off_on_a_cpu_whose_f_linear_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_linear, "few_rows_slow", lambda: False)
    layer = _layer(True)
    with torch.no_grad(), _MatrixProducts() as seen:
        layer(torch.randn(4, 48))
    assert seen.shapes == [((4, 48), (48, 80))]


@pytest.mark.parametrize(("vendor", "forced", "slow"), [("AuthenticAMD", "", True), ("GenuineIntel", "", False),
                                                         ("GenuineIntel", "1", True), ("AuthenticAMD", "0", False)])
def test_few_rows_slow_on_amd_unless_the_flag_decides(monkeypatch: pytest.MonkeyPatch, tmp_path, vendor: str,
                                                     forced: str, slow: bool) -> None:
    monkeypatch.undo()  # the real function, not the autouse stand-in
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: x\n")
    assert cpu_linear.cpu_vendor(cpuinfo) == vendor
    assert cpu_linear.cpu_vendor(tmp_path / "absent") == ""
    monkeypatch.setattr(cpu_linear, "cpu_vendor", lambda: vendor)
    monkeypatch.setenv(cpu_linear.FEW_ROWS_FLAG, forced)
    monkeypatch.setattr(cpu_linear, "_FEW_ROWS_SLOW", [])
    assert cpu_linear.few_rows_slow() is slow
    monkeypatch.setenv(cpu_linear.FEW_ROWS_FLAG, "maybe")
    assert cpu_linear.few_rows_slow() is slow  # decided once per process
    monkeypatch.setattr(cpu_linear, "_FEW_ROWS_SLOW", [])
    with pytest.raises(ValueError, match="TFORMER_ACCEL_FEW_ROWS='maybe' is not a switch"):
        cpu_linear.few_rows_slow()


def test_few_rows_path_is_off_with_accel_off() -> None:
    layer = accel.apply(_layer(True), enabled=False)
    with torch.no_grad(), _MatrixProducts() as seen:
        layer(torch.randn(4, 48))
    assert type(layer) is nn.Linear and seen.shapes == [((4, 48), (48, 80))]


def test_training_is_exactly_nn_linear() -> None:
    layer, reference = _layer(True), nn.Linear(48, 80)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(3, 48)
    with _MatrixProducts() as seen:
        out = layer(x)
    assert seen.shapes == [((3, 48), (48, 80))]
    assert torch.equal(out, reference(x))
    out.sum().backward()
    reference(x).sum().backward()
    assert layer.weight.grad is not None and torch.equal(layer.weight.grad, reference.weight.grad)


def _without_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool = False) -> None:
    monkeypatch.setattr(cpu_linear, "native_bf16", lambda: native)  # False: as on a CPU without AVX512-BF16 / AMX


@pytest.mark.parametrize("autocast", [True, False], ids=["autocast", "bf16-weights"])
def test_bf16_training_without_native_bf16_gives_nn_linear_gradients(monkeypatch: pytest.MonkeyPatch,
                                                                      autocast: bool) -> None:
    _without_native_bf16(monkeypatch)
    layer, reference = _layer(True), nn.Linear(48, 80)
    reference.load_state_dict(layer.state_dict())
    if not autocast:
        layer, reference = layer.bfloat16(), reference.bfloat16()
    x = torch.randn(2, 7, 48, dtype=layer.weight.dtype, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, expected = layer(x), reference(x_reference)
    assert "BF16FallbackLinear" in type(out.grad_fn).__name__
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    for ours, theirs in [(x.grad, x_reference.grad), (layer.weight.grad, reference.weight.grad),
                         (layer.bias.grad, reference.bias.grad)]:
        assert ours is not None and theirs is not None and ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, rtol=2e-2, atol=2e-2)


def _graph(out: torch.Tensor) -> list[str]:
    return [type(out.grad_fn).__name__] + [type(f).__name__ for f, _ in out.grad_fn.next_functions if f]


def test_bf16_fallback_path_is_taken_only_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _layer(False)
    x = torch.randn(3, 48, requires_grad=True)
    for native, expected in [(False, True), (True, False)]:
        _without_native_bf16(monkeypatch, native)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert any("BF16FallbackLinear" in name for name in _graph(out)) == expected, _graph(out)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _without_native_bf16(monkeypatch)
        assert layer(x).grad_fn is None  # inference never builds the custom backward


def test_bert_mlm_decoder_reaches_the_bf16_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tied MLM decoder is a functional F.linear with the head's bias: with accel on it takes the fallback
    too, with the gradients of plain PyTorch; the state dict keeps its names."""
    _without_native_bf16(monkeypatch)
    torch.manual_seed(0)
    plain = tformer.build_model(tformer.ModelConfig.preset("bert-tiny", dropout=0.0))
    ours = tformer.build_model(plain.config)
    ours.load_state_dict(plain.state_dict())
    accel.apply(ours, enabled=True)
    assert list(ours.state_dict()) == list(plain.state_dict())
    hidden = torch.randn(2, 5, plain.config.d_model)
    results = []
    for model in (ours, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model.mlm_head(hidden)
        logits.float().square().mean().backward()
        results.append((logits, model.mlm_head.bias.grad, model.encoder.embeddings.token.weight.grad))
    assert "BF16FallbackLinear" in type(results[0][0].grad_fn).__name__
    assert "BF16FallbackLinear" not in type(results[1][0].grad_fn).__name__
    for mine, theirs in zip(results[0], results[1], strict=True):
        assert mine is not None and theirs is not None
        torch.testing.assert_close(mine.float(), theirs.float(), rtol=2e-2, atol=2e-2)
