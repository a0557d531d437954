"""The original Transformer (T-ED): an encoder reads the source, a decoder writes the target.

The decoder's blocks run masked self-attention over the target so far, then cross-attention to the
encoder output. Embeddings may be shared between encoder, decoder and output projection, and scaled by
sqrt(d_model), as the paper (and Marian) do.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.data.seq2seq import shift_right
from tformer.layers.blocks import DecoderBlock, EncoderBlock, layer_norm
from tformer.layers.cache import KVCache
from tformer.layers.embeddings import Embeddings
from tformer.layers.positions import build_positions
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, default_position_ids, token_mask
from tformer.models.outputs import EncoderOutput, Seq2SeqOutput


class EncoderDecoder(TransformerModel):
    """Encoder-decoder: source ids (batch, source len) + decoder ids (batch, target len) -> logits (batch,
    target len, vocab)."""

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "encoder-decoder":
            raise ValueError(f"EncoderDecoder needs family='encoder-decoder', got family={config.family!r}")
        super().__init__(config)
        embedding_args = dict(scale=config.scale_embeddings, dropout=config.dropout,
                              norm=layer_norm(config) if config.embedding_norm else None)
        source_token = nn.Embedding(config.vocab_size, config.d_model)
        target_token = (source_token if config.share_encoder_decoder_embeddings
                        else nn.Embedding(config.vocab_size, config.d_model))
        self.encoder_embeddings = Embeddings(source_token, build_positions(config), **embedding_args)
        self.decoder_embeddings = Embeddings(target_token, build_positions(config), **embedding_args)
        self.encoder_blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layers))
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(config, cross_attention=True) for _ in range(config.decoder_layers))
        final_norm = config.final_norm
        self.encoder_final_norm = layer_norm(config) if final_norm else None
        self.decoder_final_norm = layer_norm(config) if final_norm else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        else:
            self.final_logits_bias = None
        self.init_weights()
        if config.tie_word_embeddings:
            self.lm_head.weight = target_token.weight

    def new_cache(self) -> KVCache:
        return KVCache(len(self.decoder_blocks), cross_attention=True)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
               output_attentions: bool = False, output_hidden_states: bool = False) -> EncoderOutput:
        """Source ids (batch, source len) -> encoder states (batch, source len, d_model)."""
        self._check_input_ids(input_ids)
        self._check_mask(attention_mask, tuple(input_ids.shape), "attention_mask")
        mask = token_mask(attention_mask)
        x = self.encoder_embeddings(input_ids, default_position_ids(input_ids))
        hidden_states, attentions = [x], []
        for block in self.encoder_blocks:
            x, weights = block(x, mask, return_weights=output_attentions)
            hidden_states.append(x)
            if weights is not None:
                attentions.append(weights)
        if self.encoder_final_norm is not None:
            x = hidden_states[-1] = self.encoder_final_norm(x)
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def forward(
        self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None, *, encoder_outputs: EncoderOutput | None = None,
        cache: KVCache | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> Seq2SeqOutput:
        """attention_mask: source padding (1 = token); decoder_attention_mask: (batch, cached + new length).

        Given labels and no decoder_input_ids, the decoder reads the labels shifted right from the start token.
        Pass `encoder_outputs` (from `encode`) to skip the encoder, as generation does after its first step.
        logits_to_keep=n computes logits for the last n decoder positions only (0: all).
        """
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass input_ids (the source) or encoder_outputs from model.encode(...)")
            encoder_outputs = self.encode(input_ids, attention_mask, output_attentions=output_attentions,
                                          output_hidden_states=output_hidden_states)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids (the target so far) or labels (the whole target)")
            decoder_input_ids = shift_right(labels, self._pad_id(), self._start_id())
        memory = encoder_outputs.last_hidden_state
        past = cache.length if cache is not None else 0
        self._check_input_ids(decoder_input_ids, past, "decoder_input_ids")
        batch, length = decoder_input_ids.shape
        self._check_mask(decoder_attention_mask, (batch, past + length), "decoder_attention_mask")
        self_mask = token_mask(decoder_attention_mask)
        memory_mask = token_mask(attention_mask)

        x = self.decoder_embeddings(decoder_input_ids, default_position_ids(decoder_input_ids, past))
        hidden_states, self_attentions, cross_attentions = [x], [], []
        for i, block in enumerate(self.decoder_blocks):
            x, self_weights, cross_weights = block(
                x, mask=self_mask, memory=memory, memory_mask=memory_mask,
                cache=cache.self_attention[i] if cache is not None else None,
                cross_cache=cache.cross_attention[i] if cache is not None and cache.cross_attention else None,
                return_weights=output_attentions)
            hidden_states.append(x)
            if self_weights is not None and cross_weights is not None:
                self_attentions.append(self_weights)
                cross_attentions.append(cross_weights)
        if self.decoder_final_norm is not None:
            x = hidden_states[-1] = self.decoder_final_norm(x)

        if logits_to_keep and labels is not None:
            raise ValueError("logits_to_keep needs labels=None: the loss reads the logits of every position")
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        return Seq2SeqOutput(
            logits=logits,
            loss=token_cross_entropy(logits, labels) if labels is not None else None,
            encoder_last_hidden_state=memory,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            decoder_hidden_states=tuple(hidden_states) if output_hidden_states else None,
            decoder_attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None,
            cache=cache,
        )

    def _pad_id(self) -> int:
        if self.config.pad_token_id is None:
            raise ValueError("labels without decoder_input_ids need config.pad_token_id to pad the shifted labels")
        return self.config.pad_token_id

    def _start_id(self) -> int:
        start = self.config.decoder_start_token_id
        if start is None:
            raise ValueError("labels without decoder_input_ids need config.decoder_start_token_id")
        return start
