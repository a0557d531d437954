"""KV cache: keys and values of past positions, kept so each decoding step only computes the new token."""

from __future__ import annotations

import torch
from torch import Tensor


class LayerKVCache:
    """Keys and values of one attention layer, each (batch, heads, cached positions, head_dim).

    Self-attention appends each step's keys/values; cross-attention sets the encoder's once and reuses them.
    """

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    @property
    def filled(self) -> bool:
        return self.keys is not None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.size(-2)

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=-2)
            self.values = torch.cat([self.values, values], dim=-2)
        return self.keys, self.values

    def set(self, keys: Tensor, values: Tensor) -> None:
        self.keys, self.values = keys, values

    def reorder(self, batch_index: Tensor) -> None:
        if self.keys is not None and self.values is not None:
            self.keys = self.keys.index_select(0, batch_index)
            self.values = self.values.index_select(0, batch_index)


class KVCache:
    """The cache of a whole model: one `LayerKVCache` per self-attention layer, and per cross-attention layer.

    `length` is the number of positions already processed, so new positions start there.
    """

    def __init__(self, n_layers: int, cross_attention: bool = False) -> None:
        self.self_attention = [LayerKVCache() for _ in range(n_layers)]
        self.cross_attention = [LayerKVCache() for _ in range(n_layers)] if cross_attention else None

    @property
    def length(self) -> int:
        return self.self_attention[0].length if self.self_attention else 0

    def reorder(self, batch_index: Tensor) -> None:
        """Keep the rows named by `batch_index` (beam search: each surviving beam takes its parent's cache)."""
        for layer in self.self_attention + (self.cross_attention or []):
            layer.reorder(batch_index)
