"""causal_lm (GPT-1 / GPT-2): next-token prediction on random windows of the prepared text (nanoGPT's get_batch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from tformer.losses import IGNORE_INDEX, token_cross_entropy
from tformer.training.datasets import PREPARED_FILES, TrainingData, causal_lm_data, check_text_files
from tformer.training.objectives.base import Objective, mean_over
from tformer.training.options import OptionError
from tformer.training.recipe import Recipe


class CausalLM(Objective):
    """Next-token prediction: batch `input_ids`, `labels` (batch, block_size), label t the token after position t."""

    name = "causal_lm"
    families = ("gpt",)
    length_field = "block_size"
    bpe_specials = 1  # <|endoftext|>

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        if recipe.data.prepared is None:
            check_text_files(recipe, cls.name, smallest=1)
        elif recipe.data.text:
            raise OptionError(f"data.prepared={recipe.data.prepared} and data.text are both set; data.prepared "
                              "trains on that folder's train.bin, so leave data.text empty (data.text=[])")

    @classmethod
    def data_files(cls, recipe: Recipe) -> list[tuple[str, Path]]:
        if recipe.data.prepared is None:
            return super().data_files(recipe)
        folder = recipe.data_path(recipe.data.prepared)
        return [("data.prepared", folder / name) for name in PREPARED_FILES]

    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        return causal_lm_data(self.recipe, run_dir, log)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        logits = model(batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        total = token_cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)
        sums = {"loss_sum": total.detach(), "tokens": (batch["labels"] != IGNORE_INDEX).sum()}
        return mean_over(total, totals["tokens"]), sums
