"""Scaled dot-product attention (explicit and fused), masks, and multi-head attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tformer.layers.attention import (
    MultiHeadAttention,
    attention_steps,
    causal_mask,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)
from tformer.layers.cache import DynamicKVCache

BATCH, HEADS, HEAD_DIM = 2, 3, 8


def _qkv(q_len: int, k_len: int, seed: int = 0, requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(BATCH, HEADS, q_len, HEAD_DIM), (BATCH, HEADS, k_len, HEAD_DIM), (BATCH, HEADS, k_len, HEAD_DIM)]
    return tuple(torch.randn(shape, generator=generator).requires_grad_(requires_grad) for shape in shapes)


def _key_padding(k_len: int) -> torch.Tensor:
    """(batch, keys) 1/0 mask: row 0 keeps every key, row 1 drops its last two (right padding)."""
    tokens = torch.ones(BATCH, k_len, dtype=torch.long)
    tokens[1, -2:] = 0
    return tokens


def _masks(q_len: int, k_len: int) -> dict[str, torch.Tensor | None]:
    padding = padding_mask(_key_padding(k_len))
    return {
        "none": None,
        "causal": causal_mask(q_len, k_len),
        "padding": padding,
        "causal_and_padding": causal_mask(q_len, k_len) & padding,
    }


# ----------------------------------------------------------------------------- explicit == fused


@pytest.mark.parametrize("q_len,k_len", [(5, 7), (5, 5)])
@pytest.mark.parametrize("mask_name", ["none", "causal", "padding", "causal_and_padding"])
def test_explicit_and_fused_paths_agree(q_len: int, k_len: int, mask_name: str) -> None:
    q, k, v = _qkv(q_len, k_len)
    mask = _masks(q_len, k_len)[mask_name]
    explicit, _ = scaled_dot_product_attention(q, k, v, mask)
    fused = fused_attention(q, k, v, mask)
    assert explicit.shape == (BATCH, HEADS, q_len, HEAD_DIM)
    assert (explicit - fused).abs().max().item() <= 1e-6


def test_explicit_and_fused_agree_on_cross_attention_padding() -> None:
    # Decoder queries (5) attend to a padded source (7 keys): the source's 1/0 mask becomes the key mask.
    q, k, v = _qkv(5, 7, seed=1)
    source = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]])
    mask = padding_mask(source)
    explicit, alpha = scaled_dot_product_attention(q, k, v, mask)
    fused = fused_attention(q, k, v, mask)
    assert (explicit - fused).abs().max().item() <= 1e-6
    assert torch.all(alpha[1, :, :, 3:] == 0)
    assert torch.all(alpha[0] > 0)


def test_fused_is_causal_matches_explicit_causal_mask() -> None:
    q, k, v = _qkv(6, 6, seed=2)
    explicit, _ = scaled_dot_product_attention(q, k, v, causal_mask(6, 6))
    fused = fused_attention(q, k, v, is_causal=True)
    assert (explicit - fused).abs().max().item() <= 1e-6


def test_fused_is_causal_refuses_unequal_lengths_or_extra_mask() -> None:
    q, k, v = _qkv(3, 5)
    with pytest.raises(ValueError, match="is_causal"):
        fused_attention(q, k, v, is_causal=True)
    q, k, v = _qkv(5, 5)
    with pytest.raises(ValueError, match="is_causal"):
        fused_attention(q, k, v, causal_mask(5, 5), is_causal=True)


# ----------------------------------------------------------------------------- masks


def test_causal_mask_square_is_lower_triangular() -> None:
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())


def test_causal_mask_aligns_bottom_right_with_more_keys() -> None:
    # With a KV cache the 2 new queries are positions 2 and 3 of 4: each sees every key up to itself.
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 4), expected)
    assert causal_mask(2, 4).dtype == torch.bool
    # One new query after 5 cached positions sees all 6 keys.
    assert torch.equal(causal_mask(1, 6), torch.ones(1, 6, dtype=torch.bool))


def test_causal_mask_rejects_more_queries_than_keys() -> None:
    with pytest.raises(ValueError, match="q_len=5 > k_len=3"):
        causal_mask(5, 3)


def test_padding_mask_shape_and_meaning() -> None:
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3)
    assert mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_padding_mask_rejects_3d_input_naming_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 1, 5\)"):
        padding_mask(torch.ones(2, 1, 5))


# ----------------------------------------------------------------------------- fully masked rows


def _mask_with_empty_row(q_len: int, k_len: int) -> torch.Tensor:
    """(batch, 1, q, k) mask: batch 0, query 1 may attend to nothing; everything else is causal."""
    mask = causal_mask(q_len, k_len).expand(BATCH, 1, q_len, k_len).clone()
    mask[0, 0, 1] = False
    return mask


@pytest.mark.parametrize("path", ["explicit", "fused"])
def test_fully_masked_row_gives_zeros_and_finite_gradients(path: str) -> None:
    q_len, k_len = 4, 6
    q, k, v = _qkv(q_len, k_len, seed=3, requires_grad=True)
    mask = _mask_with_empty_row(q_len, k_len)
    out = scaled_dot_product_attention(q, k, v, mask)[0] if path == "explicit" else fused_attention(q, k, v, mask)

    assert not torch.isnan(out).any()
    assert torch.equal(out[0, :, 1], torch.zeros(HEADS, HEAD_DIM))
    out.sum().backward()
    for tensor in (q, k, v):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()

    # Every other row is exactly what attention over that row alone gives.
    with torch.no_grad():
        for b in range(BATCH):
            for i in range(q_len):
                if (b, i) == (0, 1):
                    continue
                row_mask = mask[b, :, i : i + 1]  # (1, 1, keys)
                alone, _ = scaled_dot_product_attention(q[b, :, i : i + 1], k[b], v[b], row_mask)
                assert torch.allclose(out[b, :, i : i + 1], alone, atol=1e-6), (b, i)


def test_explicit_weights_are_a_distribution_over_allowed_keys() -> None:
    q_len, k_len = 4, 6
    q, k, v = _qkv(q_len, k_len, seed=4)
    mask = _mask_with_empty_row(q_len, k_len) & padding_mask(_key_padding(k_len))
    _, alpha = scaled_dot_product_attention(q, k, v, mask)
    mask = mask.expand_as(alpha)
    has_key = mask.any(dim=-1)
    sums = alpha.sum(dim=-1)
    assert torch.allclose(sums[has_key], torch.ones_like(sums[has_key]), atol=1e-6)
    assert torch.equal(sums[~has_key], torch.zeros_like(sums[~has_key]))
    assert torch.all(alpha[~mask] == 0)
    assert torch.all(alpha[mask] > 0)


# ----------------------------------------------------------------------------- the paper's equation


def test_attention_steps_follow_the_paper() -> None:
    q, k, v = _qkv(5, 7, seed=5)
    mask = causal_mask(5, 7) & padding_mask(_key_padding(7))
    steps = attention_steps(q, k, v, mask)
    assert torch.allclose(steps.scores, q @ k.transpose(-2, -1), atol=1e-6)
    assert torch.allclose(steps.scaled, steps.scores / math.sqrt(HEAD_DIM), atol=1e-6)
    assert torch.all(steps.masked[~mask.expand_as(steps.masked)] == float("-inf"))
    assert torch.allclose(steps.alpha, torch.softmax(steps.masked, dim=-1), atol=1e-6)
    assert torch.allclose(steps.out, steps.alpha @ v, atol=1e-6)
    out, alpha = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out, steps.out) and torch.equal(alpha, steps.alpha)


def test_attention_steps_hand_computed_example() -> None:
    # 2 queries, 3 keys, d_k = 4, so the scale is 1/sqrt(4) = 1/2.
    q = [[1, 0, 1, 0], [0, 2, 0, 0]]
    k = [[1, 1, 0, 0], [0, 0, 1, 1], [2, 0, 0, 0]]
    v = [[1, 2], [3, 4], [5, 6]]
    scores = [[1, 1, 2], [2, 0, 0]]  # q_i . k_j by hand
    scaled = [[0.5, 0.5, 1.0], [1.0, 0.0, 0.0]]
    e = math.e
    alpha = [
        [1 / (2 + math.sqrt(e)), 1 / (2 + math.sqrt(e)), math.sqrt(e) / (2 + math.sqrt(e))],
        [e / (e + 2), 1 / (e + 2), 1 / (e + 2)],
    ]
    out = [[sum(alpha[i][j] * v[j][c] for j in range(3)) for c in range(2)] for i in range(2)]

    steps = attention_steps(*(torch.tensor(t, dtype=torch.float32) for t in (q, k, v)))
    np.testing.assert_allclose(steps.scores.numpy(), scores, atol=0)
    np.testing.assert_allclose(steps.scaled.numpy(), scaled, atol=1e-7)
    np.testing.assert_allclose(steps.alpha.numpy(), alpha, atol=1e-6)
    np.testing.assert_allclose(steps.out.numpy(), out, atol=1e-5)


def test_attention_steps_on_the_notes_worked_example() -> None:
    # The lecture notes' example ("die Katze" attending to "the cat danced"). Their scores match; their
    # "scaled" divides by 3 and their pseudo-code applies softmax to the unscaled scores. The paper divides
    # by sqrt(d_k) = sqrt(2) and applies softmax to the scaled scores: the paper wins.
    q = np.array([[-1.0, -2.5], [4.0, 3.0]])
    k = np.array([[-2.0, -4.0], [-2.5, -0.5], [4.5, 2.5]])
    v = np.array([[-2.0, -4.0], [-2.5, -0.5], [4.5, 2.5]])
    steps = attention_steps(*(torch.tensor(t, dtype=torch.float32) for t in (q, k, v)))
    np.testing.assert_allclose(steps.scores.numpy(), [[12.0, 3.75, -10.75], [-20.0, -11.5, 25.5]], atol=1e-6)
    scaled = q @ k.T / np.sqrt(2.0)
    exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    alpha = exp / exp.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(steps.scaled.numpy(), scaled, atol=1e-5)
    np.testing.assert_allclose(steps.alpha.numpy(), alpha, atol=1e-6)
    np.testing.assert_allclose(steps.out.numpy(), alpha @ v, atol=1e-5)


# ----------------------------------------------------------------------------- multi-head attention

D_MODEL, N_HEADS = 16, 4


def _pair(cross: bool = False) -> tuple[MultiHeadAttention, MultiHeadAttention]:
    torch.manual_seed(0)
    fused = MultiHeadAttention(D_MODEL, N_HEADS, cross=cross, implementation="fused").eval()
    explicit = MultiHeadAttention(D_MODEL, N_HEADS, cross=cross, implementation="explicit").eval()
    explicit.load_state_dict(fused.state_dict())
    return fused, explicit


def _x(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, length, D_MODEL, generator=torch.Generator().manual_seed(seed))


def test_mha_output_and_weight_shapes() -> None:
    attention, _ = _pair()
    x = _x(2, 5, 0)
    out, weights = attention(x)
    assert out.shape == (2, 5, D_MODEL) and weights is None
    out, weights = attention(x, return_weights=True)
    assert out.shape == (2, 5, D_MODEL)
    assert weights is not None and weights.shape == (2, N_HEADS, 5, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, N_HEADS, 5), atol=1e-6)


def test_mha_rejects_d_model_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match="d_model=10.*n_heads=4"):
        MultiHeadAttention(10, 4)


@pytest.mark.parametrize("is_causal", [False, True])
def test_mha_fused_and_explicit_give_the_same_output(is_causal: bool) -> None:
    fused, explicit = _pair()
    x = _x(2, 6, 1)
    mask = padding_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]))
    out_fused, _ = fused(x, mask=mask, is_causal=is_causal)
    out_explicit, _ = explicit(x, mask=mask, is_causal=is_causal)
    assert (out_fused - out_explicit).abs().max().item() <= 1e-6
    # Asking the fused module for weights gives the same output too (it switches to the explicit path).
    out_weights, weights = fused(x, mask=mask, is_causal=is_causal, return_weights=True)
    assert (out_fused - out_weights).abs().max().item() <= 1e-6
    assert weights is not None
    if is_causal:
        assert torch.all(weights.triu(diagonal=1) == 0)


def test_mha_cross_attention_uses_memory_length_for_keys() -> None:
    fused, explicit = _pair(cross=True)
    x, memory = _x(2, 3, 2), _x(2, 7, 3)
    mask = padding_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3]))
    out, weights = fused(x, memory, mask=mask, return_weights=True)
    assert out.shape == (2, 3, D_MODEL)
    assert weights is not None and weights.shape == (2, N_HEADS, 3, 7)
    assert torch.all(weights[1, :, :, 4:] == 0)
    out_explicit, _ = explicit(x, memory, mask=mask)
    out_fused, _ = fused(x, memory, mask=mask)
    assert (out_fused - out_explicit).abs().max().item() <= 1e-6
    assert (out - out_fused).abs().max().item() <= 1e-6


def test_mha_cross_attention_without_memory_raises() -> None:
    attention, _ = _pair(cross=True)
    with pytest.raises(ValueError, match="memory"):
        attention(_x(1, 2, 0))


@pytest.mark.parametrize("implementation", ["fused", "explicit"])
def test_mha_kv_cache_one_token_at_a_time_matches_whole_sequence(implementation: str) -> None:
    fused, explicit = _pair()
    attention = fused if implementation == "fused" else explicit
    x = _x(2, 6, 4)
    with torch.no_grad():
        full, _ = attention(x, is_causal=True)
        cache = DynamicKVCache(1)
        steps = [attention(x[:, t : t + 1], is_causal=True, cache=cache, positions=torch.tensor([t]))[0]
                 for t in range(6)]
    assert cache.length == 6
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-6


def test_mha_kv_cache_prompt_then_tokens_matches_whole_sequence() -> None:
    attention, _ = _pair()
    x = _x(2, 7, 5)
    with torch.no_grad():
        full, _ = attention(x, is_causal=True)
        cache = DynamicKVCache(1)
        outs = [attention(x[:, :4], is_causal=True, cache=cache, positions=torch.arange(4))[0]]
        outs += [attention(x[:, t : t + 1], is_causal=True, cache=cache, positions=torch.tensor([t]))[0]
                 for t in range(4, 7)]
    assert (torch.cat(outs, dim=1) - full).abs().max().item() <= 1e-6


def test_mha_cross_attention_cache_computes_keys_once() -> None:
    attention, _ = _pair(cross=True)
    x, memory = _x(2, 1, 6), _x(2, 5, 7)
    cache = DynamicKVCache(1)
    with torch.no_grad():
        first, _ = attention(x, memory, cache=cache)
        stored = cache.cross_keys_values[0]
        assert stored is not None and stored[0].shape == (2, N_HEADS, 5, D_MODEL // N_HEADS)
        second, _ = attention(x, None, cache=cache)
        # A different memory is ignored once the cache is filled: the keys/values are not recomputed.
        third, _ = attention(x, memory * 10, cache=cache)
    assert cache.cross_keys_values[0] is stored
    assert torch.equal(first, second) and torch.equal(first, third)


def test_full_attention_has_its_own_uncached_causal_attention_and_forward_uses_it() -> None:
    attention = MultiHeadAttention(HEADS * HEAD_DIM, HEADS).eval()
    q, k, v = _qkv(6, 6, seed=5)
    padding = torch.tensor([[True] * 6, [False, False, True, True, True, True]])  # row 1: left padding
    out, weights = attention.attend_uncached(q, k, v, padding, explicit=True)
    expected_out, expected_weights = scaled_dot_product_attention(q, k, v, causal_mask(6, 6) & padding[:, None, None])
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(weights, expected_weights)
    assert torch.all(weights.triu(1) == 0) and torch.all(weights[1, :, :, :2] == 0)
    fast, no_weights = attention.attend_uncached(q, k, v, padding, explicit=False)
    torch.testing.assert_close(fast, out, atol=1e-5, rtol=1e-5)
    assert no_weights is None
    unpadded, _ = attention.attend_uncached(q, k, v, None, explicit=False)
    torch.testing.assert_close(unpadded, attention.attend_uncached(q, k, v, None, explicit=True)[0], atol=1e-5,
                               rtol=1e-5)
    calls = []
    original = attention.attend_uncached
    attention.attend_uncached = lambda *args: (calls.append(args[3]), original(*args))[1]
    x = torch.randn(BATCH, 6, HEADS * HEAD_DIM)
    attention(x, is_causal=True)
    attention(x, mask=padding_mask(padding.long()), is_causal=True)
    attention(x)  # not causal (an encoder): the general path
    attention(x, mask=causal_mask(6, 6)[None, None], is_causal=True)  # a mask that is no key padding: general path
    assert len(calls) == 2 and calls[0] is None and torch.equal(calls[1], padding)
