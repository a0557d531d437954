"""Memory-compressed attention (the T-DMCA's M layers): which slot each query sees, pinned against a hand-written
table; compression 1 with the identity convolution is full causal attention; fast == explicit; no output depends
on a later token."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tformer.layers.attention import attention_steps, causal_mask
from tformer.layers.compressed_attention import (
    KeyValueCompression,
    compressed_attention,
    compressed_key_labels,
    compressed_key_padding,
)

HEADS, HEAD_DIM = 2, 3


def _qkv(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, length, HEAD_DIM, generator=generator) for _ in range(3))
    return q, k, v


def random_compression(compression: int, seed: int = 1) -> KeyValueCompression:
    """A compression whose convolutions mix channels and positions (the average init would hide mistakes)."""
    compress = KeyValueCompression(HEADS * HEAD_DIM, HEADS, compression)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in compress.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return compress


def test_compression_one_with_the_identity_convolution_is_full_causal_attention() -> None:
    q, k, v = _qkv(2, 7)
    compress = random_compression(1)
    compress.reset_to_group_average()  # kernel 1: the identity
    full = attention_steps(q, k, v, causal_mask(7, 7))
    out, weights = compressed_attention(q, k, v, compress, return_weights=True)
    fast, _ = compressed_attention(q, k, v, compress)
    torch.testing.assert_close(out, full.out, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, full.alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast, full.out, atol=1e-6, rtol=0)


def test_a_slot_starts_as_the_mean_of_its_group_and_a_trailing_partial_group_is_dropped() -> None:
    _, k, v = _qkv(2, 8)
    keys, values = KeyValueCompression(HEADS * HEAD_DIM, HEADS, 3)(k, v)
    assert keys.shape == values.shape == (2, HEADS, 2, HEAD_DIM)  # 8 // 3: positions 6, 7 are no slot
    torch.testing.assert_close(keys, torch.stack([k[:, :, 0:3].mean(2), k[:, :, 3:6].mean(2)], dim=2))
    torch.testing.assert_close(values, torch.stack([v[:, :, 0:3].mean(2), v[:, :, 3:6].mean(2)], dim=2))


def test_the_convolutions_mix_all_channels_of_a_group_and_no_other_group() -> None:
    _, k, v = _qkv(1, 9)
    compress = random_compression(3)
    keys, values = compress(k, v)
    changed = k.clone()
    changed[0, 1, 4, 2] += 1.0  # one channel of head 1 at position 4: slot 1 only, every head of it
    moved, same_values = compress(changed, v)
    torch.testing.assert_close(same_values, values, atol=0, rtol=0)
    torch.testing.assert_close(moved[:, :, [0, 2]], keys[:, :, [0, 2]], atol=0, rtol=0)
    assert (moved[0, :, 1] - keys[0, :, 1]).abs().min() > 0  # both heads of slot 1 moved: all d_model channels


# Query i (row) may see key slot s (column) of N = 8 tokens at compression 3: the first slot (token 0), slot 0
# (tokens 0-2, ended at 2) and slot 1 (tokens 3-5, ended at 5); tokens 6, 7 make no slot.
VISIBLE_N8_C3 = [
    [1, 0, 0],  # query 0
    [1, 0, 0],  # query 1
    [1, 1, 0],  # query 2: tokens 0-2 have all been read
    [1, 1, 0],  # query 3
    [1, 1, 0],  # query 4
    [1, 1, 1],  # query 5
    [1, 1, 1],  # query 6
    [1, 1, 1],  # query 7
]
# The same with tokens 0 and 1 padding: the first slot (token 0) is padding, slot 0 holds token 2, so it is real.
VISIBLE_N8_C3_TOKENS_0_1_PADDED = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 1, 0],
    [0, 1, 0],
    [0, 1, 0],
    [0, 1, 1],
    [0, 1, 1],
    [0, 1, 1],
]
# N = 7 at compression 2: the first slot, then slots of tokens 0-1, 2-3, 4-5; token 6 makes no slot.
VISIBLE_N7_C2 = [
    [1, 0, 0, 0],
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [1, 1, 1, 0],
    [1, 1, 1, 0],
    [1, 1, 1, 1],
    [1, 1, 1, 1],
]


@pytest.mark.parametrize(("length", "compression", "padded", "table"), [
    (8, 3, 0, VISIBLE_N8_C3), (8, 3, 2, VISIBLE_N8_C3_TOKENS_0_1_PADDED), (7, 2, 0, VISIBLE_N7_C2)])
def test_which_slot_each_query_sees_matches_the_hand_written_table(
        length: int, compression: int, padded: int, table: list[list[int]]) -> None:
    q, k, v = _qkv(1, length)
    key_padding = torch.arange(length)[None, :] >= padded
    _, weights = compressed_attention(q, k, v, random_compression(compression), key_padding=key_padding,
                                      return_weights=True)
    assert (weights[0] != 0).int().tolist() == [table] * HEADS


def test_the_output_is_attention_over_token_0_uncompressed_then_the_compressed_slots() -> None:
    q, k, v = _qkv(2, 8)
    compress = random_compression(3)
    keys, values = compress(k, v)
    by_hand = attention_steps(q, torch.cat([k[:, :, :1], keys], dim=2), torch.cat([v[:, :, :1], values], dim=2),
                              torch.tensor(VISIBLE_N8_C3, dtype=torch.bool))
    for return_weights in (True, False):
        out, _ = compressed_attention(q, k, v, compress, return_weights=return_weights)
        torch.testing.assert_close(out, by_hand.out, atol=1e-6, rtol=0)


def test_the_slot_padding_is_token_0_then_any_real_token_of_the_group() -> None:
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]])
    assert compressed_key_padding(mask, 3).tolist() == [[0, 0, 1], [1, 1, 1]]
    assert compressed_key_padding(mask, 1).tolist() == mask.tolist()  # no first slot at compression 1


@pytest.mark.parametrize("length", [9, 10, 11])
def test_the_fused_path_equals_the_explicit_path_with_padding_and_a_partial_last_group(length: int) -> None:
    q, k, v = _qkv(3, length)
    key_padding = torch.ones(3, length, dtype=torch.bool)
    key_padding[1, :4] = False  # left padding: the first slot and slot 0 are padding
    key_padding[2, :7] = False  # queries 0-5 see only padding: zeros on both paths
    compress = random_compression(3)
    explicit, _ = compressed_attention(q, k, v, compress, key_padding=key_padding, return_weights=True)
    fast, weights = compressed_attention(q, k, v, compress, key_padding=key_padding)
    assert weights is None
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=0)
    assert explicit[2, :, :6].abs().max() == 0


class _CompressedSelfAttention(nn.Module):
    """x (batch, N, d_model) -> QKV projection -> compressed attention -> (batch, heads, N, head_dim)."""

    def __init__(self, compression: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(HEADS * HEAD_DIM, 3 * HEADS * HEAD_DIM)
        self.compress = random_compression(compression)

    def forward(self, x: torch.Tensor, return_weights: bool) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (t.view(batch, length, HEADS, HEAD_DIM).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        return compressed_attention(q, k, v, self.compress, return_weights=return_weights)[0]


@pytest.mark.parametrize("return_weights", [True, False])
def test_changing_any_later_token_leaves_every_earlier_output_unchanged(return_weights: bool) -> None:
    torch.manual_seed(0)
    layer, length = _CompressedSelfAttention(3), 10
    x = torch.randn(2, length, HEADS * HEAD_DIM)
    out = layer(x, return_weights)
    for i in range(length - 1):
        changed = x.clone()
        changed[:, i + 1 :] = torch.randn(2, length - i - 1, HEADS * HEAD_DIM)
        moved = layer(changed, return_weights)
        torch.testing.assert_close(moved[:, :, : i + 1], out[:, :, : i + 1], atol=1e-6, rtol=0)


def test_both_convolutions_are_trained() -> None:
    q, k, v = _qkv(1, 9)
    compress = random_compression(3)
    out, _ = compressed_attention(q, k, v, compress)
    out.square().sum().backward()
    for conv in (compress.keys, compress.values):
        assert conv.weight.grad is not None and conv.weight.grad.abs().max() > 0


def test_a_sequence_shorter_than_the_kernel_is_a_one_line_error() -> None:
    q, k, v = _qkv(1, 2)
    message = r"N=2 tokens is shorter than the compression kernel 3: give at least 3"
    with pytest.raises(ValueError, match=message) as info:
        compressed_attention(q, k, v, random_compression(3))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("compression", [0, -3])
def test_a_compression_below_one_is_a_one_line_error(compression: int) -> None:
    with pytest.raises(ValueError, match=rf"compression={compression} must be at least 1") as info:
        KeyValueCompression(HEADS * HEAD_DIM, HEADS, compression)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=rf"compression={compression} must be at least 1"):
        compressed_key_labels(["a"], compression)


def test_keys_of_another_width_are_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"do not match this compression's d_model=6"):
        KeyValueCompression(6, 2, 3)(torch.zeros(1, 2, 6, 4), torch.zeros(1, 2, 6, 4))


def test_each_key_slot_is_named_by_the_tokens_it_summarises() -> None:
    tokens = "the cat sat on the mat today".split()
    assert compressed_key_labels(tokens, 3) == [
        "first (token 0: the)", "tokens 0–2: the cat sat", "tokens 3–5: on the mat"]
    assert compressed_key_labels(tokens, 3, with_text=False) == ["first (token 0)", "tokens 0–2", "tokens 3–5"]
    assert compressed_key_labels(tokens[:3], 1, with_text=False) == ["token 0", "token 1", "token 2"]
    assert compressed_key_labels(tokens[:2], 3) == ["first (token 0: the)"]
    pieces = ["the", " cat", " sat", " on", " the", " mat"]  # byte-level BPE: each piece carries its space
    assert compressed_key_labels(pieces, 3, separator="") == [
        "first (token 0: the)", "tokens 0–2: the cat sat", "tokens 3–5: on the mat"]
