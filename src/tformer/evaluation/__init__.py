"""Evaluation of pre-trained models on raw text: the perplexity of a language model (`evaluate_lm`).

The names are imported on first use (PEP 562), so the CLI can register its commands without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

_LAZY = {name: "tformer.evaluation.lm" for name in ("LMEvaluation", "evaluate_lm", "load_language_model")}

__all__ = ["LMEvaluation", "evaluate_lm", "load_language_model"]

if TYPE_CHECKING:
    from tformer.evaluation.lm import LMEvaluation, evaluate_lm, load_language_model

__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), submodules=True)
