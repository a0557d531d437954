"""KV cache: the one contract (update -> keys, values, mask at explicit positions; cross; reorder) of the dynamic and
the static cache, and decoding step by step with a cache gives the logits of the whole sequence without one."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.layers.attention import padding_mask
from tformer.layers.cache import DecoderCache, DynamicKVCache, KVCache, RecurrentCache, StaticKVCache
from tformer.models.gpt import GPT
from tformer.models.seq2seq import EncoderDecoder

ATOL = 1e-5
M = TypeVar("M", bound=nn.Module)


def _randomized(model: M, seed: int = 0, std: float = 0.1) -> M:
    """Non-trivial weights (the default init gives near-uniform logits that hide mistakes); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(noise + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


def _gpt(preset: str, attention: str) -> GPT:
    model = GPT(ModelConfig.preset(preset, attention=attention))
    return _randomized(model)


def _ids(batch: int, length: int, seed: int, low: int = 3) -> torch.Tensor:
    return torch.randint(low, 99, (batch, length), generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------- GPT


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("preset", ["gpt2-tiny", "gpt1-tiny"])
def test_gpt_cached_decoding_matches_full_sequence(preset: str, attention: str) -> None:
    model = _gpt(preset, attention)
    ids = _ids(2, 9, seed=1)
    prompt = 4
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache()
        steps = [model(ids[:, :prompt], cache=cache).logits]
        for t in range(prompt, ids.size(1)):
            out = model(ids[:, t : t + 1], cache=cache)
            assert out.cache is cache and cache.length == t + 1
            steps.append(out.logits)
    assert full.abs().max() > 1.0  # the weights are not trivially small
    assert _max_diff(torch.cat(steps, dim=1), full) <= ATOL


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("preset", ["gpt2-tiny", "gpt1-tiny"])
def test_gpt_cached_decoding_with_left_padding(preset: str, attention: str) -> None:
    model = _gpt(preset, attention)
    ids = _ids(2, 8, seed=2)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, :3] = 0  # row 1 is left-padded by 3
    ids = ids.masked_fill(attention_mask == 0, 0)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    prompt = 5
    with torch.no_grad():
        full = model(ids, attention_mask=attention_mask, position_ids=position_ids).logits
        cache = model.new_cache()
        steps = [model(ids[:, :prompt], attention_mask=attention_mask[:, :prompt],
                       position_ids=position_ids[:, :prompt], cache=cache).logits]
        for t in range(prompt, ids.size(1)):
            steps.append(model(ids[:, t : t + 1], attention_mask=attention_mask[:, : t + 1],
                               position_ids=position_ids[:, t : t + 1], cache=cache).logits)
        # The padded row's real tokens give what the same tokens give unpadded.
        unpadded = model(ids[1:, 3:]).logits
    cached = torch.cat(steps, dim=1)
    real = attention_mask.bool()
    assert _max_diff(cached[real], full[real]) <= ATOL
    assert _max_diff(full[1, 3:], unpadded[0]) <= ATOL


def test_gpt_cache_rejects_attention_mask_without_cached_positions() -> None:
    model = _gpt("gpt2-tiny", "fused")
    ids = _ids(1, 4, seed=3)
    cache = model.new_cache()
    with torch.no_grad():
        model(ids[:, :3], cache=cache)
        with pytest.raises(ValueError, match=r"\(1, 4\)"):
            model(ids[:, 3:], attention_mask=torch.ones(1, 1, dtype=torch.long), cache=cache)


# ----------------------------------------------------------------------------- encoder-decoder


def _seq2seq(attention: str) -> EncoderDecoder:
    model = EncoderDecoder(ModelConfig.preset("transformer-tiny", attention=attention))
    return _randomized(model, std=0.2)


def _source() -> tuple[torch.Tensor, torch.Tensor]:
    source = _ids(2, 7, seed=4)
    source_mask = torch.ones(2, 7, dtype=torch.long)
    source_mask[1, 4:] = 0  # row 1 is a shorter sentence, right-padded
    return source.masked_fill(source_mask == 0, 0), source_mask


@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_seq2seq_cached_decoding_matches_full_decoder(attention: str) -> None:
    model = _seq2seq(attention)
    source, source_mask = _source()
    target = torch.cat([torch.ones(2, 1, dtype=torch.long), _ids(2, 5, seed=5)], dim=1)  # starts with BOS
    with torch.no_grad():
        full = model(source, source_mask, decoder_input_ids=target).logits
        encoded = model.encode(source, source_mask)
        cache = model.new_cache()
        steps = []
        for t in range(target.size(1)):
            steps.append(model(attention_mask=source_mask, decoder_input_ids=target[:, t : t + 1],
                               encoder_outputs=encoded, cache=cache).logits)
    assert all(keys_values is not None for keys_values in cache.cross_keys_values)
    assert cache.length == target.size(1)
    assert full.abs().max() > 1.0
    assert _max_diff(torch.cat(steps, dim=1), full) <= ATOL


def test_seq2seq_source_padding_is_respected() -> None:
    # The padded source row decodes exactly as its unpadded sentence does.
    model = _seq2seq("fused")
    source, source_mask = _source()
    target = torch.cat([torch.ones(2, 1, dtype=torch.long), _ids(2, 3, seed=6)], dim=1)
    with torch.no_grad():
        padded = model(source, source_mask, decoder_input_ids=target).logits
        alone = model(source[1:, :4], decoder_input_ids=target[1:]).logits
    assert _max_diff(padded[1], alone[0]) <= ATOL


# ----------------------------------------------------------------------------- reorder


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_kv_cache_reorder_moves_every_layer_along_batch(kind: str) -> None:
    cache: KVCache = DynamicKVCache(3) if kind == "dynamic" else StaticKVCache(3, 2, 4, 5, 8)
    positions = torch.arange(5)
    written = []
    for layer in range(3):
        keys, values = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
        cache.update(layer, keys, values, positions)
        cache.cross(layer, lambda k=keys, v=values: (k + 1, v + 1))
        written.append((keys, values))
    cache.reorder(torch.tensor([1, 0]))
    for layer, (keys, values) in enumerate(written):
        stored_keys, stored_values, _ = cache.update(layer, keys[:, :, :0], values[:, :, :0], positions[:0])
        assert torch.equal(stored_keys, keys.flip(0)) and torch.equal(stored_values, values.flip(0))
        cross_keys, cross_values = cache.cross(layer, lambda: pytest.fail("the cross keys are computed once"))
        assert torch.equal(cross_keys, keys.flip(0) + 1) and torch.equal(cross_values, values.flip(0) + 1)
    assert cache.length == 5
    if kind == "dynamic":
        cache.reorder(torch.tensor([0, 0, 1]))  # beam search may duplicate a row (a static cache keeps its rows)
        keys, _, _ = cache.update(0, torch.zeros(3, 4, 0, 8), torch.zeros(3, 4, 0, 8), positions[:0])
        assert keys.shape == (3, 4, 5, 8)


def test_dynamic_cache_appends_along_positions_and_masks_causally() -> None:
    cache = DynamicKVCache(1)
    assert cache.length == 0 and cache.key_length(3) == 3
    cache.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), torch.arange(3))
    keys, values, mask = cache.update(0, torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4), torch.tensor([3, 4]))
    assert cache.length == 5 and cache.key_length(1) == 6 and keys.shape == values.shape == (1, 2, 5, 4)
    assert torch.equal(keys[:, :, 3:], torch.ones(1, 2, 2, 4)) and torch.equal(keys[:, :, :3], torch.zeros(1, 2, 3, 4))
    # The query at position 3 sees keys 0..3, the one at 4 sees all five.
    assert mask.tolist() == [[[[True, True, True, True, False], [True] * 5]]]


def test_dynamic_cache_grows_in_place_past_its_room_and_reorders_twice() -> None:
    """Past GROWTH positions the buffer is regrown with its contents; two reorders in a row use both buffers."""
    cache = DynamicKVCache(1)
    room = DynamicKVCache.GROWTH
    steps = [torch.randn(3, 2, 1, 4, generator=torch.Generator().manual_seed(t)) for t in range(room + 9)]
    reference = torch.empty(3, 2, 0, 4)
    orders = {5: torch.tensor([2, 0, 1]), 6: torch.tensor([1, 1, 0]), room + 3: torch.tensor([0, 2, 2])}
    for t, step in enumerate(steps):
        if t in orders:
            cache.reorder(orders[t])
            reference = reference[orders[t]]
        keys, values, _ = cache.update(0, step, -step, torch.tensor([t]))
        reference = torch.cat([reference, step], dim=-2)
        assert torch.equal(keys, reference) and torch.equal(values, -reference)
    assert cache.length == len(steps)


def test_dynamic_cache_under_autograd_gives_the_gradients_of_the_whole_sequence() -> None:
    """Decoding with grad enabled (in-place writes would break backward) gives the uncached gradients."""
    model = _gpt("gpt2-tiny", "fused")
    ids = _ids(2, 6, seed=9)
    model(ids).logits.square().sum().backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    cache = model.new_cache()
    logits = [model(ids[:, :3], cache=cache).logits]
    cache.reorder(torch.tensor([0, 1]))
    logits += [model(ids[:, t : t + 1], cache=cache).logits for t in range(3, 6)]
    torch.cat(logits, dim=1).square().sum().backward()
    for name, p in model.named_parameters():
        assert _max_diff(p.grad, expected[name]) <= 1e-4, name


@pytest.mark.parametrize("preset", ["gpt2-tiny", "gpt1-tiny"])
def test_gpt_reorder_then_step_equals_swapped_batch(preset: str) -> None:
    model = _gpt(preset, "fused")
    prompt, following = _ids(2, 5, seed=7), _ids(2, 2, seed=8)
    swap = torch.tensor([1, 0])
    with torch.no_grad():
        cache = model.new_cache()
        model(prompt, cache=cache)
        cache.reorder(swap)
        steps = [model(following[:, t : t + 1], cache=cache).logits for t in range(2)]
        expected = model(torch.cat([prompt[swap], following], dim=1)).logits[:, 5:]
        unswapped = model(torch.cat([prompt, following], dim=1)).logits[:, 5:]
    assert _max_diff(torch.cat(steps, dim=1), expected) <= ATOL
    assert _max_diff(expected, unswapped) > 1e-2  # the swap matters, so the test can tell


def test_seq2seq_reorder_then_step_equals_swapped_batch() -> None:
    model = _seq2seq("fused")
    source, source_mask = _source()
    target, following = torch.ones(2, 3, dtype=torch.long), _ids(2, 1, seed=9)
    target[:, 1:] = _ids(2, 2, seed=10)
    swap = torch.tensor([1, 0])
    with torch.no_grad():
        encoded = model.encode(source, source_mask)
        cache = model.new_cache()
        model(attention_mask=source_mask, decoder_input_ids=target, encoder_outputs=encoded, cache=cache)
        cache.reorder(swap)
        # Beam search reorders its own copies of the source mask and encoder states alongside the cache.
        encoded_swapped = model.encode(source[swap], source_mask[swap])
        step = model(attention_mask=source_mask[swap], decoder_input_ids=following,
                     encoder_outputs=encoded_swapped, cache=cache).logits
        expected = model(source[swap], source_mask[swap],
                         decoder_input_ids=torch.cat([target[swap], following], dim=1)).logits[:, -1:]
    assert _max_diff(step, expected) <= ATOL


# ----------------------------------------------------------------------------- static (pre-allocated) cache


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("preset", ["gpt2-tiny", "gpt1-tiny"])
def test_gpt_static_cache_matches_full_sequence_with_left_padding(preset: str, attention: str) -> None:
    """Slots written at tensor positions, attention over all slots under the cache's mask: the full logits."""
    model = _gpt(preset, attention)
    ids = _ids(2, 8, seed=2)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, :3] = 0
    ids = ids.masked_fill(attention_mask == 0, 0)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    prompt, slots = 5, 12  # more slots than tokens: the unwritten ones must stay invisible
    slot_mask = torch.cat([attention_mask, torch.ones(2, slots - 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        full = model(ids, attention_mask=attention_mask, position_ids=position_ids).logits
        cache = model.new_static_cache(2, slots)
        config = model.config
        assert len(cache.keys) == config.n_layers
        assert cache.keys[0].shape == (2, config.n_heads, slots, config.d_model // config.n_heads)
        steps = [model(ids[:, :prompt], attention_mask=slot_mask, position_ids=position_ids[:, :prompt],
                       cache=cache, cache_position=torch.arange(prompt)).logits]
        for t in range(prompt, ids.size(1)):
            steps.append(model(ids[:, t : t + 1], attention_mask=slot_mask, position_ids=position_ids[:, t : t + 1],
                               cache=cache, cache_position=torch.tensor([t])).logits)
    real = attention_mask.bool()
    assert _max_diff(torch.cat(steps, dim=1)[real], full[real]) <= ATOL


def test_gpt_static_cache_without_positions_continues_after_written() -> None:
    model = _gpt("gpt2-tiny", "fused")
    ids = _ids(1, 6, seed=1)
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_static_cache(1, 8)
        steps = [model(ids[:, :3], cache=cache).logits] + [model(ids[:, t : t + 1], cache=cache).logits
                                                           for t in range(3, 6)]
        assert cache.length == 6
        with pytest.raises(ValueError, match="position table"):
            model(torch.zeros(1, model.config.max_positions, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="outside the vocabulary"):
            model(torch.full((1, 1), 99), cache=model.new_static_cache(1, 8))
    assert _max_diff(torch.cat(steps, dim=1), full) <= ATOL


def test_cache_position_needs_a_cache() -> None:
    model = _gpt("gpt2-tiny", "fused")
    with torch.no_grad(), pytest.raises(ValueError, match="cache_position .* KV cache"):
        model(_ids(1, 2, seed=1), cache_position=torch.arange(2))


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_explicit_positions_reach_the_cache_of_every_layer(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's cache_position is what every attention layer hands to `update`, on both caches."""
    model = _gpt("gpt2-tiny", "fused")
    cache = model.new_cache() if kind == "dynamic" else model.new_static_cache(2, 8)
    seen: list[tuple[int, list[int]]] = []
    update = type(cache).update

    def spy(self: KVCache, layer: int, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor):  # noqa: ANN202
        seen.append((layer, positions.tolist()))
        return update(self, layer, keys, values, positions)

    monkeypatch.setattr(type(cache), "update", spy)
    with torch.no_grad():
        model(_ids(2, 3, seed=1), cache=cache, cache_position=torch.arange(3))
        model(_ids(2, 1, seed=2), cache=cache)  # no positions named: they continue after the stored ones
    assert seen == [(0, [0, 1, 2]), (1, [0, 1, 2]), (0, [3]), (1, [3])]


def test_static_forward_writes_exactly_the_named_slots() -> None:
    model = _gpt("gpt2-tiny", "fused")
    cache = model.new_static_cache(2, 8)
    with torch.no_grad():
        model(_ids(2, 2, seed=1), cache=cache, cache_position=torch.tensor([2, 5]))
    written = torch.stack(cache.keys).abs().sum(dim=(1, 2, 4)) > 0  # (layers, slots)
    assert written.tolist() == [[False, False, True, False, False, True, False, False]] * 2
    assert torch.stack(cache.filled).tolist() == written.tolist()


def test_static_cache_update_returns_its_buffers_and_the_step_mask() -> None:
    cache = StaticKVCache(n_layers=2, batch=2, n_heads=1, max_length=4, head_dim=2)
    assert cache.key_length(1) == 4  # every step attends over all slots: fixed shapes
    cache.update(0, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), torch.arange(2))
    keys, values, mask = cache.update(0, torch.full((2, 1, 1, 2), 3.0), torch.full((2, 1, 1, 2), 4.0),
                                      torch.tensor([2]))
    assert keys.shape == values.shape == (2, 1, 4, 2) and keys.data_ptr() == cache.keys[0].data_ptr()
    assert torch.equal(keys[:, :, 2], torch.full((2, 1, 2), 3.0)) and not keys[:, :, 3].any()
    # The query at position 2 sees the filled slots 0..2; slot 3 is neither in its past nor written.
    assert mask.tolist() == [[[[True, True, True, False]]]]
    # A layer sees only what was written to it: layer 1 holds nothing yet, so position 1 sees only itself.
    _, _, mask = cache.update(1, torch.ones(2, 1, 1, 2), torch.ones(2, 1, 1, 2), torch.tensor([1]))
    assert mask.tolist() == [[[[False, True, False, False]]]]
    token_padding = padding_mask(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    assert (token_padding & mask).tolist() == [[[[False, True, False, False]]], [[[False, True, False, False]]]]


@pytest.mark.parametrize("parts", [1, 2], ids=["gru", "lstm"])
def test_recurrent_cache_reorder_moves_the_state_and_the_encoder_keys(parts: int) -> None:
    """The RNN's cache: the state (layers, batch, hidden) and the cross entries (batch, ...) move by row."""
    cache = RecurrentCache()
    assert isinstance(cache, DecoderCache) and not isinstance(cache, KVCache) and cache.length == 0
    state = tuple(torch.arange(2 * 3 * 4, dtype=torch.float).view(2, 3, 4) + 100 * n for n in range(parts))
    keys, memory = torch.randn(3, 5, 6), torch.randn(3, 5, 8)
    cache.cross(0, lambda: (keys, memory))
    cache.write(state, new=2)
    rows = torch.tensor([2, 2, 0])
    cache.reorder(rows)
    assert cache.length == 2
    for stored, original in zip(cache.state, state, strict=True):
        assert torch.equal(stored, original[:, rows])
    moved_keys, moved_memory = cache.cross(0, lambda: pytest.fail("computed twice"))
    assert torch.equal(moved_keys, keys[rows]) and torch.equal(moved_memory, memory[rows])


def test_the_counting_caches_share_length_and_key_length() -> None:
    from tformer.layers.cache import CountingKVCache
    from tformer.layers.compressed_attention import KeyValueCompression
    from tformer.layers.compressed_cache import CompressedKVCache
    from tformer.layers.local_cache import LocalKVCache
    from tformer.layers.pattern_cache import PatternKVCache

    compress = KeyValueCompression(8, 2, 3)
    caches = {"dynamic": DynamicKVCache(2), "local": LocalKVCache(2, 4, 1),
              "compressed": CompressedKVCache(2, 3, [None, compress]),  # counts its first compressed layer, 1
              "pattern": PatternKVCache(("local", "compressed"), block_size=4, look_back=1, compression=3,
                                        compressors=[None, compress])}
    for name, cache in caches.items():
        assert isinstance(cache, CountingKVCache) and cache.length == 0 and cache.key_length(2) == 2, name
        keys = torch.randn(1, 2, 5, 4)
        cache.update(1 if name == "compressed" else 0, keys, keys, torch.arange(5))
        assert cache.length == 5 and cache.key_length(2) == 7, name
    static = StaticKVCache(1, 1, 2, 8, 4)
    assert not isinstance(static, CountingKVCache) and static.key_length(2) == 8
