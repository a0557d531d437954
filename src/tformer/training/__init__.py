"""Pre-training and training: the Trainer, objectives, recipes, checkpoints, distributed runs.

The names are imported on first use (PEP 562), so the CLI can read `tformer.training.options` and `.recipe`
without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

_MODULES = {
    "tformer.training.objectives": ("build_objective",),
    "tformer.training.objectives.base": ("Objective",),
    "tformer.training.objectives.causal_lm": ("CausalLM",),
    "tformer.training.objectives.decoder_seq2seq": ("DecoderSeq2Seq",),
    "tformer.training.objectives.masked_lm": ("MaskedLM",),
    "tformer.training.objectives.seq2seq": ("Seq2Seq",),
    "tformer.training.objectives.task": ("TaskFinetuning",),
    "tformer.training.recipe": ("Recipe", "load_recipe"),
    "tformer.training.trainer": ("Trainer", "TrainingDiverged", "TrainResult"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [  # the names of _LAZY, written out for tools that read __all__
    "CausalLM", "DecoderSeq2Seq", "MaskedLM", "Objective", "Recipe", "Seq2Seq", "TaskFinetuning", "TrainResult",
    "Trainer", "TrainingDiverged", "build_objective", "load_recipe",
]

if TYPE_CHECKING:
    from tformer.training.objectives import build_objective
    from tformer.training.objectives.base import Objective
    from tformer.training.objectives.causal_lm import CausalLM
    from tformer.training.objectives.decoder_seq2seq import DecoderSeq2Seq
    from tformer.training.objectives.masked_lm import MaskedLM
    from tformer.training.objectives.seq2seq import Seq2Seq
    from tformer.training.objectives.task import TaskFinetuning
    from tformer.training.recipe import Recipe, load_recipe
    from tformer.training.trainer import Trainer, TrainingDiverged, TrainResult


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
