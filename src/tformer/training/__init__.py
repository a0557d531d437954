"""Pre-training and training: the Trainer, objectives, recipes, checkpoints, distributed runs."""

from tformer.training.objectives import CausalLM, DecoderSeq2Seq, MaskedLM, Objective, Seq2Seq, build_objective
from tformer.training.recipe import Recipe, load_recipe
from tformer.training.trainer import Trainer, TrainingDiverged, TrainResult

__all__ = [
    "CausalLM", "DecoderSeq2Seq", "MaskedLM", "Objective", "Recipe", "Seq2Seq", "TrainResult", "Trainer",
    "TrainingDiverged", "build_objective", "load_recipe",
]
