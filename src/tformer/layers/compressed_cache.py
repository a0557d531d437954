"""The decoding cache of memory-compressed attention: one compressed key/value slot per c tokens, added each time a
group of c tokens completes, so a decoding step attends to first + length // c keys instead of length."""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.layers.cache import CountingKVCache, KeysValues, differentiable, grown_buffer, rows_of
from tformer.layers.compressed_attention import KeyValueCompression, check_compression, compressed_key_padding
from tformer.layers.windows import compressed_visible


class CompressedKVCache(CountingKVCache):
    """The compressed layers' cache: per layer, the slots [first ; compressed] (batch, heads, first + slots,
    head_dim) and the raw keys/values of the unfinished group (batch, heads, < c, head_dim).

    `update(layer, k, v, positions)` appends the new keys/values to the unfinished group, compresses every group
    of c that completes with that layer's `KeyValueCompression`, and returns [first ; slots] with the mask
    compressed_visible(positions, slots) (1, 1, new, first + slots): the same slots and rule as the uncached
    `compressed_attention`, so cached decoding equals it. The first slot (c > 1) is position 0's key/value,
    uncompressed, so decoding works from a 1-token prompt. Like `DynamicKVCache`, the new tokens continue the
    stored ones (`positions` = length, length + 1, ...), the slots live in a buffer with room to spare that is
    written in place, and under autograd it concatenates instead.
    `compressors`: one per layer, None for the layers that are not compressed (they never call this cache).
    """

    def __init__(self, n_layers: int, compression: int, compressors: list[KeyValueCompression | None]) -> None:
        super().__init__(n_layers)
        if len(compressors) != n_layers:
            raise ValueError(f"CompressedKVCache got {len(compressors)} compressors for n_layers={n_layers}: give one "
                             "per layer (None for a layer that is not compressed)")
        for layer, compress in enumerate(compressors):
            if compress is not None and compress.compression != compression:
                raise ValueError(f"layer {layer}'s compressor has compression={compress.compression}, the cache "
                                 f"compression={compression}: build both from the same config")
        check_compression(compression)
        self.compression, self.compressors = compression, compressors
        self.first = 1 if compression > 1 else 0
        self.buffers: list[KeysValues | None] = [None] * n_layers  # [first ; slots] with room to spare
        self.filled = [0] * n_layers  # first + slots held in the buffer
        self.pending: list[KeysValues | None] = [None] * n_layers  # the unfinished group's raw keys/values
        self.length_layer = next((i for i, c in enumerate(compressors) if c is not None), 0)  # the first it keeps

    def key_padding(self, attention_mask: Tensor, layer: int = 0) -> Tensor:
        """(batch, length + new) 1/0 token mask -> (batch, first + slots after this step): the first slot is
        token 0's entry, slot j is 1 when any token of its group is real."""
        return compressed_key_padding(attention_mask, self.compression)

    def n_slots(self, layer: int) -> int:
        """Compressed slots `layer` holds (the first slot not counted)."""
        return max(self.filled[layer] - self.first, 0)

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        compress = self.compressors[layer]
        if compress is None:
            raise ValueError(f"layer {layer} has no compressor in this CompressedKVCache: give the layer's "
                             "KeyValueCompression in `compressors`, or send its update to another cache")
        new_slots = self._complete_groups(layer, keys, values, compress)
        if self.lengths[layer] == 0 and self.first:
            new_slots = (torch.cat([keys[:, :, :1], new_slots[0]], 2), torch.cat([values[:, :, :1], new_slots[1]], 2))
        self.lengths[layer] += keys.size(-2)
        keys, values = self._store(layer, *new_slots)
        visible = compressed_visible(positions, self.n_slots(layer), self.compression)
        return keys, values, visible[None, None]

    def _complete_groups(self, layer: int, keys: Tensor, values: Tensor, compress: KeyValueCompression) -> KeysValues:
        """Append to the unfinished group; compress and return the groups that complete, keep the rest pending."""
        pending = self.pending[layer]
        if pending is not None:
            keys, values = torch.cat([pending[0], keys], dim=2), torch.cat([pending[1], values], dim=2)
        complete = keys.size(2) // self.compression * self.compression
        self.pending[layer] = (keys[:, :, complete:], values[:, :, complete:])
        if complete == 0:
            empty = keys.new_zeros((*keys.shape[:2], 0, keys.size(3)))
            return empty, values.new_zeros((*values.shape[:2], 0, values.size(3)))
        return compress(keys[:, :, :complete], values[:, :, :complete])

    def _store(self, layer: int, keys: Tensor, values: Tensor) -> KeysValues:
        """Append the new slots to the layer's [first ; slots]; return all of them."""
        start, end = self.filled[layer], self.filled[layer] + keys.size(2)
        stored = self.buffers[layer]
        self.filled[layer] = end
        if start == end and stored is not None:  # no group completed: nothing to write
            return stored[0][:, :, :end], stored[1][:, :, :end]
        # Under autograd a step that completes no group still must not write into slots the backward needs.
        if differentiable(keys, values) or (stored is not None and differentiable(*stored)):
            if stored is not None:
                keys = torch.cat([stored[0][:, :, :start], keys], dim=2)
                values = torch.cat([stored[1][:, :, :start], values], dim=2)
            self.buffers[layer] = (keys, values)
            return keys, values
        if stored is None or end > stored[0].size(2):
            stored = self.buffers[layer] = (grown_buffer(stored, keys, start, end),
                                            grown_buffer(stored, values, start, end, 1))
        stored[0][:, :, start:end].copy_(keys)
        stored[1][:, :, start:end].copy_(values)
        return stored[0][:, :, :end], stored[1][:, :, :end]

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        for layer in range(self.n_layers):
            stored = self.buffers[layer]
            if stored is not None:
                filled = self.filled[layer]  # the rest of the buffer is free room
                self.buffers[layer] = rows_of((stored[0][:, :, :filled], stored[1][:, :, :filled]), rows)
            self.pending[layer] = rows_of(self.pending[layer], rows)
