"""seq2seq (the encoder-decoder Transformer, or RNNsearch): teacher forcing, the decoder reads [start] + target[:-1]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.losses import IGNORE_INDEX, token_cross_entropy
from tformer.training.objectives.base import mean_over
from tformer.training.objectives.translation import Translation


class Seq2Seq(Translation):
    """Source `input_ids`, `decoder_input_ids` (shifted target), `labels` = target (batch, length), label smoothing."""

    name = "seq2seq"
    families = ("encoder-decoder", "rnn")  # the Transformer and RNNsearch (2014): one call signature
    decoder_only = False

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"],
                       decoder_attention_mask=batch.get("decoder_attention_mask")).logits
        total = token_cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)
        with torch.no_grad():  # the plain cross-entropy too, so the logged loss and perplexity mean the usual thing
            plain = total if not self.label_smoothing else token_cross_entropy(logits, batch["labels"], reduction="sum")
        sums = {"loss_sum": plain.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        return mean_over(total, totals["tokens"]), sums
