"""A task's examples as model batches, and the model's outputs back as the task's predictions.

One encoder per problem kind, all with the same three methods, so the fine-tuning loop never branches on the task:

* `items(examples)`: the units a batch is cut from: the examples themselves for sentence, pair and multiple-choice
  tasks (encoded batch by batch, padded to the batch's longest row), QA windows (`qa_features`, with stride) and
  encoded sentences (`ner_features`) for the span and token tasks;
* `batch(items, labels=True)`: the model's keyword arguments, (batch, length) tensors, or (batch, choices, length)
  for multiple choice and GPT's two-order similarity, with the labels the head's loss takes;
* `predict(model, examples, batch_size)`: (predictions, references) in the form `compute_metrics` scores: class ids,
  scores, answer texts against each question's reference answers, one tag per word.

The layouts come from `input_layout` (BERT's `[CLS] A [SEP] B [SEP]`, GPT-1's start / delimiter / extract).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from tformer.models import TaskModel
from tformer.tasks.inputs import input_layout
from tformer.tasks.ner import ner_batch, ner_features, word_tags
from tformer.tasks.qa import qa_batch, qa_features, qa_predictions
from tformer.tasks.readers import ChoiceExample, NERSentence, QAExample, TextExample
from tformer.tasks.registry import Task
from tformer.tokenization import Tokenizer
from tformer.training.wait_bar import wait_bar

HEAD_TASKS = {"classification": "sequence-classification", "regression": "sequence-classification",
              "multiple_choice": "multiple-choice", "qa": "question-answering",
              "token_classification": "token-classification"}


class TaskEncoder(ABC):
    """Examples of one task <-> model inputs and outputs (seed: the fine-tuning input transformations).

    `batch` returns the keyword arguments of a task model: input_ids and attention_mask (batch, length) (or
    (batch, k, length)), token_type_ids for BERT, and the labels of the head's loss when `labels=True`.
    """

    def __init__(self, task: Task, model: TaskModel, tokenizer: Tokenizer, max_length: int) -> None:
        self.task = task
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.is_gpt = model.config.family == "gpt"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def items(self, examples: Sequence[Any]) -> list[Any]:
        return list(examples)

    def size(self, item: Any) -> int:
        """How long `item`'s input rows are, for grouping items of similar length into batches: its token count
        where the item is already encoded (QA windows, NER sentences)."""
        return len(item.input_ids)

    @abstractmethod
    def batch(self, items: Sequence[Any], labels: bool = True) -> dict[str, Tensor]:
        """The model's keyword arguments for `items` (with the head's labels when `labels`)."""

    def outputs(self, items: Sequence[Any]) -> Any:
        """The model's output on `items`, in eval mode, without gradients."""
        with torch.no_grad():
            return self.model(**self._inputs(self.batch(items, labels=False)))

    @abstractmethod
    def predict(self, examples: Sequence[Any], batch_size: int) -> tuple[list, list]:
        """(predictions, references) over `examples`, in the form the task's metrics take."""

    def chunks_by_size(self, items: Sequence[Any], batch_size: int, progress: bool = True) -> Iterator[list[int]]:
        """Indices of `items` cut into batches of similar size, longest first: scoring pads less. Callers put each
        result back at its index, so predictions keep the items' own order. With `progress`, a bar on a
        terminal's stderr counts the batches."""
        order = sorted(range(len(items)), key=lambda i: -self.size(items[i]))
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if not progress:
            return iter(chunks)
        return wait_bar(chunks, total=len(chunks), desc=f"scoring {self.task.name}")

    def _inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch on the model's device, without token types for GPT (GPT-1 separates texts with a token)."""
        if self.is_gpt:
            batch.pop("token_type_ids", None)
        device = next(self.model.parameters()).device
        return {name: tensor.to(device) for name, tensor in batch.items()}


class TextEncoder(TaskEncoder):
    """Sentence and sentence-pair tasks (classification, entailment, similarity): labels (batch,) class ids, or
    float scores for regression. A GPT similarity pair is read in both orders, (batch, 2, length)."""

    def batch(self, items: Sequence[TextExample], labels: bool = True) -> dict[str, Tensor]:
        layout = input_layout(self.model, self.tokenizer, self.max_length)
        first = [e.text_a for e in items]
        if items[0].text_b is None:
            batch = layout.classification(first)
        elif self.task.kind == "regression":
            batch = layout.similarity(first, [e.text_b or "" for e in items])
        else:
            batch = layout.entailment(first, [e.text_b or "" for e in items])
        if labels:
            dtype = torch.float32 if self.task.kind == "regression" else torch.long
            batch["labels"] = torch.tensor([e.label for e in items], dtype=dtype)
        return self._inputs(batch)

    def size(self, item: TextExample) -> int:
        """Characters of the text(s): examples are tokenized batch by batch, so length is estimated, not counted."""
        return len(item.text_a) + len(item.text_b or "")

    def predict(self, examples: Sequence[TextExample], batch_size: int) -> tuple[list, list]:
        predictions: list[Any] = [None] * len(examples)
        for indices in self.chunks_by_size(examples, batch_size):
            logits = self.outputs([examples[i] for i in indices]).logits
            values = logits.squeeze(-1).tolist() if self.task.kind == "regression" else logits.argmax(-1).tolist()
            for i, value in zip(indices, values, strict=True):
                predictions[i] = value
        return predictions, [e.label for e in examples]


class ChoiceEncoder(TaskEncoder):
    """Multiple choice: the context with each choice, (batch, choices, length); labels (batch,) the right one."""

    def batch(self, items: Sequence[ChoiceExample], labels: bool = True) -> dict[str, Tensor]:
        layout = input_layout(self.model, self.tokenizer, self.max_length)
        batch = layout.multiple_choice([e.context for e in items], [e.choices for e in items])
        if labels:
            batch["labels"] = torch.tensor([e.label for e in items], dtype=torch.long)
        return self._inputs(batch)

    def size(self, item: ChoiceExample) -> int:
        """Characters of the context and its longest choice (the row that sets the batch's padded length)."""
        return len(item.context) + max(map(len, item.choices), default=0)

    def predict(self, examples: Sequence[ChoiceExample], batch_size: int) -> tuple[list, list]:
        predictions: list[Any] = [None] * len(examples)
        for indices in self.chunks_by_size(examples, batch_size):
            choices = self.outputs([examples[i] for i in indices]).logits.argmax(-1).tolist()
            for i, choice in zip(indices, choices, strict=True):
                predictions[i] = choice
        return predictions, [e.label for e in examples]


class QAEncoder(TaskEncoder):
    """Extractive QA: windows of `max_length` tokens overlapping by `doc_stride`; labels start_positions and
    end_positions (batch,); predictions the best span over each question's windows, as text."""

    def __init__(self, task: Task, model: TaskModel, tokenizer: Tokenizer, max_length: int, doc_stride: int) -> None:
        super().__init__(task, model, tokenizer, max_length)
        self.doc_stride = doc_stride

    def items(self, examples: Sequence[QAExample]) -> list[Any]:
        return qa_features(self.tokenizer, examples, self.max_length, self.doc_stride)

    def batch(self, items: Sequence[Any], labels: bool = True) -> dict[str, Tensor]:
        batch = qa_batch(items, self.pad_id)
        if not labels:
            del batch["start_positions"], batch["end_positions"]
        return self._inputs(batch)

    def predict(self, examples: Sequence[QAExample], batch_size: int) -> tuple[list, list]:
        features = self.items(examples)
        starts: list[Any] = [None] * len(features)
        ends: list[Any] = [None] * len(features)
        for indices in self.chunks_by_size(features, batch_size):
            out = self.outputs([features[i] for i in indices])
            for k, i in enumerate(indices):
                n = len(features[i].input_ids)
                starts[i] = out.start_logits[k, :n].float().cpu()
                ends[i] = out.end_logits[k, :n].float().cpu()
        spans = qa_predictions(examples, features, starts, ends)
        return [s.text for s in spans], [[text for text, _ in e.answers] for e in examples]


class NEREncoder(TaskEncoder):
    """Token classification: labels (batch, length) on each word's first piece, -100 elsewhere; predictions
    one tag per word of each sentence."""

    def items(self, examples: Sequence[NERSentence]) -> list[Any]:
        return ner_features(self.tokenizer, examples, self.task.labels, self.max_length)

    def batch(self, items: Sequence[Any], labels: bool = True) -> dict[str, Tensor]:
        batch = ner_batch(items, self.pad_id)
        if not labels:
            del batch["labels"]
        return self._inputs(batch)

    def predict(self, examples: Sequence[NERSentence], batch_size: int) -> tuple[list, list]:
        features = self.items(examples)  # one per sentence, in the sentences' order
        predictions: list[Any] = [None] * len(features)
        for indices in self.chunks_by_size(features, batch_size):
            tags = self.outputs([features[i] for i in indices]).logits.argmax(-1)
            for k, i in enumerate(indices):
                predictions[i] = word_tags(features[i].word_ids, tags[k], self.task.labels, len(examples[i].tokens))
        return predictions, [list(e.tags) for e in examples]


def task_encoder(task: Task, model: TaskModel, tokenizer: Tokenizer, max_length: int,
                 doc_stride: int = 128) -> TaskEncoder:
    """The encoder for `task`'s kind on `model`'s input layout, cutting inputs to `max_length` tokens."""
    if task.kind == "qa":
        return QAEncoder(task, model, tokenizer, max_length, doc_stride)
    if task.kind == "token_classification":
        return NEREncoder(task, model, tokenizer, max_length)
    if task.kind == "multiple_choice":
        return ChoiceEncoder(task, model, tokenizer, max_length)
    return TextEncoder(task, model, tokenizer, max_length)
