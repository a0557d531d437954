"""Contextual embeddings: how alike one word's vectors stay across sentences, layer by layer.

The embedding table gives a word one vector wherever it stands; each block then mixes in its context, so "bank"
by a river and "bank" with money drift apart. For each sentence we take the word's first sub-word token at
every layer (0 = the embedding output, then each block) and compare the sentences pairwise by cosine similarity.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tformer.models import BERT, GPT, EncoderDecoder, TransformerModel
from tformer.models.heads import TaskModel
from tformer.tokenization import Tokenizer
from tformer.viz.capture import encode_checked
from tformer.viz.figure import DPI, image_path, new_figure, plain_text, save_figure

CONTEXTUAL_FIGSIZE = (7.0, 4.5)


def word_states(model: TransformerModel, tokenizer: Tokenizer, word: str, sentences: Sequence[str]) -> np.ndarray:
    """(sentences, layers + 1, d_model): the hidden state of the word's first sub-word token in each sentence
    at each layer (the encoder's, for an encoder-decoder). The word is found whole, ignoring case."""
    backbone = model.backbone if isinstance(model, TaskModel) else model
    if not word.strip():
        raise ValueError("the word is empty: name the word to follow, e.g. --word bank")
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    states = []
    try:
        for sentence in sentences:
            encoding = encode_checked(tokenizer, backbone, sentence, "sentence")
            position = _first_token_of(word, sentence, encoding.offsets)
            ids = torch.tensor([encoding.ids], dtype=torch.long, device=device)
            with torch.no_grad():
                if isinstance(backbone, EncoderDecoder):
                    hidden = backbone.encode(ids, output_hidden_states=True).hidden_states
                elif isinstance(backbone, BERT | GPT):
                    hidden = backbone(ids, output_hidden_states=True).hidden_states
                else:
                    raise ValueError(f"cannot read hidden states of a {type(model).__name__}: expected a BERT, GPT "
                                     "or EncoderDecoder")
            states.append(torch.stack([h[0, position] for h in hidden]).double().cpu().numpy())
    finally:
        backbone.train(was_training)
    return np.stack(states)


def contextual_similarities(model: TransformerModel, tokenizer: Tokenizer, word: str,
                            sentences: Sequence[str]) -> np.ndarray:
    """(pairs, layers + 1): cosine similarity of the word's states in each pair of sentences (i < j, in order)."""
    if len(sentences) < 2:
        raise ValueError(f"got {len(sentences)} sentence(s): comparing the word's embeddings needs at least 2")
    states = word_states(model, tokenizer, word, sentences)
    unit = states / np.linalg.norm(states, axis=-1, keepdims=True).clip(min=1e-12)
    return np.stack([(unit[i] * unit[j]).sum(axis=-1) for i, j in itertools.combinations(range(len(sentences)), 2)])


def contextual_similarity(model: TransformerModel, tokenizer: Tokenizer, word: str,
                          sentences: Sequence[str]) -> np.ndarray:
    """(layers + 1,): the mean pairwise cosine similarity of the word's embeddings across the sentences, per layer
    (0 = embeddings). 1.0 means the context changed nothing; lower means the vectors took on their context."""
    return contextual_similarities(model, tokenizer, word, sentences).mean(axis=0)


def plot_contextual(similarities: np.ndarray, path: str | Path, *, word: str | None = None,
                    figsize: tuple[float, float] = CONTEXTUAL_FIGSIZE, dpi: int = DPI) -> Path:
    """Line plot per layer of `contextual_similarities`' (pairs, layers + 1) array: one faint line per sentence
    pair, their mean in bold, and the min-max band."""
    image_path(path)
    similarities = np.atleast_2d(np.asarray(similarities, dtype=np.float64))
    layers = np.arange(similarities.shape[1])
    figure = new_figure(*figsize, dpi)
    axes = figure.add_subplot()
    axes.fill_between(layers, similarities.min(axis=0), similarities.max(axis=0), alpha=0.15, color="tab:blue",
                      label="min-max over sentence pairs")
    for n, row in enumerate(similarities):
        axes.plot(layers, row, color="tab:blue", alpha=0.35, linewidth=0.8,
                  label="one sentence pair" if n == 0 else None)
    axes.plot(layers, similarities.mean(axis=0), "o-", color="tab:red", linewidth=2, label="mean")
    axes.set_xticks(layers, ["emb", *map(str, layers[1:])])
    axes.set_xlabel("layer (emb = embedding output)")
    axes.set_ylabel("cosine similarity")
    subject = f'"{plain_text(word)}"' if word else "the word"
    axes.set_title(f"{subject} in {_sentence_count(similarities.shape[0])} sentences: similarity per layer",
                   fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    return save_figure(figure, path)


def _sentence_count(pairs: int) -> int:
    """n with n (n - 1) / 2 == pairs."""
    return int(round((1 + (1 + 8 * pairs) ** 0.5) / 2))


def _first_token_of(word: str, sentence: str, offsets: list[tuple[int, int]]) -> int:
    """Index of the first token whose characters overlap the word's first whole-word occurrence in the sentence."""
    match = re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", sentence, flags=re.IGNORECASE)
    if match is not None:
        start, end = match.span()
        for index, (first, last) in enumerate(offsets):
            if first < last and first < end and last > start:  # special tokens have empty spans
                return index
    raise ValueError(f"the word {word!r} is not in the sentence {sentence!r}: each sentence must contain it")
