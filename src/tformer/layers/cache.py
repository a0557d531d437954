"""Decoder caches: what a decoding step keeps of the past, so each step only computes the new token.

Two levels of one contract. `DecoderCache`, what every cache answers and what generation calls:

* `cross(layer, compute) -> (keys, values)`: keys/values derived from the encoder output, computed once by
  `compute()`, then reused at every step (a Transformer's cross-attention keys and values; the RNN's projected
  encoder states U h_j and the states h_j themselves).
* `reorder(rows)`: keep the rows named (beam search: each surviving beam takes its parent's cache); the cross
  entries move along.
* `length`: decoder positions consumed so far (a Python int, for callers that name no positions).

`KVCache(DecoderCache)`, the attention layers' cache, adds, called by every attention layer with its own index:

* `update(layer, keys, values, positions) -> (keys, values, mask)`: the layer's new keys/values
  (batch, heads, new, head_dim) of the tokens at `positions` (new,), the absolute positions of the new tokens in
  the sequence (`cache_position` in transformers, `input_pos` in torchtune). The cache stores what it keeps and
  returns what the layer attends to: keys and values (batch, heads, keys, head_dim) and a boolean mask
  (1, 1, new, keys), True = this query may attend to this key, which encodes causality and which slots hold a
  token. The caller's token padding (a (batch, 1, 1, keys) mask over the same keys) is combined with it by `&`.
* `key_length(new)`: the width of the model's 1/0 `attention_mask` once `new` more tokens are stored (every cache
  but the static one: all token positions so far, length + new; the static one: its max_length).
* `key_padding(attention_mask, layer=0)`: that token mask laid out over the keys `update(layer, ...)` returns, as a
  (batch, keys) 1/0 mask (the decoder stack turns it into the (batch, 1, 1, keys) padding mask). For the dynamic
  and static caches it is the mask itself, the same for every layer, so a model of full attention computes it once
  per forward; a model whose layers differ (a T-DMCA pattern) computes one per layer, before the layers run.

Behind `KVCache`: `DynamicKVCache` (grows in place in a buffer with room to spare; keys are positions
0..length-1) and `StaticKVCache` (pre-allocated (batch, heads, max_length, head_dim) buffers written in place at
`positions`: fixed shapes and no host sync per step, which is what torch.compile needs).
Neither models nor layers know which one they hold. Every `KVCache` here but the static one is a `CountingKVCache`: it
counts each layer's stored positions, and its `length` and `key_length` are written once there.
`rows_of`, `differentiable` and `grown_buffer` are the helpers the caches share (a pair's rows for beam search;
whether autograd records through the keys, so a write must not be in place; a buffer with room to grow).
Behind `DecoderCache` directly: `RecurrentCache`, the RNN decoder's state after the tokens it has read (a recurrent
decoder keeps no keys of its own past: its state is all of it).

A new cache kind is a new subclass, nothing else changes. The T-DMCA's (Liu et al. 2018), each reading its
visibility rule from `layers/windows.py`:
* `LocalKVCache` (`layers/local_cache.py`), local attention's ring buffer of W = (look_back + 1) * block_size slots:
  position p at slot p % W, the position each slot holds in `held` ((W,), -1 when empty); `update` returns
  [the W slots before this call ; the new keys] with mask local_visible(positions, [held ; positions]), and
  `key_padding` gathers the token mask at those positions (0 for an empty slot);
* `CompressedKVCache` (`layers/compressed_cache.py`), memory-compressed attention's slots: the first slot (token 0's
  key, uncompressed), one compressed slot per finished group of c positions (the layer's own convolution), and the
  raw keys of the unfinished group; mask = compressed_visible (the group ended at or before p); `key_padding` marks a
  slot whose group holds a token;
* `PatternKVCache` (`layers/pattern_cache.py`) composes a dynamic, a local and a compressed cache and sends each
  layer's `update` and `key_padding` to the cache of that layer's kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

KeysValues = tuple[Tensor, Tensor]


class DecoderCache(ABC):
    """What every decoder cache answers (see the module docstring): the encoder-derived entries kept per layer
    (`cross`), `reorder` for beam search, and `length`."""

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.cross_keys_values: list[KeysValues | None] = [None] * n_layers

    @property
    @abstractmethod
    def length(self) -> int:
        """Positions stored so far: where the next tokens go when a caller names no positions."""

    def cross(self, layer: int, compute: Callable[[], KeysValues]) -> KeysValues:
        """Cross-attention keys and values of `layer`: `compute()` on the first call, the stored ones after."""
        stored = self.cross_keys_values[layer]
        if stored is None:
            stored = self.cross_keys_values[layer] = compute()
        return stored

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows named by `rows` (beam search: each surviving beam takes its parent's cache)."""
        self.cross_keys_values = [rows_of(kv, rows) for kv in self.cross_keys_values]


class KVCache(DecoderCache):
    """The attention layers' cache contract (see the module docstring), and the cross-attention keys every kind
    keeps alike.

    Per decoder layer: self-attention keys/values as the subclass stores them; cross-attention keys/values
    (batch, heads, source length, head_dim), set once and reused.
    """

    @abstractmethod
    def key_length(self, new: int) -> int:
        """How many keys each layer attends to once `new` more tokens are stored."""

    def key_padding(self, attention_mask: Tensor, layer: int = 0) -> Tensor:
        """A 1/0 token mask (batch, key_length) laid out over the keys `layer` attends to; the two caches here keep
        key i at position i in every layer, so it is the mask itself."""
        return attention_mask

    @abstractmethod
    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Store the new keys/values (batch, heads, new, head_dim) of the tokens at `positions` (new,); return the
        keys and values the layer attends to and the (1, 1, new, keys) mask, True = may attend."""


class RecurrentCache(DecoderCache):
    """A recurrent decoder's cache: its state after the tokens read so far, and the encoder's attention keys.

    `state`: the recurrent state as torch's GRU/LSTM lay it out, a tuple of (layers, batch, hidden) tensors (h for
    a GRU; h and c for an LSTM), None before the first token. `cross(0, ...)`: the additive attention's projected
    encoder states U h_j (batch, source, alignment) and the states h_j (batch, source, 2 * hidden), computed once.
    `write(state, new)` stores the state after `new` more tokens; `reorder` moves the state's rows too.
    """

    def __init__(self, n_layers: int = 1) -> None:
        super().__init__(n_layers)
        self.state: tuple[Tensor, ...] | None = None
        self.positions = 0

    @property
    def length(self) -> int:
        return self.positions

    def write(self, state: tuple[Tensor, ...], new: int) -> None:
        """Keep `state`, the decoder's state after reading `new` more tokens."""
        self.state, self.positions = state, self.positions + new

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        if self.state is not None:
            self.state = tuple(part.index_select(1, rows) for part in self.state)


def rows_of(keys_values: KeysValues | None, rows: Tensor) -> KeysValues | None:
    """The rows named by `rows` (batch axis 0) of a (keys, values) pair; None stays None."""
    return None if keys_values is None else (keys_values[0].index_select(0, rows), keys_values[1].index_select(0, rows))


def visible_keys(key_positions: Tensor, positions: Tensor) -> Tensor:
    """(1, 1, queries, keys) mask: the query at position p sees the keys at positions <= p."""
    return (key_positions[None, :] <= positions[:, None])[None, None]


class CountingKVCache(KVCache):
    """The KV cache of incremental decoding (notes 001) that counts what it holds: `update` takes each layer's new
    keys and values (batch, heads, new, head_dim); `lengths` is the positions each layer has stored (one int per
    layer), and its 1/0
    attention_mask spans every position so far: `length` is the count of layer `length_layer` (0 unless a subclass
    names another), `key_length(new)` is length + new. The dynamic, local, compressed and pattern caches are such;
    the static one (its mask spans max_length) is not."""

    length_layer = 0

    def __init__(self, n_layers: int) -> None:
        super().__init__(n_layers)
        self.lengths = [0] * n_layers

    @property
    def length(self) -> int:
        return self.lengths[self.length_layer] if self.lengths else 0

    def key_length(self, new: int) -> int:
        return self.length + new


class DynamicKVCache(CountingKVCache):
    """A cache that grows: per layer, keys and values (batch, heads, positions so far, head_dim).

    Key i is position i, so the new tokens continue the stored ones: `positions` must be length, length + 1, ...
    The keys live in a buffer with room for up to GROWTH more positions, so a decoding step writes its token in
    place instead of copying everything stored (`torch.cat`); `update` returns views of the filled part. Beam
    search's `reorder` gathers the rows into a second buffer kept for it, so it allocates nothing either. Under
    autograd it concatenates instead: an in-place write would change tensors the backward pass still needs.
    """

    GROWTH = 64

    def __init__(self, n_layers: int) -> None:
        super().__init__(n_layers)
        self.buffers: list[KeysValues | None] = [None] * n_layers  # (batch, heads, capacity, head_dim) each
        self.spares: list[KeysValues | None] = [None] * n_layers  # reorder's destination, swapped with buffers

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        start, end = self.lengths[layer], self.lengths[layer] + keys.size(-2)
        stored = self.buffers[layer]
        visible = visible_keys(torch.arange(end, device=keys.device), positions)
        if differentiable(keys, values):
            if stored is not None:
                keys = torch.cat([stored[0][:, :, :start], keys], dim=-2)
                values = torch.cat([stored[1][:, :, :start], values], dim=-2)
            self.buffers[layer], self.lengths[layer] = (keys, values), end
            return keys, values, visible
        if stored is None or end > stored[0].size(-2):
            stored = self.buffers[layer] = (grown_buffer(stored, keys, start, end),
                                            grown_buffer(stored, values, start, end, 1))
        stored[0][:, :, start:end].copy_(keys)
        stored[1][:, :, start:end].copy_(values)
        self.lengths[layer] = end
        return stored[0][:, :, :end], stored[1][:, :, :end], visible

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        for layer, stored in enumerate(self.buffers):
            if stored is None or differentiable(*stored):
                self.buffers[layer] = rows_of(stored, rows)
                continue
            spare = self.spares[layer]
            if spare is None or spare[0].shape[1:] != stored[0].shape[1:] or spare[0].size(0) != rows.numel():
                spare = (stored[0].new_empty((rows.numel(), *stored[0].shape[1:])),
                         stored[1].new_empty((rows.numel(), *stored[1].shape[1:])))
            filled = self.lengths[layer]  # only the filled positions move: the rest of the buffer is free room
            torch.index_select(stored[0][:, :, :filled], 0, rows, out=spare[0][:, :, :filled])
            torch.index_select(stored[1][:, :, :filled], 0, rows, out=spare[1][:, :, :filled])
            self.buffers[layer], self.spares[layer] = spare, stored


def differentiable(keys: Tensor, values: Tensor) -> bool:
    """True when autograd records through these keys/values: a cache must then concatenate, not write in place."""
    return torch.is_grad_enabled() and (keys.requires_grad or values.requires_grad)


def grown_buffer(stored: KeysValues | None, new: Tensor, start: int, end: int, which: int = 0) -> Tensor:
    """A buffer with room for `end` positions and GROWTH more, holding the first `start` positions of `stored`."""
    batch, heads, _, head_dim = new.shape
    capacity = end + DynamicKVCache.GROWTH
    buffer = new.new_empty((batch, heads, capacity, head_dim))
    if stored is not None:
        buffer[:, :, :start].copy_(stored[which][:, :, :start])
    return buffer


class StaticKVCache(KVCache):
    """A cache of fixed size: per layer (batch, heads, max_length, head_dim) key and value buffers, allocated once.

    `update` writes the new tokens at slots `positions` in place and returns the whole buffers, with the mask that
    lets the query at position p see the slots <= p that have been written (`filled`, per layer (max_length,)).
    Every step has the same shapes and reads nothing back from the device, so a compiled step is compiled once.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_length: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__(n_layers)
        shape = (batch, n_heads, max_length, head_dim)
        # One tensor per layer, not one stacked (layers, ...) tensor: a compiled step writing into a view of one big
        # buffer copies the whole buffer back at every layer (measured: gpt2 at batch 8, 83 -> 52 tokens/s).
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.filled = [torch.zeros(max_length, dtype=torch.bool, device=device) for _ in range(n_layers)]
        self.slots = torch.arange(max_length, device=device)
        self.max_length = max_length

    @property
    def length(self) -> int:
        return int(self.filled[0].sum())  # a host sync: only for callers that name no positions

    def key_length(self, new: int) -> int:
        return self.max_length

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.keys[layer].index_copy_(2, positions, keys)
        self.values[layer].index_copy_(2, positions, values)
        filled = self.filled[layer]
        filled.index_fill_(0, positions, True)
        return self.keys[layer], self.values[layer], visible_keys(self.slots, positions) & filled

    def reorder(self, rows: Tensor) -> None:
        super().reorder(rows)
        for keys, values in zip(self.keys, self.values, strict=True):
            keys.copy_(keys.index_select(0, rows))
            values.copy_(values.index_select(0, rows))
