"""Positional encodings: the paper's sinusoid table in both layouts, and learned positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tformer.config import ModelConfig
from tformer.layers.positions import LearnedPositions, SinusoidalPositions, build_positions, sinusoidal_table

N_POSITIONS, DIM = 50, 16


def _paper_table(n_positions: int, dim: int) -> np.ndarray:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), written out."""
    table = np.zeros((n_positions, dim))
    for pos in range(n_positions):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            table[pos, 2 * i] = np.sin(angle)
            table[pos, 2 * i + 1] = np.cos(angle)
    return table


def test_interleaved_table_is_the_papers_formula() -> None:
    table = sinusoidal_table(N_POSITIONS, DIM, "interleaved")
    assert table.shape == (N_POSITIONS, DIM) and table.dtype == torch.float32
    np.testing.assert_allclose(table.numpy(), _paper_table(N_POSITIONS, DIM), atol=1e-6, rtol=0)


def test_interleaved_is_the_default_layout() -> None:
    assert torch.equal(sinusoidal_table(N_POSITIONS, DIM), sinusoidal_table(N_POSITIONS, DIM, "interleaved"))


def test_halves_table_puts_every_sin_then_every_cos() -> None:
    paper = _paper_table(N_POSITIONS, DIM)
    expected = np.concatenate([paper[:, 0::2], paper[:, 1::2]], axis=1)  # [sin | cos]
    np.testing.assert_allclose(sinusoidal_table(N_POSITIONS, DIM, "halves").numpy(), expected, atol=1e-6, rtol=0)


def test_layouts_are_permutations_of_each_other() -> None:
    interleaved = sinusoidal_table(N_POSITIONS, DIM, "interleaved")
    halves = sinusoidal_table(N_POSITIONS, DIM, "halves")
    half = DIM // 2
    permutation = [i // 2 + (half if i % 2 else 0) for i in range(DIM)]  # column c of interleaved in halves
    assert sorted(permutation) == list(range(DIM))
    assert torch.equal(halves[:, permutation], interleaved)
    assert not torch.equal(halves, interleaved)


@pytest.mark.parametrize("layout", ["interleaved", "halves"])
@pytest.mark.parametrize("offset", [1, 3, 10])
def test_inner_product_depends_only_on_displacement(layout: str, offset: int) -> None:
    # The notes: "the inner product measures relative displacement": PE(p) . PE(p + k) = sum_i cos(k w_i).
    table = sinusoidal_table(200, 64, layout).double()
    products = torch.stack([table[p] @ table[p + offset] for p in (0, 7, 31, 90, 150)])
    assert torch.allclose(products, products[0].expand_as(products), atol=1e-4)
    frequencies = 1.0 / 10000 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    assert products[0].item() == pytest.approx(torch.cos(offset * frequencies).sum().item(), abs=1e-4)


def test_inner_product_shrinks_with_displacement_nearby() -> None:
    table = sinusoidal_table(100, 64)
    products = [(table[20] @ table[20 + k]).item() for k in range(4)]
    assert products == sorted(products, reverse=True)
    assert products[0] == pytest.approx(32.0, abs=1e-4)  # |PE(p)|^2 = d/2 (sin^2 + cos^2 per pair)


def test_odd_dimension_raises() -> None:
    with pytest.raises(ValueError, match="dim=7"):
        sinusoidal_table(10, 7)


def test_unknown_layout_raises() -> None:
    with pytest.raises(ValueError, match="'zigzag'"):
        sinusoidal_table(10, 8, "zigzag")


def test_sinusoidal_positions_are_a_non_persistent_buffer_without_parameters() -> None:
    module = SinusoidalPositions(N_POSITIONS, DIM, "halves")
    assert list(module.parameters()) == []
    assert "table" not in module.state_dict()
    assert dict(module.named_buffers())["table"] is module.table
    module.load_state_dict({}, strict=True)  # checkpoints carry nothing for it
    ids = torch.tensor([[0, 3, 49], [1, 1, 2]])
    out = module(ids)
    assert out.shape == (2, 3, DIM)
    assert torch.equal(out, sinusoidal_table(N_POSITIONS, DIM, "halves")[ids])


def test_learned_positions_have_a_trainable_weight() -> None:
    module = LearnedPositions(N_POSITIONS, DIM)
    assert [name for name, _ in module.named_parameters()] == ["weight"]
    assert module.weight.shape == (N_POSITIONS, DIM) and module.weight.requires_grad
    assert "weight" in module.state_dict()
    ids = torch.tensor([[0, 2, 2]])
    out = module(ids)
    assert torch.equal(out[0], module.weight[[0, 2, 2]])
    out.sum().backward()
    assert module.weight.grad is not None
    assert torch.equal(module.weight.grad[2], torch.full((DIM,), 2.0))  # position 2 was used twice
    assert torch.equal(module.weight.grad[1], torch.zeros(DIM))


def test_build_positions_follows_the_config() -> None:
    sinusoidal = build_positions(ModelConfig.preset("transformer-tiny", sinusoidal_layout="halves"))
    assert isinstance(sinusoidal, SinusoidalPositions)
    assert torch.equal(sinusoidal.table, sinusoidal_table(64, 32, "halves"))
    learned = build_positions(ModelConfig.preset("gpt2-tiny"))
    assert isinstance(learned, LearnedPositions) and learned.weight.shape == (64, 32)
