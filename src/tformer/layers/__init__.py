"""Building blocks: attention (scaled dot-product, additive; the T-DMCA's local and memory-compressed), positions,
feed-forward, embeddings, encoder/decoder blocks, the decoder caches."""

from tformer.layers.additive_attention import AdditiveAttention
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
from tformer.layers.cache import DecoderCache, DynamicKVCache, KVCache, RecurrentCache, StaticKVCache
from tformer.layers.compressed_attention import KeyValueCompression, compressed_attention, compressed_key_labels
from tformer.layers.compressed_cache import CompressedKVCache
from tformer.layers.embeddings import Embeddings
from tformer.layers.feedforward import FeedForward
from tformer.layers.local_attention import blocked_local_attention, local_attention
from tformer.layers.local_cache import LocalKVCache
from tformer.layers.pattern_attention import CompressedSelfAttention, LocalSelfAttention, self_attention
from tformer.layers.pattern_cache import PatternKVCache
from tformer.layers.positions import LearnedPositions, SinusoidalPositions, sinusoidal_table

__all__ = [
    "AdditiveAttention", "AttentionSteps", "DecoderBlock", "DecoderCache", "DynamicKVCache", "Embeddings",
    "EncoderBlock", "FeedForward", "KVCache", "RecurrentCache",
    "LearnedPositions", "MultiHeadAttention", "SinusoidalPositions", "attention_steps", "causal_mask",
    "fused_attention", "padding_mask", "scaled_dot_product_attention", "sinusoidal_table", "StaticKVCache",
    "LocalKVCache", "blocked_local_attention", "local_attention",
    "CompressedKVCache", "KeyValueCompression", "compressed_attention", "compressed_key_labels",
    "CompressedSelfAttention", "LocalSelfAttention", "PatternKVCache", "self_attention",
]
