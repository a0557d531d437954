"""Named-entity recognition as token classification (seed: NER): word tags to sub-word labels and back.

A sub-word tokenizer cuts "Leicestershire" into several pieces; the word's tag is the label of its first piece,
and the other pieces, like [CLS], [SEP] and padding, get -100, which the loss ignores (as BERT's paper and
Hugging Face's run_ner do). Predictions go back to one tag per word the same way: the tag predicted on each
word's first piece. A sentence longer than `max_length` pieces is truncated; its words past the cut get no label
in training and the tag "O" in prediction, so seqeval still sees one tag per word of the original sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.data.mlm import pad_ids
from tformer.losses import IGNORE_INDEX
from tformer.tasks.readers import NERSentence
from tformer.tokenization import Tokenizer


@dataclass
class NERFeature:
    """One encoded sentence, the input of a token-classification head (seed: NER).

    `input_ids`, `token_type_ids`, `labels`, `word_ids`: (length,) lists; `labels[k]` is the tag index on the first
    piece of each word, -100 elsewhere; `word_ids[k]` the word piece k comes from, None for special tokens.
    """

    input_ids: list[int]
    token_type_ids: list[int]
    labels: list[int]
    word_ids: list[int | None]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """The label of each word on its first piece, -100 on its other pieces and on special tokens."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def ner_features(tokenizer: Tokenizer, sentences: Sequence[NERSentence], tags: Sequence[str],
                 max_length: int = 128) -> list[NERFeature]:
    """Encode each sentence's words (as pre-split words, so word ids are the sentence's) with labels from `tags`
    (the task's tag list; a tag outside it is an error), truncated to `max_length` pieces."""
    index = {tag: i for i, tag in enumerate(tags)}
    word_labels = []
    for i, sentence in enumerate(sentences):
        if len(sentence.tokens) != len(sentence.tags):
            raise ValueError(f"sentence {i} has {len(sentence.tokens)} words but {len(sentence.tags)} tags; "
                             "give one tag per word")
        unknown = next((tag for tag in sentence.tags if tag not in index), None)
        if unknown is not None:
            raise ValueError(f"sentence {i}: tag {unknown!r} is not one of the {len(tags)} tags {list(tags)}; "
                             "use the task's tag list (Task.labels)")
        word_labels.append([index[tag] for tag in sentence.tags])
    backend = tokenizer.backend
    try:
        backend.enable_truncation(max_length)
        encodings = backend.encode_batch([s.tokens for s in sentences], is_pretokenized=True)
    finally:
        backend.no_truncation()
    return [NERFeature(list(e.ids), list(e.type_ids), align_labels(e.word_ids, labels), list(e.word_ids))
            for e, labels in zip(encodings, word_labels, strict=True)]


def ner_batch(features: Sequence[NERFeature], pad_token_id: int) -> dict[str, Tensor]:
    """Right-padded (batch, longest) int64 `input_ids`, `attention_mask`, `token_type_ids` and `labels` (-100 on
    padding)."""
    input_ids, attention_mask = pad_ids([f.input_ids for f in features], pad_token_id)
    token_type_ids, _ = pad_ids([f.token_type_ids for f in features], 0)
    labels, _ = pad_ids([f.labels for f in features], IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "labels": labels}


def word_tags(word_ids: Sequence[int | None], predictions: Tensor | Sequence[int], tags: Sequence[str],
              n_words: int) -> list[str]:
    """One tag per word from per-piece predicted tag indices (padding beyond `word_ids` ignored): the tag on each
    word's first piece; "O" for words with no piece (cut by truncation)."""
    predictions = torch.as_tensor(predictions).tolist()
    if len(predictions) < len(word_ids):
        raise ValueError(f"{len(predictions)} predictions for {len(word_ids)} pieces; give one per piece")
    words = ["O"] * n_words
    previous = None
    for word, predicted in zip(word_ids, predictions, strict=False):  # predictions may go on into padding
        if word is not None and word != previous:
            if not 0 <= predicted < len(tags):
                raise ValueError(f"predicted tag index {predicted} is outside the {len(tags)} tags; the head's "
                                 f"num_labels must equal the task's {len(tags)} tags")
            if word >= n_words:
                raise ValueError(f"piece of word {word} but the sentence has {n_words} words; pass its word count")
            words[word] = tags[predicted]
        previous = word
    return words
