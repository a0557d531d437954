"""Next-sentence prediction (BERT): pairs [CLS] A [SEP] B [SEP] where B follows A in its document (label 0) or is a
sentence from another document (label 1), the Hugging Face / google-research/bert convention (bert#125).

Documents are separated by blank lines, one sentence per line. Negatives are always drawn from a *different*
document: a one-document corpus cannot give honest negatives (BERT-pytorch#86, DeepLearningExamples#421 saw
true successors labelled random), so it is refused rather than silently mislabelled.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from tformer.data.mlm import MLMCollator, pad_ids

Documents = Sequence[Sequence[Sequence[int]]]


def split_documents(text: str) -> list[list[str]]:
    """Blank lines separate documents; every other line is one sentence (stripped). Empty documents are dropped."""
    documents: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):  # not splitlines(): form feeds and U+2028 inside a line are not breaks
        sentence = line.strip()
        if sentence:
            current.append(sentence)
        elif current:
            documents.append(current)
            current = []
    if current:
        documents.append(current)
    return documents


def encode_documents(documents: Iterable[Iterable[str]], encode: Callable[[str], list[int]]) -> list[list[list[int]]]:
    """Token ids per sentence per document, with `encode` (no special tokens); empty sentences and documents go."""
    encoded = ([ids for ids in (list(encode(sentence)) for sentence in document) if ids] for document in documents)
    return [document for document in encoded if document]


def truncate_pair_lengths(length_a: int, length_b: int, max_tokens: int) -> tuple[int, int]:
    """Lengths after BERT's truncate_seq_pair: drop a token from the longer (B on ties) until both fit max_tokens."""
    excess = length_a + length_b - max_tokens
    if excess <= 0:
        return length_a, length_b
    longer_is_a = length_a > length_b
    gap = abs(length_a - length_b)
    if excess <= gap:  # only the longer one loses tokens
        return (length_a - excess, length_b) if longer_is_a else (length_a, length_b - excess)
    # both end up level; an odd budget leaves the extra token to A because ties trim B first
    return (max_tokens + 1) // 2, max_tokens // 2


def nsp_example(a: Sequence[int], b: Sequence[int], label: int, *, cls_id: int, sep_id: int,
                max_length: int) -> dict[str, Any]:
    """[CLS] A [SEP] B [SEP] with token types 0 (CLS, A, first SEP) and 1 (B, last SEP); A/B cut from the end."""
    length_a, length_b = truncate_pair_lengths(len(a), len(b), max_length - 3)
    input_ids = [cls_id, *a[:length_a], sep_id, *b[:length_b], sep_id]
    token_type_ids = [0] * (length_a + 2) + [1] * (length_b + 1)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label}


def make_nsp_examples(documents: Documents, *, cls_id: int, sep_id: int, max_length: int, seed: int = 0,
                      random_next_probability: float = 0.5) -> list[dict[str, Any]]:
    """One next-sentence example per adjacent sentence pair (A = sentence i, B = i + 1 or a random one).

    `documents`: token ids per sentence per document. Returns dicts with `input_ids`, `token_type_ids` (lists of
    ints, at most `max_length` long) and `next_sentence_label` (0 = B follows A, 1 = B is random). With
    probability `random_next_probability` B is replaced by a uniformly chosen sentence of another, uniformly
    chosen document. Deterministic given `seed`.
    """
    if max_length < 5:
        raise ValueError(f"max_length={max_length} leaves no room for [CLS] A [SEP] B [SEP]; use at least 5")
    if not 0.0 <= random_next_probability <= 1.0:
        raise ValueError(f"random_next_probability={random_next_probability} is outside [0, 1]; BERT uses 0.5")
    documents = [document for document in documents if len(document) > 0]
    if len(documents) < 2:
        raise ValueError(f"next-sentence prediction needs at least 2 non-empty documents for its random negatives, "
                         f"got {len(documents)}; separate documents with blank lines")
    if all(len(document) < 2 for document in documents):
        raise ValueError(f"no document among {len(documents)} has two sentences, so there are no true next "
                         f"sentences; put one sentence per line and separate documents with blank lines")
    rng = random.Random(seed)
    examples = []
    for d, document in enumerate(documents):
        for i in range(len(document) - 1):
            if rng.random() < random_next_probability:
                other = rng.randrange(len(documents) - 1)
                other += other >= d  # skip this document
                b, label = rng.choice(documents[other]), 1
            else:
                b, label = document[i + 1], 0
            examples.append(nsp_example(document[i], b, label, cls_id=cls_id, sep_id=sep_id,
                                        max_length=max_length))
    return examples


class PretrainingCollator(MLMCollator):
    """BERT pre-training (masked LM 15 % 80/10/10 + next-sentence prediction) collator for tformer's BERT.

    NSP examples (dicts from `make_nsp_examples`) -> `input_ids` (masked), `attention_mask`, `token_type_ids`,
    `labels` (batch, longest) and `next_sentence_label` (batch,), all int64. [CLS], [SEP], [MASK], padding and
    any `special_ids` are never masked.
    """

    def __init__(self, *, pad_token_id: int, mask_token_id: int, cls_id: int, sep_id: int, vocab_size: int,
                 special_ids: Iterable[int] = (), mlm_probability: float = 0.15, mask_fraction: float = 0.8,
                 random_fraction: float = 0.1, seed: int | None = None) -> None:
        super().__init__(pad_token_id=pad_token_id, mask_token_id=mask_token_id, vocab_size=vocab_size,
                         special_ids=(*special_ids, cls_id, sep_id), mlm_probability=mlm_probability,
                         mask_fraction=mask_fraction, random_fraction=random_fraction, seed=seed)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:  # type: ignore[override]
        ids, attention_mask = pad_ids([e["input_ids"] for e in examples], self.pad_token_id)
        token_type_ids, _ = pad_ids([e["token_type_ids"] for e in examples], 0)
        masked, labels = self.mask(ids, attention_mask)
        next_sentence_label = torch.tensor([int(e["next_sentence_label"]) for e in examples], dtype=torch.long)
        return {"input_ids": masked, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                "labels": labels, "next_sentence_label": next_sentence_label}
