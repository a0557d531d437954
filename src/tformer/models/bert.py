"""BERT: the encoder-only Transformer, pre-trained with masked LM and next-sentence prediction.

Token + position + token-type embeddings with a LayerNorm, post-norm encoder blocks, a tanh pooler on the
[CLS] state, a masked-LM head tied to the token embeddings and a next-sentence head on the pooled output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.layers.blocks import layer_norm
from tformer.layers.feedforward import ACTIVATION_FUNCTIONS
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, check_mask
from tformer.models.outputs import BertOutput
from tformer.models.stacks import EncoderStack


class Pooler(nn.Module):
    """tanh(W h_[CLS] + b): (batch, length, d_model) -> (batch, d_model), the sentence-level vector."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MaskedLMHead(nn.Module):
    """Predicts the masked tokens: dense + activation + LayerNorm, then the tied decoder with its own bias.

    (batch, length, d_model) -> (batch, length, vocab).
    """

    def __init__(self, config: ModelConfig, token_embedding: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]
        self.norm = layer_norm(config)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        if config.tie_word_embeddings:
            self.decoder.weight = token_embedding.weight

    def forward(self, hidden: Tensor) -> Tensor:
        # The bias goes into the product (one addmm) rather than a separate add over (tokens, vocab).
        return nn.functional.linear(self.norm(self.activation(self.dense(hidden))), self.decoder.weight, self.bias)


class BERT(TransformerModel):
    """Bidirectional encoder: input_ids (batch, length) -> states (batch, length, d_model) and head logits.

    An `EncoderStack` (`encoder`: embeddings with token types, blocks, final norm), the pooler and the heads.
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "bert":
            raise ValueError(f"BERT needs a config with family='bert', got family={config.family!r}")
        if config.pretraining_heads and not config.pooler:
            raise ValueError("pretraining_heads=True needs pooler=True: next-sentence prediction reads the pooler")
        super().__init__(config)
        token = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = EncoderStack(config, token, type_vocab_size=config.type_vocab_size)
        self.pooler = Pooler(config.d_model) if config.pooler else None
        self.mlm_head = MaskedLMHead(config, token) if config.pretraining_heads else None
        self.nsp_head = nn.Linear(config.d_model, 2) if config.pretraining_heads else None
        self.init_weights()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None, labels: Tensor | None = None,
        next_sentence_label: Tensor | None = None, *, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BertOutput:
        """attention_mask (batch, length): 1 = token, 0 = padding. token_type_ids: 0 for sentence A, 1 for B.

        labels (batch, length): the original ids at masked positions, -100 elsewhere; next_sentence_label
        (batch,): 0 = B follows A, 1 = B is random. Given either, `loss` is the sum of the given losses.
        """
        check_mask(token_type_ids, tuple(input_ids.shape), "token_type_ids")
        if token_type_ids is not None and token_type_ids.numel() and int(token_type_ids.max()) >= max(
                self.config.type_vocab_size, 1):
            raise ValueError(f"token type id {int(token_type_ids.max())} is outside [0, "
                             f"{self.config.type_vocab_size}); BERT uses 0 for sentence A and 1 for B")
        encoded = self.encoder(input_ids, attention_mask, position_ids, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        x = encoded.last_hidden_state
        pooled = self.pooler(x) if self.pooler is not None else None
        logits = self.mlm_head(x) if self.mlm_head is not None else None
        nsp_logits = self.nsp_head(pooled) if self.nsp_head is not None and pooled is not None else None
        loss = None
        if labels is not None or next_sentence_label is not None:
            if logits is None or nsp_logits is None:
                raise ValueError("labels need the pre-training heads; build the model with pretraining_heads=True")
            losses = []
            if labels is not None:
                losses.append(token_cross_entropy(logits, labels))
            if next_sentence_label is not None:
                losses.append(nn.functional.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1)))
            loss = torch.stack(losses).sum()
        return BertOutput(
            last_hidden_state=x, pooled_output=pooled, logits=logits, nsp_logits=nsp_logits, loss=loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions,
        )
