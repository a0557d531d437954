"""Training objectives: what a batch means and how the loss is counted (teacher forcing, shifted targets).

Every objective reads a batch dict, runs the model once (all positions in parallel under the causal mask:
teacher forcing), and returns the loss as a **sum over its items divided by the item count of the whole
optimizer step** (all micro-batches, all processes). Dividing by the step's count, not the micro-batch's,
is what makes gradient accumulation and data parallelism give the gradient of the mean over the global batch,
even when micro-batches hold different numbers of target tokens.

* `causal_lm` (GPT-1 / GPT-2) and `decoder_seq2seq` (T-D): `labels` are already aligned with the positions
  (label t is the token after position t, -100 where there is nothing to predict; the data streams build them).
* `mlm` / `mlm_nsp` (BERT): cross-entropy on the masked positions (labels -100 elsewhere), plus next-sentence
  prediction on the pooled [CLS] state, each averaged over its own count.
* `seq2seq` (encoder-decoder): the decoder reads `decoder_input_ids` = [start] + target[:-1] and predicts
  `labels` = target, with label smoothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.losses import IGNORE_INDEX, token_cross_entropy


class Objective(ABC):
    """A training objective: `counts(batch)`, `loss(model, batch, totals)`, `summary(sums)`."""

    name = "objective"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def counts(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The items each loss term averages over, in this micro-batch (tensors, so they can be all-reduced)."""
        return {"tokens": (batch["labels"] != IGNORE_INDEX).sum()}

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """(loss to backpropagate, detached sums for the logs) of one micro-batch."""

    def summary(self, sums: dict[str, float]) -> dict[str, float]:
        """Logged metrics from summed statistics: the mean loss per token and its perplexity."""
        tokens = max(sums.get("tokens", 0.0), 1.0)
        loss = sums.get("loss_sum", 0.0) / tokens
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def _mean(total: Tensor, count: Tensor) -> Tensor:
    return total / count.clamp(min=1).to(total.dtype)


class CausalLM(Objective):
    """Next-token prediction (GPT-1 / GPT-2): batch `input_ids`, `labels` (batch, length), optional mask."""

    name = "causal_lm"

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits = model(batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        total = token_cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)
        sums = {"loss_sum": total.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        return _mean(total, totals["tokens"]), sums


class DecoderSeq2Seq(CausalLM):
    """T-D (decoder-only translation): `input_ids` = source [SEP] target [EOS]; labels only on the target."""

    name = "decoder_seq2seq"


class Seq2Seq(Objective):
    """Encoder-decoder with teacher forcing: source `input_ids`, `decoder_input_ids` (shifted target), `labels`."""

    name = "seq2seq"

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"],
                       decoder_attention_mask=batch.get("decoder_attention_mask")).logits
        total = token_cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)
        with torch.no_grad():  # the plain cross-entropy too, so the logged loss and perplexity mean the usual thing
            plain = total if not self.label_smoothing else token_cross_entropy(logits, batch["labels"], reduction="sum")
        sums = {"loss_sum": plain.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        return _mean(total, totals["tokens"]), sums


class MaskedLM(Objective):
    """BERT pre-training: masked-LM on `labels` (-100 where unmasked), plus NSP when `next_sentence_label` is there."""

    name = "mlm"

    def __init__(self, label_smoothing: float = 0.0, next_sentence: bool = False) -> None:
        super().__init__(label_smoothing)
        self.next_sentence = next_sentence
        self.name = "mlm_nsp" if next_sentence else "mlm"

    def counts(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        counts = super().counts(batch)
        if self.next_sentence:
            counts["pairs"] = torch.tensor(batch["next_sentence_label"].numel())
        return counts

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch.get("token_type_ids"))
        mlm_total = token_cross_entropy(out.logits, batch["labels"], reduction="sum",
                                        label_smoothing=self.label_smoothing)
        loss = _mean(mlm_total, totals["tokens"])
        sums = {"loss_sum": mlm_total.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        if self.next_sentence:
            target = batch["next_sentence_label"].view(-1)
            nsp_total = F.cross_entropy(out.nsp_logits.float(), target, reduction="sum")
            loss = loss + _mean(nsp_total, totals["pairs"])
            sums.update(nsp_loss_sum=nsp_total.detach(), pairs=torch.tensor(target.numel()),
                        nsp_correct=(out.nsp_logits.argmax(-1) == target).sum())
        return loss, sums

    def summary(self, sums: dict[str, float]) -> dict[str, float]:
        metrics = super().summary(sums)
        metrics["mlm_loss"] = metrics["loss"]
        if self.next_sentence:
            pairs = max(sums.get("pairs", 0.0), 1.0)
            metrics["nsp_loss"] = sums.get("nsp_loss_sum", 0.0) / pairs
            metrics["nsp_accuracy"] = sums.get("nsp_correct", 0.0) / pairs
            metrics["loss"] = metrics["mlm_loss"] + metrics["nsp_loss"]
        return metrics


def build_objective(name: str, label_smoothing: float = 0.0) -> Objective:
    """The objective a recipe's train.objective names."""
    if name == "causal_lm":
        return CausalLM(label_smoothing)
    if name == "decoder_seq2seq":
        return DecoderSeq2Seq(label_smoothing)
    if name == "seq2seq":
        return Seq2Seq(label_smoothing)
    if name in ("mlm", "mlm_nsp"):
        return MaskedLM(label_smoothing, next_sentence=name == "mlm_nsp")
    raise ValueError(f"unknown objective {name!r}; choose causal_lm, mlm, mlm_nsp, seq2seq or decoder_seq2seq")
