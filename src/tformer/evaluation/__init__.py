"""Evaluation of pre-trained models on raw text: the perplexity of a language model (`evaluate_lm`) and GPT-1's
zero-shot behaviours (`evaluate_zero_shot`).

The names are imported on first use (PEP 562), so the CLI can register its commands without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

_LAZY = {name: "tformer.evaluation.lm" for name in ("LMEvaluation", "evaluate_lm", "load_language_model")}
_LAZY.update({name: "tformer.evaluation.zero_shot" for name in ("ZeroShotResult", "evaluate_zero_shot")})

__all__ = ["LMEvaluation", "ZeroShotResult", "evaluate_lm", "evaluate_zero_shot", "load_language_model"]

if TYPE_CHECKING:
    from tformer.evaluation.lm import LMEvaluation, evaluate_lm, load_language_model
    from tformer.evaluation.zero_shot import ZeroShotResult, evaluate_zero_shot

__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), submodules=True)
