"""The decoding cache of local attention: a ring buffer of the last W = (look_back + 1) * block_size keys.

A query at position p sees keys back to the first position of block(p) - look_back, at most W - 1 positions
before it, so the ring never needs more than the last W positions. Position p lives at slot p % W; `held` says
which position each slot holds (-1 = empty), and the mask is `local_visible(positions, held)`, the same rule as
the uncached paths (`layers/windows.py`), so the window edge is decided in one place. `update` returns
[the W slots as they were before this call ; the new keys] before it writes, so a prefill chunk longer than W
attends to its own keys through the mask, and a slot overwritten in this call is never read stale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.layers.cache import CountingKVCache, KeysValues, rows_of
from tformer.layers.local_attention import check_local_window
from tformer.layers.windows import local_visible


class LocalKVCache(CountingKVCache):
    """The ring-buffer cache of local attention (T-DMCA "L" layers): per layer, keys and values
    (batch, heads, W, head_dim) with W = (look_back + 1) * block_size, and `held` (W,), the position in each slot.

    `update(layer, keys, values, positions)` takes the new keys/values (batch, heads, new, head_dim) at consecutive
    `positions` (new,) and returns keys/values (batch, heads, W + new, head_dim) and the mask (1, 1, new, W + new).
    """

    def __init__(self, n_layers: int, block_size: int, look_back: int) -> None:
        check_local_window(block_size, look_back)
        super().__init__(n_layers)
        self.block_size, self.look_back = block_size, look_back
        self.window = (look_back + 1) * block_size
        self.rings: list[KeysValues | None] = [None] * n_layers  # (batch, heads, W, head_dim) each
        self.held = [torch.full((self.window,), -1, dtype=torch.long) for _ in range(n_layers)]

    def key_padding(self, attention_mask: Tensor, layer: int = 0) -> Tensor:
        """The 1/0 token mask (batch, positions so far + new) -> (batch, W + new), laid out like `update`'s keys:
        the token mask at each slot's held position (0 for an empty slot), then at the new positions."""
        held = self.held[layer].to(attention_mask.device)
        new = torch.arange(self.lengths[layer], attention_mask.size(1), device=attention_mask.device)
        key_positions = torch.cat([held, new])
        gathered = attention_mask.index_select(1, key_positions.clamp(min=0))
        return gathered * (key_positions >= 0).to(gathered.dtype)

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ring = self.rings[layer]
        if ring is None:
            batch, heads, _, head_dim = keys.shape
            ring = (keys.new_zeros(batch, heads, self.window, head_dim), values.new_zeros(batch, heads, self.window,
                                                                                          values.size(-1)))
        held = self.held[layer].to(positions.device)
        visible = local_visible(positions, torch.cat([held, positions]), self.block_size, self.look_back)
        all_keys, all_values = torch.cat([ring[0], keys], dim=-2), torch.cat([ring[1], values], dim=-2)
        kept = positions[-self.window:]  # a chunk longer than the ring: only its last W positions stay
        slots = kept % self.window
        # In place even under autograd: what the layer attends to (and its backward saves) is the copy made by
        # torch.cat above, and index_copy's backward keeps only the slots, so no saved tensor changes.
        ring[0].index_copy_(2, slots, keys[:, :, -self.window:])
        ring[1].index_copy_(2, slots, values[:, :, -self.window:])
        self.rings[layer], self.held[layer] = ring, held.index_copy(0, slots, kept)
        self.lengths[layer] += keys.size(-2)
        return all_keys, all_values, visible[None, None]

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        self.rings = [rows_of(ring, rows) for ring in self.rings]
