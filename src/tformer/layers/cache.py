"""KV cache: keys and values of past positions, kept so each decoding step only computes the new token."""

from __future__ import annotations

import torch
from torch import Tensor


class LayerKVCache:
    """Keys and values of one attention layer, each (batch, heads, cached positions, head_dim).

    Self-attention appends each step's keys/values; cross-attention sets the encoder's once and reuses them.
    """

    static = False  # a StaticLayerKVCache attends over fixed slots and brings its own causal mask

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

    static = False

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


class StaticLayerKVCache(LayerKVCache):
    """Keys and values of one self-attention layer in pre-allocated buffers (batch, heads, max_length, head_dim).

    `append` writes the new positions into the slots named by the owner's `slots` tensor (no new allocation, no
    change of shape) and returns the whole buffers: attention runs over every slot, and the mask from
    `StaticKVCache.attention_mask` hides the slots not written yet. Static shapes are what torch.compile needs.
    """

    static = True

    def __init__(self, owner: StaticKVCache, keys: Tensor, values: Tensor) -> None:
        super().__init__()
        self.owner = owner
        self.keys, self.values = keys, values

    @property
    def length(self) -> int:
        return self.owner.length

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        slots = self.owner.slots
        if slots is None:
            raise RuntimeError("StaticKVCache.begin(slots) must name the slots before a layer appends to them")
        assert self.keys is not None and self.values is not None
        self.keys.index_copy_(2, slots, keys)
        self.values.index_copy_(2, slots, values)
        return self.keys, self.values

    def set(self, keys: Tensor, values: Tensor) -> None:
        raise TypeError("a StaticKVCache holds self-attention only; cross-attention keys use a KVCache")

    def reorder(self, batch_index: Tensor) -> None:
        assert self.keys is not None and self.values is not None
        self.keys.copy_(self.keys.index_select(0, batch_index))
        self.values.copy_(self.values.index_select(0, batch_index))


class StaticKVCache(KVCache):
    """A self-attention KV cache of fixed size: per layer (batch, heads, max_length, head_dim) buffers, allocated once.

    The fast path of decoder-only generation: a step writes its keys/values in place at tensor positions
    (`begin(slots)`), so every decoding step has the same shapes and no Python-side length, and a compiled step
    is compiled once. Attention reads all max_length slots through `attention_mask`, which lets query position p
    see the written slots 0..p that are not padding.
    """

    static = True

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_length: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        shape = (batch, n_heads, max_length, head_dim)
        self.self_attention = [StaticLayerKVCache(self, torch.zeros(shape, dtype=dtype, device=device),
                                                  torch.zeros(shape, dtype=dtype, device=device))
                               for _ in range(n_layers)]
        self.cross_attention = None
        self.max_length = max_length
        self.slots: Tensor | None = None  # the slots (new positions,) the current forward writes
        self.written = 0  # positions written through eager calls that named no slots (Python-side bookkeeping)

    @property
    def length(self) -> int:
        return self.written

    def begin(self, slots: Tensor) -> None:
        """Name the slots (new positions,) that the next forward writes, e.g. tensor([p]) for one decoding step."""
        self.slots = slots

    def attention_mask(self, slots: Tensor, token_mask: Tensor | None) -> Tensor:
        """(batch or 1, 1, queries, max_length) boolean mask: the query at slot p sees slots 0..p that are tokens.

        slots: (queries,) the positions being written; token_mask: (batch, max_length) 1 = token, 0 = padding, or
        None when nothing is padding.
        """
        keys = torch.arange(self.max_length, device=slots.device)
        mask = (keys[None, :] <= slots[:, None])[None, None]  # (1, 1, queries, max_length)
        if token_mask is not None:
            mask = mask & token_mask.bool()[:, None, None, :]
        return mask
