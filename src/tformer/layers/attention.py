"""Attention: the soft key-value lookup, step by step and fused; masks; multi-head self- and cross-attention.

Mask convention everywhere: a boolean tensor where True means "this query may attend to this key",
broadcastable to (batch, heads, queries, keys). Hugging Face style 1/0 attention masks over tokens become
such masks through `padding_mask`.

`MultiHeadAttention.kind` names which keys a self-attention query sees: "full" (every earlier key, here), or the
T-DMCA's "local" and "compressed" (Liu et al. 2018), the subclasses in `layers/pattern_attention.py`. Causal
self-attention without a cache is each kind's `attend_uncached` (full attention's is here); the subclasses replace
only that. With a cache every kind attends the same way: the cache
returns the keys, values and visibility mask, and the masked path below does the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.layers.cache import KVCache


@dataclass
class AttentionSteps:
    """Every intermediate of scaled dot-product attention, each (..., queries, keys) except `out`."""

    scores: Tensor  # q @ k^T
    scaled: Tensor  # scores / sqrt(d_k)
    masked: Tensor  # scaled with forbidden keys set to -inf
    alpha: Tensor  # softmax over keys; rows with no allowed key are all zeros
    out: Tensor  # alpha @ v, shape (..., queries, d_v)


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> Tensor:
    """(q_len, k_len) mask where query i sees keys up to its own position, aligned bottom-right.

    With a KV cache there are more keys than queries: the queries are the last q_len positions, so
    query i sits at position k_len - q_len + i. (torch's `is_causal=True` aligns top-left instead.)
    """
    if q_len > k_len:
        raise ValueError(f"a causal mask needs at least as many keys as queries, got q_len={q_len} > k_len={k_len}")
    query_positions = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    key_positions = torch.arange(k_len, device=device)[None, :]
    return key_positions <= query_positions


def padding_mask(attention_mask: Tensor) -> Tensor:
    """(batch, keys) tokens with 1 = real, 0 = padding -> (batch, 1, 1, keys) boolean attention mask.

    Used both for self-attention and for cross-attention (where the keys are the encoder's tokens).
    """
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (batch, keys), got {tuple(attention_mask.shape)}; "
            "pass one row of 1 (token) / 0 (padding) per sequence"
        )
    return attention_mask.bool()[:, None, None, :]


def attention_steps(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, dropout_p: float = 0.0,
    scale: float | None = None,
) -> AttentionSteps:
    """Scaled dot-product attention written out: scores, scaled, masked, alpha = softmax, out = alpha @ v.

    q: (..., queries, d_k), k: (..., keys, d_k), v: (..., keys, d_v); mask: bool, True = may attend.
    """
    scores = q @ k.transpose(-2, -1)
    scaled = scores * (scale if scale is not None else 1.0 / math.sqrt(q.size(-1)))
    if mask is None:
        masked = scaled
        alpha = torch.softmax(scaled, dim=-1)
    else:
        masked = scaled.masked_fill(~mask, float("-inf"))
        # A query with every key masked would give softmax(all -inf) = NaN. Let such rows see every key for
        # the softmax (so neither the values nor the gradients are NaN) and zero their weights afterwards.
        empty_row = ~mask.any(dim=-1, keepdim=True)
        alpha = torch.softmax(scaled.masked_fill(~(mask | empty_row), float("-inf")), dim=-1)
        alpha = alpha.masked_fill(empty_row, 0.0)
    weights = F.dropout(alpha, p=dropout_p) if dropout_p > 0 else alpha
    return AttentionSteps(scores=scores, scaled=scaled, masked=masked, alpha=alpha, out=weights @ v)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The explicit path: returns (out (..., queries, d_v), alpha (..., queries, keys))."""
    steps = attention_steps(q, k, v, mask, dropout_p=dropout_p, scale=scale)
    return steps.out, steps.alpha


def fused_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, is_causal: bool = False,
    dropout_p: float = 0.0, scale: float | None = None,
) -> Tensor:
    """The same computation through torch's fused kernel; rows with every key masked give zeros, not NaN.

    `is_causal=True` (with no mask and as many queries as keys) lets torch pick its fastest kernels.
    """
    if is_causal:
        if mask is not None or q.size(-2) != k.size(-2):
            raise ValueError("is_causal=True is only valid with mask=None and equal query/key lengths; "
                             "pass causal_mask(q_len, k_len) combined with the other masks instead")
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    empty_row = ~mask.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty_row, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(empty_row, 0.0)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h heads of d_model/h, concatenated, then an output projection.

    Self-attention: x (batch, queries, d_model) -> (batch, queries, d_model), one fused QKV projection.
    Cross-attention (`cross=True`): queries from x, keys and values from `memory` (batch, keys, d_model).
    `layer_index` names this layer's entries in a `KVCache`. `kind` is "full" here; local and memory-compressed
    self-attention are subclasses (`layers/pattern_attention.py`).
    """

    kind = "full"

    def __init__(self, d_model: int, n_heads: int, *, cross: bool = False, bias: bool = True,
                 dropout: float = 0.0, implementation: str = "fused", layer_index: int = 0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.cross = cross
        self.dropout = dropout
        self.implementation = implementation
        self.layer_index = layer_index
        if cross:
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=bias)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _memory_keys_values(self, memory: Tensor | None) -> tuple[Tensor, Tensor]:
        if memory is None:
            raise ValueError("cross-attention needs `memory` (the encoder output) on its first call")
        k, v = (self._split_heads(t) for t in self.kv_proj(memory).chunk(2, dim=-1))
        return k, v

    def forward(
        self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None, is_causal: bool = False,
        cache: KVCache | None = None, positions: Tensor | None = None, return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns (output (batch, queries, d_model), weights (batch, heads, queries, keys) or None).

        `cache` with `positions` (queries,), the positions of the new tokens: self-attention stores its keys/values
        there and attends to what the cache returns, under the cache's mask (which holds causality) and `mask`;
        cross-attention computes the memory's keys/values on the first call and reuses them after.
        """
        if self.cross:
            q = self._split_heads(self.q_proj(x))
            if cache is None:
                k, v = self._memory_keys_values(memory)
            else:
                k, v = cache.cross(self.layer_index, lambda: self._memory_keys_values(memory))
        else:
            q, k, v = (self._split_heads(t) for t in self.qkv_proj(x).chunk(3, dim=-1))
            if cache is not None:
                if positions is None:
                    raise ValueError("attention with a cache needs `positions`, the positions of the new tokens")
                k, v, visible = cache.update(self.layer_index, k, v, positions)
                mask, is_causal = (visible if mask is None else mask & visible), False
            elif self.kind != "full" or (is_causal and is_key_padding(mask, q.size(-2))):
                # causal self-attention of this layer's kind (a full layer with a mask of another shape: below)
                out, weights = self.attend_uncached(q, k, v, key_padding_of(mask, q.size(0), q.size(-2)),
                                                    return_weights or self.implementation == "explicit")
                return self._merge_heads(out, x), (weights if return_weights else None)
        dropout_p = self.dropout if self.training else 0.0
        explicit = return_weights or self.implementation == "explicit"
        if is_causal and (explicit or mask is not None or q.size(-2) != k.size(-2)):
            causal = causal_mask(q.size(-2), k.size(-2), q.device)
            mask, is_causal = (causal if mask is None else mask & causal), False
        weights = None
        if explicit:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)
        else:
            out = fused_attention(q, k, v, mask, is_causal=is_causal, dropout_p=dropout_p)
        return self._merge_heads(out, x), (weights if return_weights else None)

    def _merge_heads(self, out: Tensor, x: Tensor) -> Tensor:
        """(batch, heads, queries, head_dim) -> the output projection of the concatenated heads."""
        return self.out_proj(out.transpose(1, 2).reshape(x.size(0), x.size(1), self.d_model))

    def attend_uncached(self, q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None, explicit: bool
                        ) -> tuple[Tensor, Tensor | None]:
        """Causal self-attention of this layer's kind over positions 0..N-1 without a cache: q, k, v (batch, heads,
        N, head_dim), key_padding (batch, N) bool or None -> (out, weights when `explicit`). Full attention: every
        key at or before the query; with no padding and no weights asked, torch's causal kernel (its fastest). The
        local and compressed kinds replace it (`layers/pattern_attention.py`)."""
        dropout_p = self.dropout if self.training else 0.0
        if key_padding is None and not explicit:
            return fused_attention(q, k, v, is_causal=True, dropout_p=dropout_p), None
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
        if key_padding is not None:
            mask = mask & key_padding.bool()[:, None, None, :]
        if explicit:
            return scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)
        return fused_attention(q, k, v, mask, dropout_p=dropout_p), None


def is_key_padding(mask: Tensor | None, length: int) -> bool:
    """True for no mask or a (batch, 1, 1, length) padding mask: the masks `attend_uncached` takes as key padding."""
    return mask is None or (mask.dim() == 4 and mask.size(1) == 1 and mask.size(2) == 1 and mask.size(-1) == length)


def key_padding_of(mask: Tensor | None, batch: int, length: int) -> Tensor | None:
    """A (batch, 1, 1, keys) padding mask as the (batch, keys) bool key padding local and compressed attention take."""
    if mask is None:
        return None
    if mask.dim() != 4 or mask.size(1) != 1 or mask.size(2) != 1 or mask.size(-1) != length:
        raise ValueError(f"local and compressed self-attention take a padding mask of shape (batch, 1, 1, {length}), "
                         f"got {tuple(mask.shape)}; pass the token mask through padding_mask")
    return mask[:, 0, 0, :].expand(batch, length)
