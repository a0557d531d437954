"""The T-DMCA's self-attention kinds (Liu et al. 2018) as multi-head layers: local ("L") and memory-compressed
("M"), beside full ("F", `MultiHeadAttention` itself), chosen per decoder layer by `ModelConfig.attention_pattern`.

Each is a `MultiHeadAttention` (the same QKV and output projections, the same state-dict names) that replaces only
the uncached attention: `local_attention` / `compressed_attention`, explicit when weights are asked for or
`implementation="explicit"`, else their fast paths. With a cache the layer attends as every kind does: the cache
(`PatternKVCache` routes a local layer to its ring buffer, a compressed one to its slots) returns the keys, values
and visibility mask. They live here, not in `layers/attention.py`, because the two attentions are built on that
file's primitives: one module holding both would import itself in a circle.

A compressed layer owns its `KeyValueCompression` as `compress`: the tensors `self_attention.compress.keys.weight`,
`.keys.bias`, `.values.weight`, `.values.bias` of its block (Conv1d (d_model, d_model, c) weights, (d_model,) biases).
"""

from __future__ import annotations

from torch import Tensor

from tformer.layers.attention import MultiHeadAttention
from tformer.layers.compressed_attention import KeyValueCompression, compressed_attention
from tformer.layers.local_attention import check_local_window, local_attention

ATTENTION_KINDS = ("full", "local", "compressed")


class LocalSelfAttention(MultiHeadAttention):
    """Local multi-head self-attention (the T-DMCA's "L"): x (batch, N, d_model) -> (batch, N, d_model); a query
    sees the earlier keys of its block of `block_size` and of the `look_back` blocks before it."""

    kind = "local"

    def __init__(self, d_model: int, n_heads: int, *, block_size: int, look_back: int, bias: bool = True,
                 dropout: float = 0.0, implementation: str = "fused", layer_index: int = 0) -> None:
        check_local_window(block_size, look_back)
        super().__init__(d_model, n_heads, bias=bias, dropout=dropout, implementation=implementation,
                         layer_index=layer_index)
        self.block_size, self.look_back = block_size, look_back

    def attend_uncached(self, q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None, explicit: bool
                        ) -> tuple[Tensor, Tensor | None]:
        return local_attention(q, k, v, block_size=self.block_size, look_back=self.look_back,
                               key_padding=key_padding, dropout_p=self.dropout if self.training else 0.0,
                               return_weights=explicit)


class CompressedSelfAttention(MultiHeadAttention):
    """Memory-compressed multi-head self-attention (the T-DMCA's "M"): x (batch, N, d_model) -> (batch, N, d_model);
    the keys and values are shortened to one slot per `compression` positions by `compress`, the queries are not."""

    kind = "compressed"

    def __init__(self, d_model: int, n_heads: int, *, compression: int, bias: bool = True, dropout: float = 0.0,
                 implementation: str = "fused", layer_index: int = 0) -> None:
        super().__init__(d_model, n_heads, bias=bias, dropout=dropout, implementation=implementation,
                         layer_index=layer_index)
        self.compress = KeyValueCompression(d_model, n_heads, compression)

    def attend_uncached(self, q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None, explicit: bool
                        ) -> tuple[Tensor, Tensor | None]:
        return compressed_attention(q, k, v, self.compress, key_padding=key_padding,
                                    dropout_p=self.dropout if self.training else 0.0, return_weights=explicit)


def self_attention(kind: str, d_model: int, n_heads: int, *, block_size: int = 256, look_back: int = 1,
                   compression: int = 3, bias: bool = True, dropout: float = 0.0, implementation: str = "fused",
                   layer_index: int = 0) -> MultiHeadAttention:
    """A decoder layer's self-attention of `kind` ("full", "local" or "compressed")."""
    common = dict(bias=bias, dropout=dropout, implementation=implementation, layer_index=layer_index)
    if kind == "full":
        return MultiHeadAttention(d_model, n_heads, **common)
    if kind == "local":
        return LocalSelfAttention(d_model, n_heads, block_size=block_size, look_back=look_back, **common)
    if kind == "compressed":
        return CompressedSelfAttention(d_model, n_heads, compression=compression, **common)
    raise ValueError(f"attention kind {kind!r} is not one of: {', '.join(ATTENTION_KINDS)}")
