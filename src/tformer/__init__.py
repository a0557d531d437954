"""tformer: the Transformer family on PyTorch, from the attention equation up.

The names below are imported on first use (PEP 562), so `import tformer` (and `tformer --help`) does not load
torch until a model, the tokenizer or generation is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "PRESETS": "tformer.config", "ModelConfig": "tformer.config",
    "evaluate_lm": "tformer.evaluation.lm", "evaluate_zero_shot": "tformer.evaluation.zero_shot",
    "generate": "tformer.generation",
    "from_pretrained": "tformer.interop.huggingface", "save_pretrained": "tformer.interop.huggingface",
    **{name: "tformer.models" for name in (
        "BERT", "GPT", "EncoderDecoder", "MultipleChoice", "QuestionAnswering", "RNNSearch",
        "SequenceClassification", "TokenClassification", "TransformerModel", "build_model", "with_task_head")},
    "Tokenizer": "tformer.tokenization",
}

__all__ = [  # the names of _LAZY, written out for tools that read __all__
    "BERT", "EncoderDecoder", "GPT", "ModelConfig", "MultipleChoice", "PRESETS", "QuestionAnswering", "RNNSearch",
    "SequenceClassification", "TokenClassification", "Tokenizer", "TransformerModel", "build_model", "evaluate_lm",
    "evaluate_zero_shot", "from_pretrained", "generate", "save_pretrained", "with_task_head",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from tformer.config import PRESETS, ModelConfig
    from tformer.evaluation.lm import evaluate_lm
    from tformer.evaluation.zero_shot import evaluate_zero_shot
    from tformer.generation import generate
    from tformer.interop.huggingface import from_pretrained, save_pretrained
    from tformer.models import (
        BERT,
        GPT,
        EncoderDecoder,
        MultipleChoice,
        QuestionAnswering,
        RNNSearch,
        SequenceClassification,
        TokenClassification,
        TransformerModel,
        build_model,
        with_task_head,
    )
    from tformer.tokenization import Tokenizer


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), submodules=True)
