"""What every objective entry owns: its model family and length field, the recipe checks for its data, its
TrainingData and model, its loss (counted the same way for all), its evaluation and the end of its run.

Every loss is a **sum over the micro-batch's items divided by the item count of the whole optimizer step** (all
micro-batches, all processes: `totals`). Dividing by the step's count, not the micro-batch's, is what makes gradient
accumulation and data parallelism give the gradient of the mean over the global batch, even when micro-batches hold
different numbers of items (target tokens, examples).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.interop.huggingface import from_pretrained
from tformer.losses import IGNORE_INDEX
from tformer.models import build_model
from tformer.models.base import TransformerModel
from tformer.training.evaluate import evaluate_loss
from tformer.training.options import OptionError
from tformer.training.preflight import check_before_data
from tformer.training.recipe import Recipe, model_config, recipe_notes

if TYPE_CHECKING:
    import torch

    from tformer.tokenization import Tokenizer
    from tformer.training.datasets import TrainingData
    from tformer.training.distributed import Distributed


class Objective(ABC):
    """A training objective bound to a recipe (seed concept: teacher forcing on a batch dict of (batch, ...) tensors).

    `counts(batch)` -> items per loss term, `loss(model, batch, totals)` -> (loss, detached sums), `summary(sums)`
    -> logged metrics; `build_data` / `build_model` make what the Trainer trains; `evaluate` scores it.
    """

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]] = ()  # the model families it trains (empty: whatever the folder holds)
    length_field: ClassVar[str] = "max_length"  # the data option that bounds a row: max_length or block_size
    translates: ClassVar[bool] = False  # decodes sentences, so eval.bleu applies
    bpe_specials: ClassVar[int] = 5  # special tokens a trained byte-level BPE adds to its 256 bytes

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.label_smoothing = recipe.train.label_smoothing

    # ------------------------------------------------------------------------------- recipe checks (no files)

    @classmethod
    def check_recipe(cls, recipe: Recipe) -> None:
        """Refuse what fits each field alone but not this objective (before any file is read or written)."""
        d = recipe.data
        if recipe.eval.bleu and not cls.translates:
            raise OptionError(f"eval.bleu=true scores translations, but train.objective={cls.name} makes none; "
                              "drop eval.bleu (or set it to false)")
        if d.tokenizer == "bpe" and d.vocab_size is not None and d.vocab_size < 256 + cls.bpe_specials:
            raise OptionError(f"data.vocab_size={d.vocab_size} is too small for byte-level BPE with "
                              f"train.objective={cls.name}: it needs at least {256 + cls.bpe_specials} (256 bytes + "
                              "special tokens); raise data.vocab_size")
        cls.check_data(recipe)

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        """The objective's own checks of the data section."""
        return None

    @classmethod
    def check_model(cls, recipe: Recipe, config: ModelConfig, where: str | None = None) -> None:
        """The model is of the family this objective trains and its positions hold the longest row."""
        where = where or f"model.preset={recipe.model.preset}"
        if cls.families and config.family not in cls.families:
            wanted = cls.family_names()
            raise OptionError(f"train.objective={cls.name} trains {wanted} model but {where} is "
                              f"{config.family}; pick {wanted} preset (`tformer models`)")
        longest = getattr(recipe.data, cls.length_field)
        if longest > config.max_positions:
            raise OptionError(f"data.{cls.length_field}={longest} is longer than the model's position table "
                              f"(max_positions={config.max_positions}); lower data.{cls.length_field} or raise "
                              "model.config.max_positions")

    @classmethod
    def family_names(cls) -> str:
        """The families it trains, as the error lines name them: "a gpt", "an encoder-decoder or rnn"."""
        names = " or ".join(cls.families)
        return f"{'an' if names[:1] in tuple('aeiou') else 'a'} {names}"

    @classmethod
    def data_files(cls, recipe: Recipe) -> list[tuple[str, Path]]:
        """(option, path) of each data file the recipe names for this objective (checked before the data)."""
        d = recipe.data
        return [(f"data.text[{i}]", recipe.data_path(p)) for i, p in enumerate(d.text)
                if not any(c in p for c in "*?[")]

    @classmethod
    def missing_tokens(cls, tokenizer: Tokenizer) -> list[str]:
        """The special tokens this objective builds batches with that a given tokenizer.json lacks."""
        return []

    # -------------------------------------------------------------------------------------- data and model

    def prepare_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        """The recipe checked (values and named files), its notes said, then `build_data`."""
        check_before_data(self.recipe)
        for note in recipe_notes(self.recipe):
            log(f"note: {note}")
        return self.build_data(run_dir, log)

    @abstractmethod
    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        """Tokenizer, training stream and evaluation inputs of this objective."""

    def build_model(self, data: TrainingData) -> TransformerModel:
        """model.from_pretrained (its vocabulary must hold the tokenizer's), else the preset with the data's fields."""
        recipe = self.recipe
        if recipe.model.from_pretrained:
            overrides = dict(recipe.model.config)
            model = from_pretrained(recipe.data_path(recipe.model.from_pretrained), **overrides)
            if model.config.vocab_size < data.model_fields["vocab_size"]:
                raise ValueError(f"the model has {model.config.vocab_size} token ids but the tokenizer "
                                 f"{data.model_fields['vocab_size']}; use the model's tokenizer.json")
            return model
        config = model_config(recipe, **data.model_fields)
        try:
            self.check_model(recipe, config)
        except OptionError as error:
            raise ValueError(str(error)) from None
        return build_model(config)

    # ------------------------------------------------------------------------------------------------ loss

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

    def throughput(self, sums: dict[str, float], seconds: float) -> dict[str, float]:
        """The speed shown next to the loss: tokens fed per second."""
        return {"tok/s": sums.get("batch_tokens", 0.0) / seconds}

    # ------------------------------------------------------------------------------ evaluation and the end

    def evaluate(self, model: nn.Module, data: TrainingData, *, env: Distributed, autocast: torch.autocast | None,
                 final: bool) -> dict[str, float]:
        """The held-out metrics (every process calls this; `model` is the plain module, not the DDP wrapper)."""
        return evaluate_loss(model, self, data.eval_batches, env=env, autocast=autocast)

    def final_folder(self, run_dir: Path) -> Path:
        """Where the model folder of a finished run goes."""
        return run_dir / "final"

    def finish(self, model: TransformerModel) -> None:
        """What the model needs before its final folder is written (nothing, for most objectives)."""
        return None


def mean_over(total: Tensor, count: Tensor) -> Tensor:
    """`total` divided by the step's item `count` (at least 1, so an empty share adds 0)."""
    return total / count.clamp(min=1).to(total.dtype)
