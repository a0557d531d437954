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
from tformer.layers.attention import padding_mask
from tformer.layers.cache import KVCache
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, token_mask
from tformer.models.outputs import EncoderOutput, Seq2SeqOutput
from tformer.models.stacks import DecoderCaches, DecoderStack, EncoderStack


class EncoderDecoder(DecoderCaches, TransformerModel):
    """Encoder-decoder: source ids (batch, source len) + decoder ids (batch, target len) -> logits (batch,
    target len, vocab).

    An `EncoderStack` (`encoder`), a `DecoderStack` with cross-attention (`decoder`), an LM head and Marian's
    `final_logits_bias`.
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "encoder-decoder":
            raise ValueError(f"EncoderDecoder needs family='encoder-decoder', got family={config.family!r}")
        super().__init__(config)
        source_token = nn.Embedding(config.vocab_size, config.d_model)
        target_token = (source_token if config.share_encoder_decoder_embeddings
                        else nn.Embedding(config.vocab_size, config.d_model))
        self.encoder = EncoderStack(config, source_token)
        self.decoder = DecoderStack(config, target_token, config.decoder_layers, cross_attention=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        else:
            self.final_logits_bias = None
        # The draws of the layout before the stacks (both embeddings, both block lists, both norms): a seed gives
        # the weights it gave then.
        norms = [norm for norm in (self.encoder.final_norm, self.decoder.final_norm) if norm is not None]
        self.init_weights([self.encoder.embeddings, self.decoder.embeddings, self.encoder.blocks, self.decoder.blocks,
                           *norms, self.lm_head])
        if config.tie_word_embeddings:
            self.lm_head.weight = target_token.weight

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
               output_attentions: bool = False, output_hidden_states: bool = False) -> EncoderOutput:
        """Source ids (batch, source len) -> encoder states (batch, source len, d_model)."""
        return self.encoder(input_ids, attention_mask, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states)

    def forward(
        self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None, *, encoder_outputs: EncoderOutput | None = None,
        cache: KVCache | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        logits_to_keep: int = 0, cache_position: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """attention_mask: source padding (1 = token); decoder_attention_mask: 1 = token over the decoder's keys,
        (batch, target len), with a cache (batch, cache.key_length(new len)). cache_position (new len,): the
        positions of the new decoder tokens in the cache (given, no range check and no host sync), see GPT.forward.

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
        # Named positions promise no host sync: the source mask is kept as it is, not tested for padding.
        memory_mask = (padding_mask(attention_mask) if cache_position is not None and attention_mask is not None
                       else token_mask(attention_mask))
        decoded = self.decoder(decoder_input_ids, decoder_attention_mask, memory=memory,
                               memory_mask=memory_mask, cache=cache, cache_position=cache_position,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                               names=("decoder_input_ids", "decoder_attention_mask"))
        x = decoded.last_hidden_state
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
            decoder_hidden_states=decoded.hidden_states,
            decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
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
