"""Seeing inside the models: attention maps, the attention page, positional encodings, contextual embeddings."""

from tformer.viz.attention_maps import plot_alignment, plot_attention
from tformer.viz.capture import capture_attention
from tformer.viz.contextual import contextual_similarities, contextual_similarity, plot_contextual
from tformer.viz.page import AttentionView, write_attention_page
from tformer.viz.positions import offset_dot_products, plot_positions

__all__ = [
    "AttentionView", "capture_attention", "contextual_similarities", "contextual_similarity",
    "offset_dot_products", "plot_alignment", "plot_attention", "plot_contextual", "plot_positions",
    "write_attention_page",
]
