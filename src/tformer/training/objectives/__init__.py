"""The objective registry: each `train.objective` name maps to the one class that owns everything about it.

An entry (a subclass of `objectives.base.Objective`, one file each) says which model family it trains and which
length field applies, checks a recipe's data for it, builds its `TrainingData` and its model, counts and computes
its loss, evaluates, and finishes the run's model folder. The Trainer only calls those methods. Adding an objective
is one new file and one line below. This module stays light (no torch): the recipe checks the name against it.
"""

from __future__ import annotations

import importlib
from typing import Any

REGISTRY = {  # train.objective -> "module:class" (imported on first use)
    "causal_lm": "tformer.training.objectives.causal_lm:CausalLM",
    "mlm": "tformer.training.objectives.masked_lm:MaskedLM",
    "mlm_nsp": "tformer.training.objectives.masked_lm:MaskedLMWithNextSentence",
    "seq2seq": "tformer.training.objectives.seq2seq:Seq2Seq",
    "decoder_seq2seq": "tformer.training.objectives.decoder_seq2seq:DecoderSeq2Seq",
    "task": "tformer.training.objectives.task:TaskFinetuning",
}
NAMES = tuple(REGISTRY)


def unknown_objective(name: object) -> str:
    """The one-line message for a train.objective the registry does not know."""
    return f"train.objective={name!r} is unknown; known objectives: {', '.join(NAMES)}"


def objective_class(name: str) -> type:
    """The registry entry of objective `name` (a ValueError listing the known ones when there is none)."""
    if name not in REGISTRY:
        raise ValueError(unknown_objective(name))
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_objective(recipe: Any) -> Any:
    """The objective entry (an `objectives.base.Objective`) for a Recipe's train.objective, bound to the recipe."""
    return objective_class(recipe.train.objective)(recipe)


def build_data(recipe: Any, run_dir: Any, log: Any = print) -> Any:
    """The TrainingData of a recipe's objective (its values and named files are checked first)."""
    return build_objective(recipe).prepare_data(run_dir, log)
