"""GPT: the decoder-only Transformer (T-D), trained to predict the next token.

GPT-1: post-norm blocks, no final LayerNorm. GPT-2: pre-norm blocks and a final LayerNorm. Both: learned
positions and an output projection tied to the token embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.blocks import DecoderBlock, layer_norm
from tformer.layers.cache import KVCache, StaticKVCache
from tformer.layers.embeddings import Embeddings
from tformer.layers.positions import build_positions
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, default_position_ids, scale_residual_projections, token_mask
from tformer.models.outputs import CausalLMOutput


class GPT(TransformerModel):
    """Decoder-only language model: input_ids (batch, length) -> next-token logits (batch, length, vocab)."""

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "gpt":
            raise ValueError(f"GPT needs a config with family='gpt', got family={config.family!r}")
        super().__init__(config)
        token = nn.Embedding(config.vocab_size, config.d_model)
        self.embeddings = Embeddings(token, build_positions(config), scale=config.scale_embeddings,
                                     norm=layer_norm(config) if config.embedding_norm else None,
                                     dropout=config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layers))
        self.final_norm = layer_norm(config) if config.final_norm else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights()
        scale_residual_projections(self, config.n_layers, config.init_std)
        if config.tie_word_embeddings:
            self.lm_head.weight = token.weight

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    def new_static_cache(self, batch: int, max_length: int, *, dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> StaticKVCache:
        """A pre-allocated cache for `batch` rows of up to `max_length` positions (generation's fast path)."""
        reference = self.lm_head.weight
        config = self.config
        return StaticKVCache(len(self.blocks), batch, config.n_heads, max_length, config.d_model // config.n_heads,
                             dtype=dtype or reference.dtype, device=device or reference.device)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
        labels: Tensor | None = None, *, cache: KVCache | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False, logits_to_keep: int = 0, cache_position: Tensor | None = None,
    ) -> CausalLMOutput:
        """attention_mask (batch, cached + new length): 1 = token, 0 = padding. labels are shifted inside.

        logits_to_keep=n computes logits for the last n positions only (0: all), as generation's prefill needs.
        With a `StaticKVCache` (`new_static_cache`): attention_mask covers all its slots (batch, max_length), and
        cache_position (new length,) names the slots the new tokens fill, which are also their default positions.
        Given cache_position, the caller vouches for the token ids and the length (no range check, so no host sync
        per step: generation checks its prompt once); without it the tokens continue after those written so far.
        """
        batch, length = input_ids.shape if input_ids.dim() == 2 else (0, 0)
        static = isinstance(cache, StaticKVCache)
        if static:
            assert isinstance(cache, StaticKVCache)
            trusted = cache_position is not None
            past = 0 if trusted else cache.written
            self._check_input_ids(input_ids, past, check_values=not trusted)
            if cache_position is None:
                cache_position = torch.arange(past, past + length, device=input_ids.device)
                cache.written += length
            self._check_mask(attention_mask, (batch, cache.max_length), "attention_mask")
            if position_ids is None:
                position_ids = cache_position[None].expand(batch, -1)
            mask = cache.attention_mask(cache_position, attention_mask)
            cache.begin(cache_position)
        else:
            if cache_position is not None:
                raise ValueError("cache_position names slots of a StaticKVCache; this call has "
                                 f"cache={type(cache).__name__ if cache is not None else None}")
            past = cache.length if cache is not None else 0
            self._check_input_ids(input_ids, past)
            self._check_mask(attention_mask, (batch, past + length), "attention_mask")
            if position_ids is None:
                position_ids = default_position_ids(input_ids, past)
            mask = token_mask(attention_mask)

        x = self.embeddings(input_ids, position_ids)
        hidden_states: list[Tensor] = []
        attentions: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if output_hidden_states:
                hidden_states.append(x)
            x, weights, _ = block(x, mask=mask, cache=cache.self_attention[i] if cache is not None else None,
                                  return_weights=output_attentions)
            if weights is not None:
                attentions.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if output_hidden_states:
            hidden_states.append(x)

        if logits_to_keep and labels is not None:
            raise ValueError("logits_to_keep needs labels=None: the loss reads the logits of every position")
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        return CausalLMOutput(
            logits=logits,
            loss=token_cross_entropy(logits, labels, shift=True) if labels is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cache=cache,
        )
