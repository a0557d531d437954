"""Sequence-to-sequence batches: aligned line files, end tokens, shifted decoder inputs, length bucketing."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer.data.seq2seq import ParallelCorpus, Seq2SeqBatches, read_lines, shift_right

PAD, START, END = 0, 1, 2


def char_ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def skewed_corpus(n: int = 4000, seed: int = 0) -> ParallelCorpus:
    """Lengths from a heavy-tailed distribution: most pairs short, a few very long; contents name the pair."""
    rng = np.random.default_rng(seed)
    source_lengths = np.minimum(rng.lognormal(2.5, 0.8, n).astype(int) + 1, 200)
    target_lengths = np.maximum(source_lengths + rng.integers(-3, 4, n), 1)
    sources = [[10 + i % 1000] * int(length) for i, length in enumerate(source_lengths)]
    targets = [[10 + i % 1000] * int(length - 1) + [END] for i, length in enumerate(target_lengths)]
    return ParallelCorpus(sources, targets)


def padding_share(batches: Seq2SeqBatches) -> float:
    real = padded = 0
    for batch in batches:
        for key in ("attention_mask", "decoder_attention_mask"):
            real += int(batch[key].sum())
            padded += batch[key].numel()
    return 1 - real / padded


def test_read_lines_plain_and_gzip(tmp_path: Path) -> None:
    text = "one\r\ntwo\rstill two\u2028still two\n\nlast without newline"
    (tmp_path / "a.txt").write_bytes(text.encode())
    with gzip.open(tmp_path / "a.txt.gz", "wb") as handle:
        handle.write(text.encode())
    expected = ["one", "two\rstill two\u2028still two", "", "last without newline"]
    assert read_lines(tmp_path / "a.txt") == read_lines(tmp_path / "a.txt.gz") == expected


def test_from_files_appends_end_tokens(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("ab\nc\n")
    with gzip.open(tmp_path / "tgt.txt.gz", "wt") as handle:
        handle.write("X\nYZ\n")
    corpus = ParallelCorpus.from_files(tmp_path / "src.txt", tmp_path / "tgt.txt.gz", char_ids,
                                       lambda s: [ord(c) + 1000 for c in s], end_id=END)
    assert len(corpus) == 2
    assert corpus[0] == ([97, 98, END], [1088, END]) and corpus[1] == ([99, END], [1089, 1090, END])
    bare = ParallelCorpus.from_files(tmp_path / "src.txt", tmp_path / "tgt.txt.gz", char_ids, end_id=END,
                                     source_end=False)
    assert bare[0] == ([97, 98], [88, END])


def test_file_errors_name_the_files_and_counts(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("a\nb\nc\n")
    (tmp_path / "tgt.txt").write_text("x\ny\n")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"src.txt has 3 lines but .*tgt.txt has 2"):
        ParallelCorpus.from_files(tmp_path / "src.txt", tmp_path / "tgt.txt", char_ids, end_id=END)
    with pytest.raises(ValueError, match=r"empty.txt is empty"):
        ParallelCorpus.from_files(tmp_path / "src.txt", tmp_path / "empty.txt", char_ids, end_id=END)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_lines(tmp_path / "nope.txt")


def test_shift_right_is_teacher_forcing() -> None:
    labels = torch.randint(3, 50, (6, 9), generator=torch.Generator().manual_seed(0))
    labels[torch.arange(9) >= torch.tensor([9, 1, 4, 8, 2, 5])[:, None]] = -100
    ours = shift_right(labels, PAD, START)
    expected = torch.cat([torch.full((6, 1), START), labels[:, :-1]], dim=1).masked_fill(
        torch.cat([torch.zeros(6, 1, dtype=torch.bool), labels[:, :-1] == -100], dim=1), PAD)
    assert torch.equal(ours, expected)


def test_batches_hold_the_pairs_with_shifted_decoder_inputs() -> None:
    corpus = skewed_corpus(300)
    batches = Seq2SeqBatches(corpus, batch_size=16, pad_id=PAD, start_id=START, seed=0)
    for indices, batch in zip(batches.batch_indices(), batches, strict=True):
        assert set(batch) == {"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels"}
        assert all(t.dtype == torch.long for t in batch.values())
        for row, index in enumerate(indices.tolist()):
            source, target = corpus[index]
            s, t = len(source), len(target)
            assert batch["input_ids"][row, :s].tolist() == source and (batch["input_ids"][row, s:] == PAD).all()
            assert batch["attention_mask"][row].tolist() == [1] * s + [0] * (batch["input_ids"].size(1) - s)
            width = batch["labels"].size(1)
            assert batch["labels"][row].tolist() == target + [-100] * (width - t)
            assert batch["decoder_input_ids"][row].tolist() == [START] + target[:-1] + [PAD] * (width - t)
            assert batch["decoder_attention_mask"][row].tolist() == [1] * t + [0] * (width - t)


@pytest.mark.parametrize("max_tokens", [None, 400])
def test_every_example_exactly_once_per_epoch(max_tokens: int | None) -> None:
    corpus = skewed_corpus(1000)
    batches = Seq2SeqBatches(corpus, batch_size=32, max_tokens=max_tokens, pad_id=PAD, start_id=START, seed=1,
                             pool_batches=8)
    for _ in range(2):
        seen = []
        for batch in batches:
            assert batch["input_ids"].size(0) <= 32
            if max_tokens is not None:
                widest = max(batch["input_ids"].size(1), batch["labels"].size(1))
                assert batch["input_ids"].size(0) * widest <= max_tokens
            seen += [(ids[0] - 10) for ids in batch["input_ids"].tolist()]  # the pair's tag
        assert sorted(seen) == sorted(i % 1000 for i in range(1000))
    assert batches.epoch == 2


def test_bucketing_reduces_padding_against_random_batches() -> None:
    corpus = skewed_corpus()
    bucketed = padding_share(Seq2SeqBatches(corpus, batch_size=32, pad_id=PAD, start_id=START, seed=0))
    random = padding_share(Seq2SeqBatches(corpus, batch_size=32, pad_id=PAD, start_id=START, seed=0,
                                          pool_batches=1))
    assert random > 0.5 and bucketed < 0.15, (random, bucketed)  # target lengths jitter by +-3 around source


def test_order_is_deterministic_by_seed_and_changes_per_epoch() -> None:
    corpus = skewed_corpus(500)
    make = lambda seed: Seq2SeqBatches(corpus, batch_size=16, pad_id=PAD, start_id=START, seed=seed)  # noqa: E731
    plan = lambda b: [i.tolist() for i in b.batch_indices()]  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    assert plan(a) == plan(b) and plan(a) != plan(c)
    first = [batch["input_ids"] for batch in a]
    assert all(torch.equal(x, y["input_ids"]) for x, y in zip(first, b, strict=True))
    assert plan(a) != plan(make(0))  # a has moved on to epoch 1
    a.set_epoch(0)
    assert plan(a) == plan(make(0))
    ordered = Seq2SeqBatches(corpus, batch_size=16, pad_id=PAD, start_id=START, shuffle=False, pool_batches=1)
    assert np.concatenate(ordered.batch_indices()).tolist() == list(range(500))


def test_a_pair_longer_than_max_tokens_is_refused() -> None:
    corpus = ParallelCorpus([[5] * 10, [5] * 3], [[6, END], [6] * 30 + [END]])
    with pytest.raises(ValueError, match="pair 1 has 31 tokens .* max_tokens=20"):
        Seq2SeqBatches(corpus, batch_size=4, max_tokens=20, pad_id=PAD, start_id=START)
    with pytest.raises(ValueError, match="1 sources but 2 targets"):
        ParallelCorpus([[1]], [[1], [2]])


def test_multi30k_validation_batches(data_dir: Path) -> None:
    corpus = ParallelCorpus.from_files(data_dir / "multi30k" / "val.en.gz", data_dir / "multi30k" / "val.de.gz",
                                       char_ids, end_id=END)
    assert len(corpus) == 1014
    assert corpus[0][0] == char_ids("A group of men are loading cotton onto a truck") + [END]
    batches = Seq2SeqBatches(corpus, batch_size=64, max_tokens=4096, pad_id=PAD, start_id=START)
    assert sum(batch["input_ids"].size(0) for batch in batches) == 1014


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu_batches() -> None:
    corpus = skewed_corpus(200)
    cpu = Seq2SeqBatches(corpus, batch_size=16, pad_id=PAD, start_id=START)
    gpu = Seq2SeqBatches(corpus, batch_size=16, pad_id=PAD, start_id=START, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        assert all(b[k].is_cuda and torch.equal(a[k], b[k].cpu()) for k in a)
