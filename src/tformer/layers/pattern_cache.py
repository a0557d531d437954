"""The decoding cache of a T-DMCA stack (Liu et al. 2018): layers of different attention kinds in one model, each
kept by the cache of its kind, behind the one `KVCache` interface the layers and generation already use."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from tformer.layers.cache import CountingKVCache, DynamicKVCache, KVCache
from tformer.layers.compressed_attention import KeyValueCompression
from tformer.layers.compressed_cache import CompressedKVCache
from tformer.layers.local_cache import LocalKVCache
from tformer.layers.pattern_attention import ATTENTION_KINDS


class PatternKVCache(CountingKVCache):
    """A cache per attention kind of a layer pattern ("full", "local", "compressed" per layer, e.g. the paper's
    LMLML): a `DynamicKVCache` for the full layers, a `LocalKVCache` (ring buffer) for the local ones, a
    `CompressedKVCache` for the compressed ones, each sized for all layers and called only by its own.

    `update(layer, keys, values, positions)` and `key_padding(attention_mask, layer)` go to the cache of layer's
    kind, so a layer gets (keys, values (batch, heads, its keys, head_dim), mask (1, 1, new, its keys)) as that
    cache lays them out. `length` counts the positions layer 0 has stored, whatever its kind; `key_length(new)` is
    length + new, the width of the model's 1/0 attention_mask (all token positions, as for a dynamic cache).
    `compressors`: each layer's `KeyValueCompression` (None for a layer that is not compressed).
    """

    def __init__(self, kinds: Sequence[str], *, block_size: int, look_back: int, compression: int,
                 compressors: Sequence[KeyValueCompression | None]) -> None:
        bad = next((kind for kind in kinds if kind not in ATTENTION_KINDS), None)
        if bad is not None:
            raise ValueError(f"attention kind {bad!r} is not one of: {', '.join(ATTENTION_KINDS)}")
        if len(compressors) != len(kinds):
            raise ValueError(f"PatternKVCache got {len(compressors)} compressors for {len(kinds)} layers: give one "
                             "per layer (None for a layer that is not compressed)")
        super().__init__(len(kinds))
        self.kinds = tuple(kinds)
        n_layers = len(kinds)
        builders = {"full": lambda: DynamicKVCache(n_layers),
                    "local": lambda: LocalKVCache(n_layers, block_size, look_back),
                    "compressed": lambda: CompressedKVCache(n_layers, compression, list(compressors))}
        self.caches: dict[str, KVCache] = {kind: builders[kind]() for kind in ATTENTION_KINDS if kind in self.kinds}

    def key_padding(self, attention_mask: Tensor, layer: int = 0) -> Tensor:
        return self.caches[self.kinds[layer]].key_padding(attention_mask, layer)

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.lengths[layer] += keys.size(-2)
        return self.caches[self.kinds[layer]].update(layer, keys, values, positions)

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        for cache in self.caches.values():
            cache.reorder(rows)
