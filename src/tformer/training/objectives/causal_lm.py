"""causal_lm (GPT-1 / GPT-2): next-token prediction on random windows of the prepared text (nanoGPT's get_batch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from tformer.losses import IGNORE_INDEX, token_cross_entropy
from tformer.training.datasets import TrainingData, causal_lm_data, check_text_files
from tformer.training.objectives.base import Objective, mean_over
from tformer.training.recipe import Recipe


class CausalLM(Objective):
    """Next-token prediction: batch `input_ids`, `labels` (batch, block_size), label t the token after position t."""

    name = "causal_lm"
    families = ("gpt",)
    length_field = "block_size"
    bpe_specials = 1  # <|endoftext|>

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        check_text_files(recipe, cls.name, smallest=1)

    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        return causal_lm_data(self.recipe, run_dir, log)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits = model(batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        total = token_cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)
        sums = {"loss_sum": total.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        return mean_over(total, totals["tokens"]), sums
