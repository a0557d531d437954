"""KV cache: decoding step by step with a cache gives the logits of the whole sequence without one."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
from torch import nn

from tformer.config import ModelConfig
from tformer.layers.cache import KVCache, LayerKVCache, StaticKVCache
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
    assert cache.cross_attention is not None and all(layer.filled for layer in cache.cross_attention)
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


def test_kv_cache_reorder_moves_every_layer_along_batch() -> None:
    cache = KVCache(n_layers=3, cross_attention=True)
    assert cache.cross_attention is not None
    for layer in cache.self_attention + cache.cross_attention:
        layer.set(torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8))
    before = [(layer.keys, layer.values) for layer in cache.self_attention + cache.cross_attention]
    cache.reorder(torch.tensor([1, 0]))
    for (keys, values), layer in zip(before, cache.self_attention + cache.cross_attention, strict=True):
        assert layer.keys is not None and layer.values is not None
        assert torch.equal(layer.keys, keys.flip(0)) and torch.equal(layer.values, values.flip(0))
    cache.reorder(torch.tensor([0, 0, 1]))  # beam search may duplicate a row
    assert cache.length == 5 and cache.self_attention[0].keys is not None
    assert cache.self_attention[0].keys.shape == (3, 4, 5, 8)


def test_layer_cache_append_grows_along_positions() -> None:
    layer = LayerKVCache()
    assert not layer.filled and layer.length == 0
    layer.reorder(torch.tensor([0]))  # an empty cache has nothing to reorder
    keys, values = layer.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    keys, values = layer.append(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    assert layer.length == 4 and keys.shape == values.shape == (1, 2, 4, 4)
    assert torch.equal(keys[:, :, 3], torch.ones(1, 2, 4)) and torch.equal(keys[:, :, :3], torch.zeros(1, 2, 3, 4))


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
        assert isinstance(cache, StaticKVCache) and cache.self_attention[0].keys is not None
        config = model.config
        assert cache.self_attention[0].keys.shape == (2, config.n_heads, slots, config.d_model // config.n_heads)
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


def test_cache_position_needs_a_static_cache() -> None:
    model = _gpt("gpt2-tiny", "fused")
    with torch.no_grad(), pytest.raises(ValueError, match="StaticKVCache"):
        model(_ids(1, 2, seed=1), cache=model.new_cache(), cache_position=torch.arange(2))


def test_static_cache_reorder_and_cross_attention() -> None:
    cache = StaticKVCache(n_layers=2, batch=2, n_heads=1, max_length=3, head_dim=2)
    layer = cache.self_attention[0]
    cache.begin(torch.tensor([1]))
    keys, values = layer.append(torch.ones(2, 1, 1, 2), torch.full((2, 1, 1, 2), 2.0))
    assert keys.shape == (2, 1, 3, 2) and keys is layer.keys  # written in place, nothing grows
    assert torch.equal(keys[:, :, 1], torch.ones(2, 1, 2)) and not keys[:, :, [0, 2]].any()
    layer.keys[1] += 5
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(layer.keys[0], layer.keys[1]) and layer.keys[0, 0, 1, 0] == 6
    with pytest.raises(TypeError, match="cross-attention"):
        layer.set(keys, values)
    mask = cache.attention_mask(torch.tensor([1]), torch.tensor([[0, 1, 1], [1, 1, 1]]))
    assert mask.tolist() == [[[[False, True, False]]], [[[True, True, False]]]]
