"""Fine-tuning tasks (seed: classification, entailment, similarity, multiple choice, QA, NER): the datasets' readers
and registry, QA windows and span extraction, NER label alignment, and the standard metrics."""

from tformer.tasks.metrics import METRICS, compute_metrics
from tformer.tasks.ner import NERFeature, align_labels, ner_batch, ner_features, word_tags
from tformer.tasks.qa import QAFeature, QASpan, best_span, qa_batch, qa_features, qa_predictions
from tformer.tasks.readers import ChoiceExample, DataFormatError, NERSentence, QAExample, TextExample
from tformer.tasks.registry import TASKS, Task, get_task, read_task

__all__ = [
    "METRICS", "TASKS", "ChoiceExample", "DataFormatError", "NERFeature", "NERSentence", "QAExample", "QAFeature",
    "QASpan", "Task", "TextExample", "align_labels", "best_span", "compute_metrics", "get_task", "ner_batch",
    "ner_features", "qa_batch", "qa_features", "qa_predictions", "read_task", "word_tags",
]
