"""Endless, resumable streams of training batches: `next_batch()`, `state_dict()`, `load_state_dict()`.

A stream gives the *global* micro-batch (every process's rows together); each process takes its share
(`distributed.shard`). That keeps the data a run sees independent of how many processes share it, which is
what lets a 2-process run reproduce a 1-process run exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tformer.data.lm import CausalLMBatches
from tformer.data.seq2seq import ParallelCorpus, Seq2SeqBatches
from tformer.losses import IGNORE_INDEX


class WindowStream:
    """Causal LM windows of a token file (nanoGPT's get_batch): {"input_ids", "labels"} (batch, block_size)."""

    def __init__(self, path: str, *, block_size: int, batch_size: int, seed: int) -> None:
        self.batches = CausalLMBatches(path, block_size, batch_size, seed=seed)

    def next_batch(self) -> dict[str, Tensor]:
        x, y = self.batches.next_batch()
        return {"input_ids": x, "labels": y}

    def state_dict(self) -> dict[str, Any]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state)


class EpochStream:
    """Batches from a fixed order per epoch (`order(epoch)` -> index arrays), collated by `collate(indices)`.

    Position = (epoch, batch within the epoch); passes repeat with the next epoch's order. `generator` (optional)
    is the collate's own randomness (e.g. MLM masking), saved with the position so a resumed run masks alike.
    """

    def __init__(self, order: Callable[[int], list[np.ndarray]], collate: Callable[[np.ndarray], dict[str, Tensor]],
                 generator: torch.Generator | None = None) -> None:
        self.order = order
        self.collate = collate
        self.generator = generator
        self.epoch = 0
        self.position = 0
        self._batches: list[np.ndarray] | None = None

    def next_batch(self) -> dict[str, Tensor]:
        if self._batches is None:
            self._batches = self.order(self.epoch)
            if not self._batches:
                raise ValueError("an epoch of this data has no batches; the training set is empty")
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self.order(self.epoch)
        indices = self._batches[self.position]
        self.position += 1
        return self.collate(indices)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "position": self.position}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


def fixed_batches(count: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """Indices 0..count-1 in batches of batch_size (the last may be smaller), shuffled by (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    return [order[i:i + batch_size] for i in range(0, count, batch_size)]


def seq2seq_stream(corpus: ParallelCorpus, *, batch_size: int, max_tokens: int | None, pad_id: int, start_id: int,
                   seed: int) -> EpochStream:
    """Encoder-decoder teacher-forcing batches, bucketed by length (data.seq2seq.Seq2SeqBatches)."""
    batches = Seq2SeqBatches(corpus, batch_size=batch_size, max_tokens=max_tokens, pad_id=pad_id, start_id=start_id,
                             seed=seed)
    return EpochStream(lambda epoch: batches.batch_indices(epoch), batches.collate)


def joined_pairs(corpus: ParallelCorpus, indices: Sequence[int] | np.ndarray, *, sep_id: int,
                 pad_id: int) -> dict[str, Tensor]:
    """T-D rows: source [SEP] target (target ends with its end token), right-padded.

    `labels[t]` is the token at t + 1 where that token is part of the target, -100 elsewhere, so the loss
    covers the target (and its end token) only; `attention_mask` is 1 on tokens.
    """
    rows, starts = [], []
    for i in np.asarray(indices).tolist():
        source, target = corpus[i]
        rows.append([*source, sep_id, *target])
        starts.append(len(source) + 1)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, (row, start) in enumerate(zip(rows, starts, strict=True)):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
        labels[r, start - 1:len(row) - 1] = torch.tensor(row[start:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def decoder_pairs_stream(corpus: ParallelCorpus, *, batch_size: int, max_tokens: int | None, sep_id: int,
                         pad_id: int, seed: int) -> EpochStream:
    """T-D batches: the same length bucketing as the encoder-decoder's, rows joined by `joined_pairs`."""
    order = Seq2SeqBatches(corpus, batch_size=batch_size, max_tokens=max_tokens, pad_id=pad_id, start_id=pad_id,
                           seed=seed)
    return EpochStream(lambda epoch: order.batch_indices(epoch),
                       lambda indices: joined_pairs(corpus, indices, sep_id=sep_id, pad_id=pad_id))


def length_grouped_order(order: list[int], sizes: Sequence[int], batch_size: int,
                         group_batches: int = 50) -> list[int]:
    """`order` (a random permutation) regrouped so each batch holds items of similar size, as Hugging Face's
    LengthGroupedSampler: cut into groups of `group_batches` batches, sort each group longest first, and put the
    group holding the longest item first (a run that runs out of memory does so at once)."""
    group = group_batches * batch_size
    groups = [sorted(order[i:i + group], key=lambda k: -sizes[k]) for i in range(0, len(order), group)]
    longest = max(range(len(groups)), key=lambda g: sizes[groups[g][0]], default=0)
    if groups:
        groups[0], groups[longest] = groups[longest], groups[0]
    return [index for members in groups for index in members]


def shuffled_batches(count: int, batch_size: int, seed: int, epoch: int,
                     sizes: Sequence[int] | None = None) -> list[np.ndarray]:
    """Epoch `epoch` of fine-tuning batches: the `epoch`-th torch.randperm of a generator seeded with `seed` (so a
    run's epochs follow one another as one generator would give them, and a resumed run finds any epoch again),
    regrouped by `sizes` when given (`length_grouped_order`), cut into batches of `batch_size`."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epoch):
        torch.randperm(count, generator=generator)
    order = torch.randperm(count, generator=generator).tolist()
    if sizes is not None:
        order = length_grouped_order(order, sizes, batch_size)
    return [np.asarray(order[i:i + batch_size], dtype=np.int64) for i in range(0, count, batch_size)]
