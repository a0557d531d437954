"""`tformer.layers` exports the T-DMCA's layers and cache beside the others (issue 17)."""

from __future__ import annotations

import tformer.layers as layers
from tformer.layers import pattern_attention, pattern_cache


def test_the_t_dmca_attention_layers_and_their_cache_are_exported() -> None:
    exported = {"PatternKVCache": pattern_cache.PatternKVCache,
                "LocalSelfAttention": pattern_attention.LocalSelfAttention,
                "CompressedSelfAttention": pattern_attention.CompressedSelfAttention,
                "self_attention": pattern_attention.self_attention}
    for name, value in exported.items():
        assert name in layers.__all__ and getattr(layers, name) is value, name
    assert isinstance(layers.self_attention("local", 8, 2, block_size=4), layers.LocalSelfAttention)
