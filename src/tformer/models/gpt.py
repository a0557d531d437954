"""GPT: the decoder-only Transformer (T-D), trained to predict the next token.

GPT-1: post-norm blocks, no final LayerNorm. GPT-2: pre-norm blocks and a final LayerNorm. Both: learned
positions and an output projection tied to the token embeddings.

`config.attention_pattern` makes it the T-DMCA of Liu et al. 2018 (e.g. "LMLML"): each block's self-attention is
local (L), memory-compressed (M) or full (F); `new_cache()` is then a `PatternKVCache` and there is no static cache.
"""

from __future__ import annotations

from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.cache import KVCache
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, scale_residual_projections
from tformer.models.outputs import CausalLMOutput
from tformer.models.stacks import DecoderCaches, DecoderStack


class GPT(DecoderCaches, TransformerModel):
    """Decoder-only language model: input_ids (batch, length) -> next-token logits (batch, length, vocab).

    A `DecoderStack` (`decoder`: embeddings, blocks, final norm) and an LM head tied to the token embeddings.
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "gpt":
            raise ValueError(f"GPT needs a config with family='gpt', got family={config.family!r}")
        super().__init__(config)
        token = nn.Embedding(config.vocab_size, config.d_model)
        self.decoder = DecoderStack(config, token, config.n_layers)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights()
        scale_residual_projections(self, config.n_layers, config.init_std)
        if config.tie_word_embeddings:
            self.lm_head.weight = token.weight

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
        labels: Tensor | None = None, *, cache: KVCache | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False, logits_to_keep: int = 0, cache_position: Tensor | None = None,
    ) -> CausalLMOutput:
        """attention_mask: 1 = token, 0 = padding, (batch, length), with a cache (batch, cache.key_length(length)):
        (batch, cached + new length) for `new_cache()`, (batch, max_length) for `new_static_cache`. labels are
        shifted inside. cache_position (length,): the positions of the new tokens in the cache (given, the caller
        vouches for the ids: no range check, no host sync); by default they continue after the cached ones.
        position_ids (batch, length) default to those positions (under left padding they differ).

        logits_to_keep=n computes logits for the last n positions only (0: all), as generation's prefill needs.
        """
        if logits_to_keep and labels is not None:
            raise ValueError("logits_to_keep needs labels=None: the loss reads the logits of every position")
        out = self.decoder(input_ids, attention_mask, position_ids, cache=cache, cache_position=cache_position,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        x = out.last_hidden_state
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        return CausalLMOutput(
            logits=logits,
            loss=token_cross_entropy(logits, labels, shift=True) if labels is not None else None,
            hidden_states=out.hidden_states, attentions=out.attentions, cache=cache,
        )
