"""What the two translation objectives share: parallel data (files or the number corpus) and BLEU evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from tformer.tokenization import Tokenizer
from tformer.training.datasets import TRANSLATION_SPECIALS, TrainingData, translation_data
from tformer.training.evaluate import bleu, evaluate_loss, exact_match, translate
from tformer.training.objectives.base import Objective
from tformer.training.options import OptionError
from tformer.training.recipe import Recipe

if TYPE_CHECKING:
    from tformer.training.distributed import Distributed

SPLIT_FILES = [f"{split}_{side}" for split in ("train", "valid", "test") for side in ("source", "target")]


class Translation(Objective):
    """Source -> target pairs; evaluation adds BLEU and exact match of decoded validation (and test) sources."""

    translates = True
    decoder_only: ClassVar[bool]

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        d = recipe.data
        if d.corpus == "numbers":
            return
        for split in ("train", "valid"):
            for side in ("source", "target"):
                if getattr(d, f"{split}_{side}") is None:
                    raise OptionError(f"train.objective={cls.name} needs data.{split}_{side} (parallel files, one "
                                      "sentence per line), or data.corpus=numbers")
        if (d.test_source is None) != (d.test_target is None):
            given, missing = ("source", "target") if d.test_target is None else ("target", "source")
            raise OptionError(f"data.test_{given} is set but data.test_{missing} is not; give both or neither")

    @classmethod
    def data_files(cls, recipe: Recipe) -> list[tuple[str, Path]]:
        d = recipe.data
        if d.corpus == "numbers":
            return []
        return [(f"data.{name}", recipe.data_path(getattr(d, name))) for name in SPLIT_FILES if getattr(d, name)]

    @classmethod
    def missing_tokens(cls, tokenizer: Tokenizer) -> list[str]:
        return [t for t in TRANSLATION_SPECIALS if t != "[UNK]" and tokenizer.token_to_id(t) is None]

    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
        return translation_data(self.recipe, run_dir, log, decoder_only=self.decoder_only)

    def evaluate(self, model: nn.Module, data: TrainingData, *, env: Distributed, autocast: torch.autocast | None,
                 final: bool) -> dict[str, float]:
        """Validation loss and perplexity; with eval.bleu also BLEU and exact match (test ones at the end)."""
        e = self.recipe.eval
        metrics = evaluate_loss(model, self, data.eval_batches, env=env, autocast=autocast)
        if e.bleu and data.valid_pairs:
            pairs = data.valid_pairs[:e.bleu_pairs] if e.bleu_pairs else data.valid_pairs
            hypotheses = self.translate(model, data.tokenizer, [s for s, _ in pairs], env.device)
            metrics["bleu"] = bleu(hypotheses, [t for _, t in pairs], e.bleu_tokenize)
            metrics["exact_match"] = exact_match(hypotheses, [t for _, t in pairs])
        if final and e.bleu and data.test_pairs:
            hypotheses = self.translate(model, data.tokenizer, [s for s, _ in data.test_pairs], env.device)
            references = [t for _, t in data.test_pairs]
            metrics["test_bleu"] = bleu(hypotheses, references, e.bleu_tokenize)
            metrics["test_exact_match"] = exact_match(hypotheses, references)
        return metrics

    def translate(self, model: nn.Module, tokenizer: Tokenizer, sources: list[str], device: torch.device,
                  num_beams: int | None = None) -> list[str]:
        """The decoded targets of `sources` (eval.num_beams beams unless given)."""
        e = self.recipe.eval
        return translate(model, tokenizer, sources, decoder_only=self.decoder_only, device=device,
                         num_beams=num_beams or e.num_beams, max_new_tokens=e.max_new_tokens,
                         length_penalty=e.length_penalty)
