"""The ring-buffer cache of local attention: decoding with it, token by token or in chunks of any size, gives the
uncached `local_attention` outputs; the window edge is pinned against hand-written lists (the off-by-one of
mlx-lm #390 / transformers #37574); beam-search reorder and token padding follow the rows."""

from __future__ import annotations

import pytest
import torch

from tformer.layers.attention import attention_steps
from tformer.layers.local_attention import local_attention
from tformer.layers.local_cache import LocalKVCache

ATOL = 1e-6

# b = 3, look_back = 1 (W = 6 slots), one token per step: the positions the query at p sees, by hand.
# At p = 6 the ring still holds 0..5, and 0, 1, 2 (block 0) must drop out, not one slot early or late.
SEEN_B3_BACK1 = {
    0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [0, 1, 2, 3, 4], 5: [0, 1, 2, 3, 4, 5],
    6: [3, 4, 5, 6], 7: [3, 4, 5, 6, 7], 8: [3, 4, 5, 6, 7, 8],
    9: [6, 7, 8, 9], 10: [6, 7, 8, 9, 10], 11: [6, 7, 8, 9, 10, 11], 12: [9, 10, 11, 12],
}
# b = 3, look_back = 0 (W = 3 slots).
SEEN_B3_BACK0 = {
    0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [3], 4: [3, 4], 5: [3, 4, 5], 6: [6], 7: [6, 7], 8: [6, 7, 8], 9: [9],
}
# One prefill chunk of positions 0..6 (longer than W = 6) with b = 3, look_back = 1: the new keys' part of the mask.
CHUNK_OF_7_B3_BACK1 = [
    [1, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0, 0],
    [1, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 1, 0, 0],
    [1, 1, 1, 1, 1, 1, 0],
    [0, 0, 0, 1, 1, 1, 1],
]

PREFILL_SIZES = {"1": lambda b, w: 1, "b-1": lambda b, w: b - 1, "b": lambda b, w: b, "W": lambda b, w: w,
                 "W+1": lambda b, w: w + 1, "2W+3": lambda b, w: 2 * w + 3}


def _qkv(batch: int, length: int, seed: int, heads: int = 2, head_dim: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return list(torch.randn(3, batch, heads, length, head_dim, generator=generator).unbind(0))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _decoded(cache: LocalKVCache, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: list[int],
             attention_mask: torch.Tensor | None = None, layer: int = 0) -> torch.Tensor:
    """Run q, k, v through `cache` in chunks of the given sizes (the rest one token at a time); the outputs
    (batch, heads, N, head_dim) of attention over what the cache returns."""
    length, start, outputs = q.size(-2), cache.lengths[layer], []
    sizes = [*chunks, *[1] * (length - start - sum(chunks))]
    for size in sizes:
        end = start + size
        positions = torch.arange(start, end)
        padding = None
        if attention_mask is not None:  # as a model does: the token mask over key_length(new), before the layers
            assert cache.key_length(size) == end
            padding = cache.key_padding(attention_mask[:, :end], layer).bool()[:, None, None, :]
        keys, values, mask = cache.update(layer, k[:, :, start:end], v[:, :, start:end], positions)
        assert mask.shape == (1, 1, size, cache.window + size) and keys.size(-2) == cache.window + size
        if padding is not None:
            mask = mask & padding
        outputs.append(attention_steps(q[:, :, start:end], keys, values, mask).out)
        start = end
    return torch.cat(outputs, dim=2)


def _uncached(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int, look_back: int,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    padding = None if attention_mask is None else attention_mask.bool()
    out, _ = local_attention(q, k, v, block_size=block_size, look_back=look_back, key_padding=padding,
                             return_weights=True)
    return out


def _seen_positions(look_back: int, steps: int) -> dict[int, list[int]]:
    """Decode one token at a time with b = 3; per position, the positions of the keys its mask lets it see (keys
    carry their own position as value, so a key written to the wrong slot shows up too)."""
    cache, seen = LocalKVCache(1, 3, look_back), {}
    for p in range(steps):
        key = torch.full((1, 1, 1, 1), float(p))
        held_before = cache.held[0].clone()
        keys, _, mask = cache.update(0, key, key, torch.tensor([p]))
        key_positions = torch.cat([held_before, torch.tensor([p])])
        visible = mask[0, 0, 0]
        assert keys[0, 0, visible, 0].tolist() == key_positions[visible].float().tolist()
        seen[p] = sorted(key_positions[visible].tolist())
    return seen


def test_ring_window_edge_matches_the_hand_written_lists() -> None:
    assert _seen_positions(1, 13) == SEEN_B3_BACK1
    assert _seen_positions(0, 10) == SEEN_B3_BACK0


def test_a_prefill_chunk_longer_than_the_ring_sees_its_own_keys_through_the_mask() -> None:
    cache = LocalKVCache(1, 3, 1)
    k = torch.randn(1, 1, 7, 2)
    keys, _, mask = cache.update(0, k, k, torch.arange(7))
    assert not mask[0, 0, :, :6].any()  # the ring was empty
    assert mask[0, 0, :, 6:].long().tolist() == CHUNK_OF_7_B3_BACK1
    assert torch.equal(keys[:, :, 6:], k)
    # the ring now holds the last W = 6 positions, 1..6, position p at slot p % 6
    assert cache.held[0].tolist() == [6, 1, 2, 3, 4, 5]
    assert torch.equal(cache.rings[0][0][0, 0, 0], k[0, 0, 6])


@pytest.mark.parametrize("look_back", [0, 1, 2])
def test_token_by_token_decoding_equals_uncached_local_attention(look_back: int) -> None:
    block_size = 3
    window = (look_back + 1) * block_size
    length = 4 * window + 5  # the ring wraps four times
    cache = LocalKVCache(2, block_size, look_back)
    for layer in range(2):  # each layer keeps its own ring
        q, k, v = _qkv(2, length, seed=10 * look_back + layer)
        decoded = _decoded(cache, q, k, v, [], layer=layer)
        assert _max_diff(decoded, _uncached(q, k, v, block_size, look_back)) <= ATOL
    assert cache.length == length


@pytest.mark.parametrize("look_back", [0, 1])
@pytest.mark.parametrize("prefill", list(PREFILL_SIZES))
def test_prefill_chunk_then_token_by_token_equals_uncached(prefill: str, look_back: int) -> None:
    block_size = 4
    window = (look_back + 1) * block_size
    size = PREFILL_SIZES[prefill](block_size, window)
    length = size + 3 * window + 2
    q, k, v = _qkv(2, length, seed=size)
    decoded = _decoded(LocalKVCache(1, block_size, look_back), q, k, v, [size])
    assert _max_diff(decoded, _uncached(q, k, v, block_size, look_back)) <= ATOL


@pytest.mark.parametrize("look_back", [0, 1])
def test_chunks_of_mixed_sizes_equal_uncached(look_back: int) -> None:
    block_size, chunks = 3, [2, 5, 1, 7, 13, 3, 1, 6]
    q, k, v = _qkv(2, sum(chunks), seed=7)
    decoded = _decoded(LocalKVCache(1, block_size, look_back), q, k, v, chunks)
    assert _max_diff(decoded, _uncached(q, k, v, block_size, look_back)) <= ATOL


def test_changing_a_later_token_leaves_every_earlier_cached_output_unchanged() -> None:
    block_size, look_back, length, prefill = 3, 1, 20, 9  # the prefill chunk holds positions on both sides of i
    q, k, v = _qkv(1, length, seed=8)
    before = _decoded(LocalKVCache(1, block_size, look_back), q, k, v, [prefill])
    for i in range(length - 1):
        changed = [t.clone() for t in (q, k, v)]
        for t in changed:
            t[:, :, i + 1:] = torch.randn_like(t[:, :, i + 1:]) * 5
        after = _decoded(LocalKVCache(1, block_size, look_back), *changed, [prefill])
        assert _max_diff(after[:, :, : i + 1], before[:, :, : i + 1]) <= ATOL, f"output at or before {i} changed"
        assert _max_diff(after[:, :, i + 1], before[:, :, i + 1]) > 1e-3


@pytest.mark.parametrize("look_back", [0, 1])
def test_reorder_equals_decoding_the_reordered_rows(look_back: int) -> None:
    block_size, length, split = 3, 23, 10
    q, k, v = _qkv(3, length, seed=9)
    rows = torch.tensor([2, 0, 0, 1])  # beam search: row 0 survives twice, the batch grows
    cache = LocalKVCache(1, block_size, look_back)
    _decoded(cache, q[:, :, :split], k[:, :, :split], v[:, :, :split], [4])
    cache.reorder(rows)
    continued = _decoded(cache, q[rows], k[rows], v[rows], [])
    expected = _uncached(q[rows], k[rows], v[rows], block_size, look_back)[:, :, split:]
    assert _max_diff(continued, expected) <= ATOL


def test_key_padding_marks_empty_slots_and_follows_the_held_positions() -> None:
    cache = LocalKVCache(1, 2, 1)  # W = 4
    attention_mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1]])
    assert cache.key_padding(attention_mask[:, :3]).tolist() == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1, 1]]
    k = torch.randn(2, 1, 3, 2)
    cache.update(0, k, k, torch.arange(3))
    # slots hold positions [0, 1, 2, -1]; then the new positions 3, 4
    assert cache.key_padding(attention_mask[:, :5]).tolist() == [[0, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1]]


@pytest.mark.parametrize("chunks", [[], [5], [11]])
@pytest.mark.parametrize("look_back", [0, 1])
def test_decoding_with_padded_rows_equals_uncached_with_key_padding(look_back: int, chunks: list[int]) -> None:
    block_size, length = 3, 17
    attention_mask = torch.ones(3, length, dtype=torch.long)
    attention_mask[1, :4] = 0  # left padding longer than a block: its first queries see no key at all
    attention_mask[2, 7] = 0  # a hole inside the window
    q, k, v = _qkv(3, length, seed=10)
    decoded = _decoded(LocalKVCache(1, block_size, look_back), q, k, v, chunks, attention_mask)
    assert _max_diff(decoded, _uncached(q, k, v, block_size, look_back, attention_mask)) <= ATOL


def test_cached_decoding_under_autograd_gives_the_uncached_gradients() -> None:
    block_size, look_back, length = 3, 1, 20  # the ring wraps three times while the graph is kept
    grads = []
    for cached in (True, False):
        q, k, v = (t.requires_grad_() for t in _qkv(2, length, seed=11))
        if cached:
            out = _decoded(LocalKVCache(1, block_size, look_back), q, k, v, [4])
        else:
            out = _uncached(q, k, v, block_size, look_back)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad for t in (q, k, v)])
    for cached_grad, uncached_grad in zip(*grads, strict=True):
        assert _max_diff(cached_grad, uncached_grad) <= 1e-5


@pytest.mark.parametrize(("block_size", "look_back", "named"), [(0, 1, "local_block_size=0"),
                                                                (3, -1, "local_look_back=-1")])
def test_bad_block_size_or_look_back_is_a_one_line_value_error(block_size: int, look_back: int, named: str) -> None:
    with pytest.raises(ValueError, match=named) as error:
        LocalKVCache(2, block_size, look_back)
    assert "\n" not in str(error.value)
