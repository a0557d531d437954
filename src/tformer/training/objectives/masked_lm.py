"""mlm / mlm_nsp (BERT pre-training): masked-LM on 15 % of the tokens (80/10/10), plus next-sentence prediction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.losses import IGNORE_INDEX, token_cross_entropy
from tformer.tokenization import ROLE_NAMES, Tokenizer
from tformer.training.datasets import TrainingData, check_text_files, mlm_data
from tformer.training.objectives.base import Objective, mean_over
from tformer.training.options import OptionError
from tformer.training.recipe import Recipe

ROLES = ("pad", "cls", "sep", "mask")  # the special tokens masked-LM batches are built with


class MaskedLM(Objective):
    """Masked LM: `input_ids` with [MASK] / random / kept tokens, `labels` (-100 where not chosen), attention_mask."""

    name = "mlm"
    families = ("bert",)
    next_sentence = False

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        check_text_files(recipe, cls.name, smallest=5 if cls.next_sentence else 3)
        d = recipe.data
        if cls.next_sentence and len(d.text) < 2 and not any(ch in p for p in d.text for ch in "*?["):
            raise OptionError(f"train.objective=mlm_nsp reads each data.text file as one document and takes its "
                              f"random next sentences from another document, so it needs 2 or more files, got "
                              f"{d.text[0]!r}; split the text into several files (blank lines do not separate "
                              "documents here), or use train.objective=mlm")

    @classmethod
    def missing_tokens(cls, tokenizer: Tokenizer) -> list[str]:
        return [ROLE_NAMES[role][0] for role in ROLES if getattr(tokenizer, f"{role}_token_id") is None]

    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        return mlm_data(self.recipe, run_dir, log, next_sentence=self.next_sentence)

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
        loss = mean_over(mlm_total, totals["tokens"])
        sums = {"loss_sum": mlm_total.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        if self.next_sentence:
            target = batch["next_sentence_label"].view(-1)
            nsp_total = F.cross_entropy(out.nsp_logits.float(), target, reduction="sum")
            loss = loss + mean_over(nsp_total, totals["pairs"])
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


class MaskedLMWithNextSentence(MaskedLM):
    """Masked LM plus NSP on the pooled [CLS] state: `next_sentence_label` (batch,) 0 = B follows A, 1 = random."""

    name = "mlm_nsp"
    next_sentence = True
