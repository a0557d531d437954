"""Sequence-to-sequence batches for teacher forcing: parallel source/target files, one pair per line, bucketed by
length so that little of each batch is padding.

Token ids are kept ragged (one flat int64 array plus offsets per side), so a batch is gathered and padded with a
handful of vectorised numpy operations whatever its size. The decoder inputs are the labels shifted right behind
the start token (`shift_right`, which the encoder-decoder model also uses when given labels alone).
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tformer.losses import IGNORE_INDEX


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (gzip-compressed when it ends in .gz), without line endings.

    Only "\\n" (and "\\r\\n") end a line, so a stray "\\r" or U+2028 inside a sentence cannot shift the pairing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the path of a text file with one sentence per line")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as handle:
        lines = [line.removesuffix("\n").removesuffix("\r") for line in handle]
    if not lines:
        raise ValueError(f"{path} is empty; a parallel corpus file needs one sentence per line")
    return lines


def shift_right(labels: Tensor, pad_id: int, start_id: int) -> Tensor:
    """Teacher forcing: decoder inputs [start, y1, ..., y_{n-1}] from labels (batch, length); -100 becomes pad."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_id)


class RaggedIds:
    """Variable-length id sequences stored flat: `flat` (total,) int64, `lengths` (n,), `offsets` (n,)."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64,
                                count=int(self.lengths.sum()))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> list[int]:
        start = int(self.offsets[index])
        return self.flat[start:start + int(self.lengths[index])].tolist()

    def padded(self, indices: np.ndarray, pad_value: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows `indices` right-padded to the longest: ids (batch, longest) and mask (batch, longest), 1 = token."""
        lengths = self.lengths[indices]
        width = max(int(lengths.max()), 1)
        columns = np.arange(width)
        mask = columns < lengths[:, None]
        if self.flat.size == 0:
            return np.full(mask.shape, pad_value, dtype=np.int64), mask.astype(np.int64)
        positions = np.minimum(self.offsets[indices][:, None] + columns, self.flat.size - 1)
        return np.where(mask, self.flat[positions], pad_value), mask.astype(np.int64)


class ParallelCorpus:
    """Teacher-forcing pairs: source ids and target ids (the target ends with the end token), one pair per line."""

    def __init__(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> None:
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets; every source needs one target")
        if len(sources) == 0:
            raise ValueError("the parallel corpus is empty; give at least one source/target pair")
        self.sources = RaggedIds(sources)
        self.targets = RaggedIds(targets)

    @classmethod
    def from_files(cls, source_path: str | Path, target_path: str | Path, encode_source: Callable[[str], list[int]],
                   encode_target: Callable[[str], list[int]] | None = None, *, end_id: int,
                   source_end: bool = True) -> ParallelCorpus:
        """Read line-aligned files (.gz read directly) and encode each line; `end_id` ends every target (and source).

        `encode_*` are tokenizer encodes without special tokens; `encode_target` defaults to `encode_source` (a
        shared vocabulary). `source_end=False` leaves the source without an end token.
        """
        source_lines, target_lines = read_lines(source_path), read_lines(target_path)
        if len(source_lines) != len(target_lines):
            raise ValueError(f"{source_path} has {len(source_lines)} lines but {target_path} has "
                             f"{len(target_lines)}; line i of each must be a translation of the other")
        encode_target = encode_target or encode_source
        source_tail = [end_id] if source_end else []
        sources = [[*encode_source(line), *source_tail] for line in source_lines]
        targets = [[*encode_target(line), end_id] for line in target_lines]
        return cls(sources, targets)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.sources[index], self.targets[index]


class Seq2SeqBatches:
    """Teacher forcing with shifted targets: one pass over a ParallelCorpus per iteration, as length-bucketed dicts.

    Each batch holds `input_ids`, `attention_mask` (batch, source len) and `decoder_input_ids`,
    `decoder_attention_mask`, `labels` (batch, target len), int64; `labels` is -100 at padding and
    `decoder_input_ids` is `[start] + labels[:-1]` with pads. Every example appears exactly once per epoch.

    Bucketing: the shuffled corpus is cut into pools of `pool_batches * batch_size` examples, each pool is sorted
    by (source, target) length and cut into batches of at most `batch_size` examples and, with `max_tokens`, at
    most `max_tokens` padded tokens (batch * longest of source and target); the batches are then shuffled.
    `pool_batches=1` is plain random batching (no sorting). The order depends only on `seed` and the epoch,
    which advances after each full pass (or is set with `set_epoch`, as DistributedSampler's is).
    """

    def __init__(self, corpus: ParallelCorpus, *, batch_size: int, pad_id: int, start_id: int,
                 max_tokens: int | None = None, seed: int = 0, shuffle: bool = True, pool_batches: int = 100,
                 device: str | torch.device = "cpu") -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got batch_size={batch_size}, "
                             f"pool_batches={pool_batches}")
        self.corpus = corpus
        self.longest = np.maximum(corpus.sources.lengths, corpus.targets.lengths)
        if max_tokens is not None and int(self.longest.max()) > max_tokens:
            worst = int(self.longest.argmax())
            raise ValueError(f"pair {worst} has {int(self.longest[worst])} tokens on one side, more than "
                             f"max_tokens={max_tokens}; raise max_tokens or drop pairs that long")
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.start_id = start_id
        self.seed = seed
        self.shuffle = shuffle
        self.pool_batches = pool_batches
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order the next iteration gives."""
        self.epoch = epoch

    def _split(self, pool: np.ndarray) -> list[np.ndarray]:
        """Cut a length-sorted pool into batches by batch_size and, if set, max_tokens."""
        if self.max_tokens is None:
            return np.split(pool, range(self.batch_size, len(pool), self.batch_size))
        cuts, start, widest = [], 0, 0
        for k, length in enumerate(self.longest[pool].tolist()):
            wider = max(widest, length)
            if k - start + 1 > self.batch_size or (k - start + 1) * wider > self.max_tokens:
                cuts.append(k)
                start, wider = k, length
            widest = wider
        return np.split(pool, cuts)

    def batch_indices(self, epoch: int | None = None) -> list[np.ndarray]:
        """The corpus indices of each batch of an epoch (default: the current one), in the order they come."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        n = len(self.corpus)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        source, target = self.corpus.sources.lengths, self.corpus.targets.lengths
        pool_size = self.pool_batches * self.batch_size
        batches: list[np.ndarray] = []
        for begin in range(0, n, pool_size):
            pool = order[begin:begin + pool_size]
            if self.pool_batches > 1:  # by source length, then target length
                pool = pool[np.lexsort((target[pool], source[pool]))]
            batches.extend(self._split(pool))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def collate(self, indices: np.ndarray) -> dict[str, Tensor]:
        """The padded batch of the given corpus indices."""
        source, source_mask = self.corpus.sources.padded(indices, self.pad_id)
        target, target_mask = self.corpus.targets.padded(indices, self.pad_id)
        labels = torch.from_numpy(np.where(target_mask == 1, target, IGNORE_INDEX))
        batch = {"input_ids": torch.from_numpy(source), "attention_mask": torch.from_numpy(source_mask),
                 # a short row's end token would land one past its mask: pad it, as the row reads in the docstring
                 "decoder_input_ids": shift_right(labels, self.pad_id, self.start_id).masked_fill(
                     torch.from_numpy(target_mask == 0), self.pad_id),
                 "decoder_attention_mask": torch.from_numpy(target_mask), "labels": labels}
        if self.device.type == "cuda":
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def __len__(self) -> int:
        return len(self.batch_indices())

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for indices in self.batch_indices():
            yield self.collate(indices)
        self.epoch += 1
