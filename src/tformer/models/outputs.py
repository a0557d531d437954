"""What the models return: dataclasses with the names Hugging Face users know."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tformer.layers.cache import DecoderCache, KVCache


@dataclass
class CausalLMOutput:
    """GPT output. logits: (batch, length, vocab); attentions: per layer (batch, heads, queries, keys)."""

    logits: Tensor
    loss: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cache: KVCache | None = None


@dataclass
class BertOutput:
    """BERT output: masked-LM logits (batch, length, vocab), NSP logits (batch, 2), encoder states."""

    last_hidden_state: Tensor
    pooled_output: Tensor | None = None
    logits: Tensor | None = None
    nsp_logits: Tensor | None = None
    loss: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class EncoderOutput:
    """An encoder stack's pass (BERT's, the encoder-decoder's): last_hidden_state (batch, length, d_model), per-layer
    states and attention weights on request."""

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class DecoderOutput:
    """A decoder stack's pass: last_hidden_state (batch, length, d_model), per-layer states and attention weights
    (self-attention; cross-attention for an encoder-decoder's decoder, else None)."""

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


@dataclass
class Seq2SeqOutput:
    """Encoder-decoder output (EncoderDecoder, RNNSearch): logits (batch, target length, vocab) and per-part states
    and attentions."""

    logits: Tensor
    loss: Tensor | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None
    encoder_attentions: tuple[Tensor, ...] | None = None
    decoder_hidden_states: tuple[Tensor, ...] | None = None
    decoder_attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None
    cache: DecoderCache | None = None  # a KVCache, or the RNN's RecurrentCache


@dataclass
class TaskOutput:
    """Fine-tuning head output. logits: (batch, num_labels) for sequence classification, (batch, choices) for
    multiple choice, (batch, length, num_labels) for token classification; question answering gives
    start_logits and end_logits (batch, length) instead. loss: the task loss, plus lm_weight * lm_loss for a GPT
    head trained with GPT-1's auxiliary language-model loss (lm_loss, reported on its own)."""

    logits: Tensor | None = None
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    lm_loss: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
