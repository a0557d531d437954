"""Encoder and decoder blocks: attention and feed-forward sublayers, each wrapped in Add & Norm.

Post-norm (the paper, BERT, GPT-1):  x = LayerNorm(x + Sublayer(x))
Pre-norm (GPT-2):                    x = x + Sublayer(LayerNorm(x))
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.attention import MultiHeadAttention
from tformer.layers.cache import KVCache
from tformer.layers.feedforward import FeedForward
from tformer.layers.pattern_attention import self_attention


def layer_norm(config: ModelConfig) -> nn.LayerNorm:
    """A LayerNorm over d_model; like nanoGPT, `bias=False` drops its additive bias along with the projections'."""
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)


class _Residual(nn.Module):
    """Add & Norm around one sublayer, placed before (pre-norm) or after (post-norm) the residual sum."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.norm = layer_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]]
                ) -> tuple[Tensor, Tensor | None]:
        if self.pre_norm:
            out, weights = sublayer(self.norm(x))
            return x + self.dropout(out), weights
        out, weights = sublayer(x)
        return self.norm(x + self.dropout(out)), weights


def _attention(config: ModelConfig, cross: bool = False, layer_index: int = 0) -> MultiHeadAttention:
    return MultiHeadAttention(config.d_model, config.n_heads, cross=cross, bias=config.bias,
                              dropout=config.attention_dropout, implementation=config.attention,
                              layer_index=layer_index)


def _decoder_self_attention(config: ModelConfig, layer_index: int) -> MultiHeadAttention:
    """The self-attention of decoder layer `layer_index`, of the kind its letter in `attention_pattern` names."""
    return self_attention(config.attention_kinds[layer_index], config.d_model, config.n_heads,
                          block_size=config.local_block_size, look_back=config.local_look_back,
                          compression=config.compression, bias=config.bias, dropout=config.attention_dropout,
                          implementation=config.attention, layer_index=layer_index)


def _feedforward(config: ModelConfig) -> FeedForward:
    return FeedForward(config.d_model, config.ffn_dim, config.activation, bias=config.bias,
                       activation_dropout=config.activation_dropout)


class EncoderBlock(nn.Module):
    """Encoder layer: self-attention over all positions, then the FFN. (batch, len, d) -> (batch, len, d)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention = _attention(config)
        self.self_attention_residual = _Residual(config)
        self.feedforward = _feedforward(config)
        self.feedforward_residual = _Residual(config)

    def forward(self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        x, weights = self.self_attention_residual(
            x, lambda h: self.self_attention(h, mask=mask, return_weights=return_weights))
        x, _ = self.feedforward_residual(x, lambda h: (self.feedforward(h), None))
        return x, weights


class DecoderBlock(nn.Module):
    """Decoder layer: masked self-attention, cross-attention to the encoder (encoder-decoder only), then FFN.

    x (batch, len, d), memory (batch, source len, d) -> (batch, len, d). GPT uses it without cross-attention.
    `layer_index` is the block's place in its stack, which names its entries in a `KVCache` and its letter in
    `config.attention_pattern` (full, local or memory-compressed self-attention).
    """

    def __init__(self, config: ModelConfig, cross_attention: bool = False, layer_index: int = 0) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.self_attention = _decoder_self_attention(config, layer_index)
        self.self_attention_residual = _Residual(config)
        self.cross_attention = _attention(config, cross=True, layer_index=layer_index) if cross_attention else None
        self.cross_attention_residual = _Residual(config) if cross_attention else None
        self.feedforward = _feedforward(config)
        self.feedforward_residual = _Residual(config)

    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, memory: Tensor | None = None,
        memory_mask: Tensor | None = None, cache: KVCache | None = None, positions: Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns (x, self-attention weights or None, cross-attention weights or None).

        `cache` and `positions` (len,): the KV cache and the positions of the new tokens, see `MultiHeadAttention`.
        """
        x, self_weights = self.self_attention_residual(
            x, lambda h: self.self_attention(h, mask=mask, is_causal=True, cache=cache, positions=positions,
                                             return_weights=return_weights))
        cross_weights = None
        if self.cross_attention is not None and self.cross_attention_residual is not None:
            cross_attention = self.cross_attention
            x, cross_weights = self.cross_attention_residual(
                x, lambda h: cross_attention(h, memory, mask=memory_mask, cache=cache,
                                             return_weights=return_weights))
        x, _ = self.feedforward_residual(x, lambda h: (self.feedforward(h), None))
        return x, self_weights, cross_weights
