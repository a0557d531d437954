"""Fine-tuning tasks (seed: classification, entailment, similarity, multiple choice, QA, NER): the datasets' readers
and registry, the input layouts (BERT's [CLS] A [SEP] B [SEP], GPT-1's start / delimiter / extract tokens), QA
windows and span extraction, NER label alignment, and the standard metrics."""

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

__all__ = [
    "GPT_SPECIAL_TOKENS", "BertInputs", "GPTInputs", "GPTSpecialTokens", "add_gpt_special_tokens", "input_layout",
    "resize_token_embeddings",
    "METRICS", "TASKS", "ChoiceExample", "DataFormatError", "NERFeature", "NERSentence", "QAExample", "QAFeature",
    "QASpan", "Task", "TextExample", "align_labels", "best_span", "compute_metrics", "get_task", "ner_batch",
    "ner_features", "qa_batch", "qa_features", "qa_predictions", "read_task", "word_tags",
]
