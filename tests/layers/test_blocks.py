"""Encoder and decoder blocks: Add & Norm placement (post-norm vs pre-norm) and decoder causality."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.layers.attention import causal_mask, padding_mask
from tformer.layers.blocks import DecoderBlock, EncoderBlock


def _config(norm: str) -> ModelConfig:
    return ModelConfig.preset("gpt2-tiny", norm=norm, dropout=0.0, attention_dropout=0.0)


def _randomized(block: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights everywhere (LayerNorm gains away from 1), so each norm placement shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in block.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.2
            parameter.copy_(noise + (1.0 if name.endswith("norm.weight") else 0.0))
    return block.eval()


def _x(length: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, length, 32, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def _attention(block: nn.Module, h: torch.Tensor, **kwargs: object) -> torch.Tensor:
    return block.self_attention(h, **kwargs)[0]


def test_post_norm_encoder_block_is_layernorm_of_x_plus_sublayer() -> None:
    block = _randomized(EncoderBlock(_config("post")))
    x = _x()
    mask = padding_mask(torch.tensor([[1] * 6, [1] * 4 + [0] * 2]))
    with torch.no_grad():
        out, _ = block(x, mask)
        h = block.self_attention_residual.norm(x + _attention(block, x, mask=mask))
        expected = block.feedforward_residual.norm(h + block.feedforward(h))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_pre_norm_encoder_block_is_x_plus_sublayer_of_layernorm() -> None:
    block = _randomized(EncoderBlock(_config("pre")))
    x = _x()
    with torch.no_grad():
        out, _ = block(x)
        h = x + _attention(block, block.self_attention_residual.norm(x))
        expected = h + block.feedforward(block.feedforward_residual.norm(h))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_norm_placement_changes_the_output() -> None:
    post = _randomized(EncoderBlock(_config("post")))
    pre = _randomized(EncoderBlock(_config("pre")))
    x = _x()
    with torch.no_grad():
        assert (post(x)[0] - pre(x)[0]).abs().max() > 1e-2
        # Post-norm ends on a LayerNorm; pre-norm keeps the residual stream un-normalised.
        post_out = post(x)[0]
        normalised = (post_out - post.feedforward_residual.norm.bias) / post.feedforward_residual.norm.weight
        torch.testing.assert_close(normalised.mean(-1), torch.zeros(2, 6), rtol=0, atol=1e-4)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_decoder_block_with_cross_attention_by_hand(norm: str) -> None:
    block = _randomized(DecoderBlock(_config(norm), cross_attention=True))
    x, memory = _x(5, 2), _x(7, 3)
    memory_mask = padding_mask(torch.tensor([[1] * 7, [1] * 3 + [0] * 4]))
    causal = causal_mask(5, 5)
    assert block.cross_attention is not None
    with torch.no_grad():
        out, self_weights, cross_weights = block(x, memory=memory, memory_mask=memory_mask)
        residuals = (block.self_attention_residual, block.cross_attention_residual, block.feedforward_residual)
        sublayers = (
            lambda h: _attention(block, h, mask=causal),
            lambda h: block.cross_attention(h, memory, mask=memory_mask)[0],
            block.feedforward,
        )
        expected = x
        for residual, sublayer in zip(residuals, sublayers, strict=True):
            assert residual is not None
            if norm == "post":
                expected = residual.norm(expected + sublayer(expected))
            else:
                expected = expected + sublayer(residual.norm(expected))
    assert self_weights is None and cross_weights is None
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_decoder_block_returns_both_attention_maps_when_asked() -> None:
    block = _randomized(DecoderBlock(_config("pre"), cross_attention=True))
    with torch.no_grad():
        _, self_weights, cross_weights = block(_x(5), memory=_x(7, 2), return_weights=True)
    assert self_weights is not None and self_weights.shape == (2, 4, 5, 5)
    assert cross_weights is not None and cross_weights.shape == (2, 4, 5, 7)
    assert torch.all(self_weights.triu(diagonal=1) == 0)


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_decoder_block_is_causal(norm: str, attention: str) -> None:
    block = _randomized(DecoderBlock(_config(norm).replace(attention=attention)))
    x = _x(6) / 3  # unit-scale inputs, so the softmax is not saturated and later positions do see position 3
    changed = x.clone()
    changed[:, 3] += torch.randn(2, 32)
    with torch.no_grad():
        out, _, _ = block(x)
        out_changed, _, _ = block(changed)
    torch.testing.assert_close(out_changed[:, :3], out[:, :3], rtol=0, atol=1e-6)
    assert (out_changed[:, 3:] - out[:, 3:]).abs().amax(dim=-1).min() > 1e-3


def test_encoder_block_is_bidirectional() -> None:
    block = _randomized(EncoderBlock(_config("pre")))
    x = _x(6)
    changed = x.clone()
    changed[:, 5] += torch.randn(2, 32)
    with torch.no_grad():
        assert (block(changed)[0][:, 0] - block(x)[0][:, 0]).abs().max() > 1e-3
