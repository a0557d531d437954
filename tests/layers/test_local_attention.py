"""Local attention (T-DMCA "L" layers): the window pinned against hand-written tables, the fast (blocked) path equal
to the explicit one, full causal attention when one block covers the sequence, and no output sees the future."""

from __future__ import annotations

import pytest
import torch

from tformer.layers.attention import causal_mask, scaled_dot_product_attention
from tformer.layers.local_attention import local_attention

# N = 7, block_size = 3: blocks {0, 1, 2}, {3, 4, 5}, {6}. Row i = query i, column j = key j, 1 = visible.
# Written by hand from the rule (j <= i, block(j) >= block(i) - look_back), not computed.
VISIBLE_N7_B3 = {
    0: [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],  # the first query of a block sees only itself
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ],
    1: [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 1, 1],  # block 2 sees block 1, not block 0
    ],
}
# The same N = 7, b = 3, look_back = 1 with key 4 padding (and query 4 still sees its window's real keys).
VISIBLE_N7_B3_BACK1_KEY4_PADDED = [
    [1, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0, 0],
    [1, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 1, 0, 1, 1],
]


def _qkv(batch: int, heads: int, length: int, head_dim: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return list(torch.randn(3, batch, heads, length, head_dim, generator=generator).unbind(0))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _visibility(length: int, block_size: int, look_back: int, key_padding: torch.Tensor | None,
                explicit: bool) -> torch.Tensor:
    """Which key each query reads, seen from the output alone: equal scores and value j = one-hot j, so output
    (i, j) = 1 / (number of keys i sees) where i sees j and 0 elsewhere."""
    q = k = torch.zeros(1, 1, length, 4)
    v = torch.eye(length)[None, None]
    out, _ = local_attention(q, k, v, block_size=block_size, look_back=look_back, key_padding=key_padding,
                             return_weights=explicit)
    return (out[0, 0] > 0).long()


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("look_back", [0, 1])
def test_visibility_of_every_query_key_pair_matches_the_hand_written_table(look_back: int, explicit: bool) -> None:
    visible = _visibility(7, 3, look_back, None, explicit)
    assert visible.tolist() == VISIBLE_N7_B3[look_back]


@pytest.mark.parametrize("explicit", [False, True])
def test_visibility_with_a_padded_key_matches_the_hand_written_table(explicit: bool) -> None:
    key_padding = torch.tensor([[True, True, True, True, False, True, True]])
    visible = _visibility(7, 3, 1, key_padding, explicit)
    assert visible.tolist() == VISIBLE_N7_B3_BACK1_KEY4_PADDED


@pytest.mark.parametrize("look_back", [0, 1])
def test_explicit_weights_are_zero_outside_the_window(look_back: int) -> None:
    q, k, v = _qkv(2, 2, 7, 4)
    _, weights = local_attention(q, k, v, block_size=3, look_back=look_back, return_weights=True)
    assert weights is not None and weights.shape == (2, 2, 7, 7)
    table = torch.tensor(VISIBLE_N7_B3[look_back], dtype=torch.bool)
    assert (weights > 0).eq(table).all()
    assert _max_diff(weights.sum(-1), torch.ones(2, 2, 7)) <= 1e-6


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("look_back", [0, 1])
@pytest.mark.parametrize("block_size", [7, 8, 20])
def test_one_block_covering_the_sequence_is_full_causal_attention(block_size: int, look_back: int,
                                                                   explicit: bool) -> None:
    q, k, v = _qkv(2, 3, 7, 5, seed=1)
    local, _ = local_attention(q, k, v, block_size=block_size, look_back=look_back, return_weights=explicit)
    full, _ = scaled_dot_product_attention(q, k, v, causal_mask(7, 7))
    assert _max_diff(local, full) <= 1e-6


def _padding(batch: int, length: int, seed: int) -> torch.Tensor:
    """Row 0 all real, row 1 left-padded by 2, the rest random: holes and (short rows) queries with no key."""
    generator = torch.Generator().manual_seed(seed)
    real = torch.rand(batch, length, generator=generator) > 0.3
    real[0] = True
    real[1] = torch.arange(length) >= 2
    return real


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("look_back", [0, 1, 2])
@pytest.mark.parametrize("block_size", [1, 3, 4, 8])
@pytest.mark.parametrize("length", [1, 2, 5, 12, 13])
def test_fast_path_equals_explicit_path(length: int, block_size: int, look_back: int, padded: bool) -> None:
    q, k, v = _qkv(3, 2, length, 6, seed=length * 100 + block_size)
    key_padding = _padding(3, length, seed=length) if padded else None
    kwargs = dict(block_size=block_size, look_back=look_back, key_padding=key_padding)
    fast, none = local_attention(q, k, v, **kwargs)
    explicit, _ = local_attention(q, k, v, **kwargs, return_weights=True)
    assert none is None and fast.shape == explicit.shape == q.shape
    assert _max_diff(fast, explicit) <= 1e-5


@pytest.mark.parametrize("look_back", [0, 1])
def test_fast_path_gradients_equal_explicit_path_gradients(look_back: int) -> None:
    grads = []
    for explicit in (False, True):
        q, k, v = (t.requires_grad_() for t in _qkv(2, 2, 11, 4, seed=3))
        out, _ = local_attention(q, k, v, block_size=4, look_back=look_back, key_padding=_padding(2, 11, seed=3),
                                 return_weights=explicit)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad for t in (q, k, v)])
    for fast_grad, explicit_grad in zip(*grads, strict=True):
        assert _max_diff(fast_grad, explicit_grad) <= 1e-5


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("look_back", [0, 1])
def test_changing_a_later_token_leaves_every_earlier_output_unchanged(look_back: int, explicit: bool) -> None:
    length, block_size = 11, 3
    q, k, v = _qkv(2, 2, length, 4, seed=4)
    before, _ = local_attention(q, k, v, block_size=block_size, look_back=look_back, return_weights=explicit)
    for i in range(length - 1):
        changed = [t.clone() for t in (q, k, v)]
        for t in changed:
            t[:, :, i + 1:] = torch.randn_like(t[:, :, i + 1:]) * 5
        after, _ = local_attention(*changed, block_size=block_size, look_back=look_back, return_weights=explicit)
        assert _max_diff(after[:, :, : i + 1], before[:, :, : i + 1]) <= 1e-6, f"output at or before {i} changed"
        assert _max_diff(after[:, :, i + 1], before[:, :, i + 1]) > 1e-3  # the change does reach position i + 1


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize(("block_size", "look_back", "named"), [(0, 1, "local_block_size=0"),
                                                                (-2, 1, "local_block_size=-2"),
                                                                (3, -1, "local_look_back=-1")])
def test_bad_block_size_or_look_back_is_a_one_line_value_error(block_size: int, look_back: int, named: str,
                                                                explicit: bool) -> None:
    q, k, v = _qkv(1, 1, 5, 4)
    with pytest.raises(ValueError, match=named) as error:
        local_attention(q, k, v, block_size=block_size, look_back=look_back, return_weights=explicit)
    assert "\n" not in str(error.value)


def test_mismatched_shapes_and_padding_are_one_line_value_errors() -> None:
    q, k, v = _qkv(2, 1, 5, 4)
    with pytest.raises(ValueError, match=r"key_padding must be \(batch, N\)") as error:
        local_attention(q, k, v, block_size=2, look_back=1, key_padding=torch.ones(2, 4, dtype=torch.bool))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="one N for all") as error:
        local_attention(q, k[:, :, :4], v, block_size=2, look_back=1)
    assert "\n" not in str(error.value)
