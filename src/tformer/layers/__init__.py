"""Building blocks: attention, positions, feed-forward, embeddings, encoder/decoder blocks, KV cache."""

from tformer.layers.attention import (
    AttentionSteps,
    MultiHeadAttention,
    attention_steps,
    causal_mask,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)
from tformer.layers.blocks import DecoderBlock, EncoderBlock
from tformer.layers.cache import DynamicKVCache, KVCache, StaticKVCache
from tformer.layers.embeddings import Embeddings
from tformer.layers.feedforward import FeedForward
from tformer.layers.positions import LearnedPositions, SinusoidalPositions, sinusoidal_table

__all__ = [
    "AttentionSteps", "DecoderBlock", "DynamicKVCache", "Embeddings", "EncoderBlock", "FeedForward", "KVCache",
    "LearnedPositions", "MultiHeadAttention", "SinusoidalPositions", "attention_steps", "causal_mask",
    "fused_attention", "padding_mask", "scaled_dot_product_attention", "sinusoidal_table", "StaticKVCache",
]
