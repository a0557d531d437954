"""The compressed layers' decoding cache: token by token and after prefill chunks it gives the uncached outputs of
`compressed_attention` at every position, adds a slot exactly when a group completes, follows beam search's rows
and lays the token padding over its slots."""

from __future__ import annotations

import pytest
import torch

from tformer.layers.attention import attention_steps, fused_attention
from tformer.layers.compressed_attention import KeyValueCompression, compressed_attention
from tformer.layers.compressed_cache import CompressedKVCache

from .test_compressed_attention import HEAD_DIM, HEADS, random_compression

Tensor = torch.Tensor


def _qkv(batch: int, length: int, seed: int = 0, requires_grad: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, HEADS, length, HEAD_DIM, generator=generator).requires_grad_(requires_grad)
                 for _ in range(3))


def _chunks(length: int, prefill: int) -> list[int]:
    """A prefill of `prefill` tokens, then one token at a time."""
    return [prefill] + [1] * (length - prefill)


def _decode(q: Tensor, k: Tensor, v: Tensor, cache: CompressedKVCache, chunks: list[int], *,
            attention_mask: Tensor | None = None, fused: bool = False, layer: int = 0) -> Tensor:
    """Feed the positions chunk by chunk through `cache.update` as an attention layer does; the outputs of all."""
    outputs, start = [], cache.length
    for size in chunks:
        end = start + size
        keys, values, mask = cache.update(layer, k[:, :, start:end], v[:, :, start:end], torch.arange(start, end))
        if attention_mask is not None:
            mask = mask & cache.key_padding(attention_mask[:, :end], layer).bool()[:, None, None, :]
        query = q[:, :, start:end]
        outputs.append(fused_attention(query, keys, values, mask) if fused else
                       attention_steps(query, keys, values, mask).out)
        start = end
    return torch.cat(outputs, dim=2)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("prefill", [1, 2, 3, 4, 7])
def test_cached_decoding_after_any_prefill_equals_the_uncached_outputs_at_every_position(
        prefill: int, fused: bool) -> None:
    q, k, v = _qkv(2, 11)
    compress = random_compression(3)
    attention_mask = torch.ones(2, 11, dtype=torch.long)
    attention_mask[1, :4] = 0  # left padding
    uncached, _ = compressed_attention(q, k, v, compress, key_padding=attention_mask, return_weights=True)
    with torch.no_grad():
        cached = _decode(q, k, v, CompressedKVCache(1, 3, [compress]), _chunks(11, prefill),
                         attention_mask=attention_mask, fused=fused)
    torch.testing.assert_close(cached, uncached, atol=1e-6, rtol=0)


def test_cached_decoding_under_autograd_gives_the_uncached_outputs_and_gradients() -> None:
    q, k, v = _qkv(2, 10, requires_grad=True)
    compress = random_compression(3)
    uncached, _ = compressed_attention(q, k, v, compress, return_weights=True)
    expected = torch.autograd.grad(uncached.square().sum(), [k, v, compress.keys.weight, compress.values.weight])
    cached = _decode(q, k, v, CompressedKVCache(1, 3, [compress]), _chunks(10, 2))
    torch.testing.assert_close(cached, uncached, atol=1e-6, rtol=0)
    got = torch.autograd.grad(cached.square().sum(), [k, v, compress.keys.weight, compress.values.weight])
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("compression", [1, 2, 3, 4])
def test_a_slot_is_added_exactly_when_a_group_completes(compression: int) -> None:
    q, k, v = _qkv(1, 13)
    cache = CompressedKVCache(1, compression, [random_compression(compression)])
    first = 1 if compression > 1 else 0
    with torch.no_grad():
        for p in range(13):
            keys, values, mask = cache.update(0, k[:, :, p : p + 1], v[:, :, p : p + 1], torch.tensor([p]))
            slots = (p + 1) // compression  # groups [0, c-1], [c, 2c-1], ... ended at or before p
            assert cache.n_slots(0) == slots and cache.length == p + 1
            assert keys.shape == values.shape == (1, HEADS, first + slots, HEAD_DIM)
            assert mask.shape == (1, 1, 1, first + slots) and bool(mask.all())
    assert cache.key_length(2) == 15


def test_decoding_from_a_one_token_prompt_attends_to_token_0() -> None:
    q, k, v = _qkv(1, 1)
    cache = CompressedKVCache(1, 3, [random_compression(3)])
    keys, values, mask = cache.update(0, k, v, torch.tensor([0]))
    torch.testing.assert_close(keys, k, atol=0, rtol=0)
    torch.testing.assert_close(values, v, atol=0, rtol=0)
    assert mask.tolist() == [[[[True]]]]


def test_a_prefill_chunk_attends_within_itself_only_to_groups_that_ended() -> None:
    q, k, v = _qkv(1, 7)
    cache = CompressedKVCache(1, 3, [random_compression(3)])
    _, _, mask = cache.update(0, k, v, torch.arange(7))
    assert mask[0, 0].int().tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("prefill", [7, 1])
def test_changing_a_later_token_leaves_every_earlier_cached_output_unchanged(prefill: int) -> None:
    q, k, v = _qkv(1, 9)
    compress = random_compression(3)
    with torch.no_grad():
        out = _decode(q, k, v, CompressedKVCache(1, 3, [compress]), _chunks(9, prefill))
        for i in range(8):
            changed = [t.clone() for t in (q, k, v)]
            for t in changed:
                t[:, :, i + 1 :] = torch.randn_like(t[:, :, i + 1 :])
            moved = _decode(*changed, CompressedKVCache(1, 3, [compress]), _chunks(9, prefill))
            torch.testing.assert_close(moved[:, :, : i + 1], out[:, :, : i + 1], atol=1e-6, rtol=0)


def test_reorder_moves_the_slots_and_the_unfinished_group_with_their_rows() -> None:
    q, k, v = _qkv(3, 11)
    compress = random_compression(3)
    rows = torch.tensor([2, 0, 0])
    with torch.no_grad():
        cache = CompressedKVCache(1, 3, [compress])
        before = _decode(q, k, v, cache, _chunks(5, 2))  # 5 tokens: one slot, tokens 3-4 unfinished
        cache.reorder(rows)
        after = _decode(q[rows], k[rows], v[rows], cache, [1] * 6)
    uncached, _ = compressed_attention(q[rows], k[rows], v[rows], compress)
    torch.testing.assert_close(torch.cat([before[rows], after], dim=2), uncached, atol=1e-6, rtol=0)


def test_key_padding_marks_token_0_and_every_group_with_a_real_token() -> None:
    cache = CompressedKVCache(1, 3, [random_compression(3)])
    attention_mask = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]])
    assert cache.key_padding(attention_mask).tolist() == [[0, 0, 1], [0, 1, 1]]
    assert cache.key_padding(attention_mask[:, :2], layer=0).tolist() == [[0], [0]]  # no group has ended yet


def test_layers_that_are_not_compressed_keep_nothing_and_refuse_an_update() -> None:
    q, k, v = _qkv(1, 4)
    cache = CompressedKVCache(3, 3, [None, random_compression(3), None])
    with torch.no_grad():
        _decode(q, k, v, cache, [4], layer=1)
    assert cache.length == 4 and cache.n_slots(1) == 1 and cache.n_slots(0) == 0
    with pytest.raises(ValueError, match=r"layer 2 has no compressor in this CompressedKVCache"):
        cache.update(2, k, v, torch.arange(4))


def test_decoding_steps_write_into_one_buffer_without_copying_the_past() -> None:
    q, k, v = _qkv(1, 12)
    cache = CompressedKVCache(1, 3, [random_compression(3)])
    with torch.no_grad():
        starts = {cache.update(0, k[:, :, p : p + 1], v[:, :, p : p + 1], torch.tensor([p]))[0].data_ptr()
                  for p in range(12)}
    assert len(starts) == 1


@pytest.mark.parametrize(("n_layers", "compression", "compressors", "message"), [
    (2, 3, [None], r"got 1 compressors for n_layers=2: give one per layer"),
    (1, 3, [KeyValueCompression(6, 2, 2)], r"layer 0's compressor has compression=2, the cache compression=3"),
    (1, 0, [None], r"compression=0 must be at least 1"),
])
def test_a_cache_that_does_not_fit_its_layers_is_a_one_line_error(
        n_layers: int, compression: int, compressors: list[KeyValueCompression | None], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        CompressedKVCache(n_layers, compression, compressors)
    assert "\n" not in str(info.value)
