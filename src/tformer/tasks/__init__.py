"""Fine-tuning tasks (seed: classification, entailment, similarity, multiple choice, QA, NER): the datasets' readers
and registry, the input layouts (BERT's [CLS] A [SEP] B [SEP], GPT-1's start / delimiter / extract tokens), QA
windows and span extraction, NER label alignment, and the standard metrics.

The names are imported on first use (PEP 562): `tformer.tasks.registry`, which the CLI reads to list the tasks,
then loads without torch, scipy or seqeval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tformer.lazy_names import lazy_names

_MODULES = {
    "tformer.tasks.inputs": ("GPT_SPECIAL_TOKENS", "BertInputs", "GPTInputs", "GPTSpecialTokens",
                             "add_gpt_special_tokens", "input_layout", "resize_token_embeddings"),
    "tformer.tasks.metrics": ("METRICS", "compute_metrics"),
    "tformer.tasks.ner": ("NERFeature", "align_labels", "ner_batch", "ner_features", "word_tags"),
    "tformer.tasks.qa": ("QAFeature", "QASpan", "best_span", "qa_batch", "qa_features", "qa_predictions"),
    "tformer.tasks.readers": ("ChoiceExample", "DataFormatError", "NERSentence", "QAExample", "TextExample"),
    "tformer.tasks.registry": ("TASKS", "Task", "get_task", "read_task"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [  # the names of _LAZY, written out for tools that read __all__
    "BertInputs", "ChoiceExample", "DataFormatError", "GPTInputs", "GPTSpecialTokens", "GPT_SPECIAL_TOKENS",
    "METRICS", "NERFeature", "NERSentence", "QAExample", "QAFeature", "QASpan", "TASKS", "Task", "TextExample",
    "add_gpt_special_tokens", "align_labels", "best_span", "compute_metrics", "get_task", "input_layout",
    "ner_batch", "ner_features", "qa_batch", "qa_features", "qa_predictions", "read_task", "resize_token_embeddings",
    "word_tags",
]

if TYPE_CHECKING:
    from tformer.tasks.inputs import (
        GPT_SPECIAL_TOKENS,
        BertInputs,
        GPTInputs,
        GPTSpecialTokens,
        add_gpt_special_tokens,
        input_layout,
        resize_token_embeddings,
    )
    from tformer.tasks.metrics import METRICS, compute_metrics
    from tformer.tasks.ner import NERFeature, align_labels, ner_batch, ner_features, word_tags
    from tformer.tasks.qa import QAFeature, QASpan, best_span, qa_batch, qa_features, qa_predictions
    from tformer.tasks.readers import ChoiceExample, DataFormatError, NERSentence, QAExample, TextExample
    from tformer.tasks.registry import TASKS, Task, get_task, read_task


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
