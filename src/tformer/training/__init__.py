"""Pre-training and training: the Trainer, objectives, recipes, checkpoints, distributed runs.

The names are imported on first use (PEP 562), so the CLI can read `tformer.training.options` and `.recipe`
without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

_MODULES = {
    "tformer.training.objectives": ("CausalLM", "DecoderSeq2Seq", "MaskedLM", "Objective", "Seq2Seq",
                                    "build_objective"),
    "tformer.training.recipe": ("Recipe", "load_recipe"),
    "tformer.training.trainer": ("Trainer", "TrainingDiverged", "TrainResult"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [  # the names of _LAZY, written out for tools that read __all__
    "CausalLM", "DecoderSeq2Seq", "MaskedLM", "Objective", "Recipe", "Seq2Seq", "TrainResult", "Trainer",
    "TrainingDiverged", "build_objective", "load_recipe",
]

if TYPE_CHECKING:
    from tformer.training.objectives import CausalLM, DecoderSeq2Seq, MaskedLM, Objective, Seq2Seq, build_objective
    from tformer.training.recipe import Recipe, load_recipe
    from tformer.training.trainer import Trainer, TrainingDiverged, TrainResult


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
