"""Extractive question answering (seed: QA as span extraction): examples to windows, logits back to answer text.

Features: the question and the context are encoded as a pair, `[CLS] question [SEP] context [SEP]` for BERT;
the question is kept whole (leading spaces dropped, as some SQuAD questions have many), and a context too long for
one window of `max_length` tokens is split into several, each overlapping the previous by `doc_stride` tokens: the
windows Hugging Face's run_qa gets as a fast tokenizer's overflowing encodings. Each window knows, for each context
token, its character span in the context (the tokenizer's offsets), and for training the answer's first and last
token, or 0 ([CLS]) for both when the answer is not wholly inside the window.

Postprocessing: a model gives a start and an end logit per token; over all windows of one example, the answer is
the span with the highest start + end logit among the valid ones (both tokens in the context, end >= start, at
most `max_answer_length` tokens), mapped back through the offsets to a character span of the context (without the
leading space a byte-level BPE token such as "Ġword" carries in its offsets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.data.mlm import pad_ids
from tformer.tasks.readers import QAExample
from tformer.tokenization import Tokenizer


@dataclass
class QAFeature:
    """One window of a question + context pair, the input of a QA head (seed: QA as span extraction).

    `input_ids`, `token_type_ids`: (length,) lists; `offsets[k]`: the (start, end) characters of context token k
    in the example's context, None for question, special and padding tokens; `start_position`, `end_position`:
    the answer's first and last token in this window, both 0 ([CLS]) when the answer is not wholly inside it.
    """

    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    start_position: int
    end_position: int


@dataclass
class QASpan:
    """A predicted answer: `text == context[start:end]` (characters), and its start + end logit `score`."""

    text: str
    start: int
    end: int
    score: float


def qa_features(tokenizer: Tokenizer, examples: Sequence[QAExample], max_length: int = 384,
                doc_stride: int = 128) -> list[QAFeature]:
    """Windows of at most `max_length` tokens for each example (one or more, in example order), consecutive windows
    sharing `doc_stride` context tokens; the training target is each example's first answer."""
    if not 0 <= doc_stride < max_length:
        raise ValueError(f"doc_stride={doc_stride} must be at least 0 and below max_length={max_length}")
    backend = tokenizer.backend
    specials = backend.num_special_tokens_to_add(is_pair=True)
    # Each example's context is cut into windows (`Encoding.truncate` with a stride, the windows a fast tokenizer
    # returns as overflowing), and each window joined to the question by the tokenizer's post-processor. Pair
    # truncation with overflow in one call would do the same, but `tokenizers` drops the sequence ids of the
    # overflowing windows when there is no post-processor (byte-level BPE), and those ids say which tokens are context.
    questions = backend.encode_batch([e.question.lstrip() for e in examples], add_special_tokens=False)
    contexts = backend.encode_batch([e.context for e in examples], add_special_tokens=False)
    features = []
    for index, (example, question, context) in enumerate(zip(examples, questions, contexts, strict=True)):
        room = max_length - specials - len(question.ids)  # context tokens per window
        if room <= doc_stride:
            raise ValueError(f"question {example.id!r} has {len(question.ids)} tokens, leaving {room} context tokens "
                             f"per window of max_length={max_length}, not more than doc_stride={doc_stride}: raise "
                             "max_length or lower doc_stride")
        context.truncate(room, stride=doc_stride)
        for window in (context, *context.overflowing):
            encoding = backend.post_process(question, window, add_special_tokens=True)
            pieces = zip(encoding.offsets, encoding.sequence_ids, strict=True)
            offsets = [tuple(o) if s == 1 else None for o, s in pieces]
            start, end = _answer_tokens(example, offsets)
            features.append(QAFeature(index, list(encoding.ids), list(encoding.type_ids), offsets, start, end))
    return features


def _answer_tokens(example: QAExample, offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """The first and last token of the first answer in this window, or (0, 0) when it is not wholly inside."""
    context = [k for k, o in enumerate(offsets) if o is not None]
    if not example.answers or not context:
        return 0, 0
    text, start_char = example.answers[0]
    end_char = start_char + len(text)
    if not (offsets[context[0]][0] <= start_char and offsets[context[-1]][1] >= end_char):
        return 0, 0
    start = max(k for k in context if offsets[k][0] <= start_char)
    end = min(k for k in context if offsets[k][1] >= end_char)
    return start, end


def qa_batch(features: Sequence[QAFeature], pad_token_id: int) -> dict[str, Tensor]:
    """Right-padded (batch, longest) int64 `input_ids`, `attention_mask`, `token_type_ids`, and (batch,)
    `start_positions`, `end_positions`."""
    input_ids, attention_mask = pad_ids([f.input_ids for f in features], pad_token_id)
    token_type_ids, _ = pad_ids([f.token_type_ids for f in features], 0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "start_positions": torch.tensor([f.start_position for f in features], dtype=torch.long),
            "end_positions": torch.tensor([f.end_position for f in features], dtype=torch.long)}


def best_span(context: str, features: Sequence[QAFeature], start_logits: Sequence[Tensor | Sequence[float]],
              end_logits: Sequence[Tensor | Sequence[float]], max_answer_length: int = 30) -> QASpan:
    """The valid span with the highest start + end logit over the windows of one example. `start_logits[i]` and
    `end_logits[i]` are window i's logits, (length,) or longer (padding is ignored). An empty span, score -inf,
    when no window has a context token."""
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length={max_answer_length} must be at least 1 token")
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(f"{len(features)} windows but {len(start_logits)} start and {len(end_logits)} end logit "
                         "rows; give one row of each per window")
    best = QASpan("", 0, 0, float("-inf"))
    for feature, starts, ends in zip(features, start_logits, end_logits, strict=True):
        n = len(feature.input_ids)
        starts, ends = torch.as_tensor(starts, dtype=torch.float32), torch.as_tensor(ends, dtype=torch.float32)
        if starts.dim() != 1 or ends.dim() != 1 or min(starts.numel(), ends.numel()) < n:
            raise ValueError(f"a window of {n} tokens got logits of shape {tuple(starts.shape)} / "
                             f"{tuple(ends.shape)}; give one start and one end logit per token")
        in_context = torch.tensor([o is not None for o in feature.offsets])
        position = torch.arange(n)
        length = position[None, :] - position[:, None] + 1  # [start, end] -> end - start + 1 tokens
        valid = in_context[:, None] & in_context[None, :] & (length >= 1) & (length <= max_answer_length)
        scores = (starts[:n, None] + ends[None, :n]).masked_fill(~valid, float("-inf"))
        start, end = divmod(int(scores.argmax()), n)
        score = float(scores[start, end])
        if score > best.score:
            first, last = feature.offsets[start][0], feature.offsets[end][1]
            while first < last and context[first].isspace():
                first += 1
            best = QASpan(context[first:last], first, last, score)
    return best


def qa_predictions(examples: Sequence[QAExample], features: Sequence[QAFeature],
                   start_logits: Tensor | Sequence[Sequence[float]], end_logits: Tensor | Sequence[Sequence[float]],
                   max_answer_length: int = 30) -> list[QASpan]:
    """One best span per example (in example order) from the logits of all features, (n_features, length) each,
    as `qa_features` made them."""
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(f"{len(features)} features but {len(start_logits)} start and {len(end_logits)} end logit "
                         "rows; run the model on every feature")
    windows: list[list[int]] = [[] for _ in examples]
    for i, feature in enumerate(features):
        if not 0 <= feature.example_index < len(examples):
            raise ValueError(f"feature {i} belongs to example {feature.example_index}, but there are "
                             f"{len(examples)} examples; pass the examples the features were made from")
        windows[feature.example_index].append(i)
    return [best_span(example.context, [features[i] for i in rows], [start_logits[i] for i in rows],
                      [end_logits[i] for i in rows], max_answer_length)
            for example, rows in zip(examples, windows, strict=True)]
