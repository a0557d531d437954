"""Causal LM batches: windows of a memory-mapped token file, shifted labels, resumable random state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer.data.lm import CausalLMBatches


def write_tokens(path: Path, tokens: np.ndarray, *, meta: bool = True) -> Path:
    tokens.tofile(path)
    if meta:
        (path.parent / "meta.json").write_text(json.dumps({"dtype": tokens.dtype.name, "vocab_size": 65_536}))
    return path


@pytest.fixture
def train_bin(tmp_path: Path) -> Path:
    # token i has id i % 65_000, so a window's content reveals where it started
    return write_tokens(tmp_path / "train.bin", (np.arange(100_000) % 65_000).astype(np.uint16))


def test_windows_are_contiguous_and_labels_are_shifted_by_one(train_bin: Path) -> None:
    x, y = CausalLMBatches(train_bin, block_size=16, batch_size=8, seed=1).next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    data = np.fromfile(train_bin, dtype=np.uint16).astype(np.int64)
    starts = x[:, 0].numpy()  # ids are unique below 65_000, and every start here is below that
    for row, start in enumerate(starts):
        assert x[row].tolist() == data[start:start + 16].tolist()
        assert y[row].tolist() == data[start + 1:start + 17].tolist()
    assert len(set(starts.tolist())) > 1


def test_hf_style_gives_unshifted_labels_with_the_same_windows(train_bin: Path) -> None:
    x, y = CausalLMBatches(train_bin, block_size=16, batch_size=4, seed=3).next_batch()
    ids, labels = CausalLMBatches(train_bin, block_size=16, batch_size=4, seed=3, hf_style=True).next_batch()
    assert torch.equal(ids, x) and torch.equal(labels, ids)
    assert labels.data_ptr() != ids.data_ptr()  # a loss that edits labels in place must not corrupt the inputs
    assert torch.equal(y[:, :-1], ids[:, 1:])


def test_windows_cover_the_whole_file_and_never_run_past_its_end(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "train.bin", np.arange(12, dtype=np.uint16))
    batches = CausalLMBatches(path, block_size=4, batch_size=64, seed=0)
    starts = set()
    for _ in range(10):
        x, y = batches.next_batch()
        assert int(y.max()) <= 11
        starts.update(x[:, 0].tolist())
    assert starts == set(range(8))  # every start 0..n-T-1 is drawn, none beyond


def test_same_seed_same_batches_and_different_seed_different_batches(train_bin: Path) -> None:
    def stream(seed: int) -> torch.Tensor:
        batches = CausalLMBatches(train_bin, 8, 4, seed=seed)
        return torch.cat([batches.next_batch()[0] for _ in range(3)])

    assert torch.equal(stream(7), stream(7)) and not torch.equal(stream(7), stream(8))


def test_resume_from_state_dict_continues_the_same_stream(train_bin: Path) -> None:
    continuous = CausalLMBatches(train_bin, block_size=8, batch_size=4, seed=5)
    expected = [continuous.next_batch() for _ in range(7)]

    first = CausalLMBatches(train_bin, block_size=8, batch_size=4, seed=5)
    got = [first.next_batch() for _ in range(3)]
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON training-state file
    resumed = CausalLMBatches(train_bin, block_size=8, batch_size=4, seed=999)  # seed is overridden by the state
    resumed.load_state_dict(state)
    got += [resumed.next_batch() for _ in range(4)]
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)


def test_load_state_dict_refuses_a_different_geometry(train_bin: Path) -> None:
    state = CausalLMBatches(train_bin, block_size=8, batch_size=4).state_dict()
    with pytest.raises(ValueError, match="block_size=8"):
        CausalLMBatches(train_bin, block_size=16, batch_size=4).load_state_dict(state)


def test_no_memmap_is_held_between_batches(train_bin: Path) -> None:
    batches = CausalLMBatches(train_bin, block_size=8, batch_size=4)
    for (x, _), _ in zip(batches, range(3), strict=False):
        assert x.shape == (4, 8)
        assert not any(isinstance(value, np.memmap) for value in vars(batches).values())
        maps = Path("/proc/self/maps")
        if maps.exists():  # Linux: the file must not stay mapped into the process
            assert str(train_bin.resolve()) not in maps.read_text()


def test_dtype_comes_from_meta_json_or_argument(tmp_path: Path) -> None:
    tokens = np.array([70_000, 1, 2, 3, 4, 5], dtype=np.uint32)
    path = write_tokens(tmp_path / "train.bin", tokens)
    x, y = CausalLMBatches(path, block_size=5, batch_size=1).next_batch()
    assert x.tolist() == [[70_000, 1, 2, 3, 4]] and y.tolist() == [[1, 2, 3, 4, 5]]

    bare = tmp_path / "bare"
    bare.mkdir()
    path = write_tokens(bare / "train.bin", tokens, meta=False)
    with pytest.raises(ValueError, match="meta.json"):
        CausalLMBatches(path, block_size=2, batch_size=1)
    assert CausalLMBatches(path, block_size=2, batch_size=1, dtype="uint32").num_tokens == 6
    with pytest.raises(ValueError, match="'float32' .* not supported"):
        CausalLMBatches(path, block_size=2, batch_size=1, dtype="float32")


def test_wrong_dtype_is_caught_by_the_file_size(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "train.bin", np.arange(7, dtype=np.uint16), meta=False)
    with pytest.raises(ValueError, match="14 bytes, not a multiple of 4"):
        CausalLMBatches(path, block_size=2, batch_size=1, dtype="uint32")


def test_too_short_file_names_its_length_and_block_size(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "train.bin", np.arange(16, dtype=np.uint16))
    assert CausalLMBatches(path, block_size=15, batch_size=1).next_batch()[0].shape == (1, 15)
    with pytest.raises(ValueError, match=r"holds 16 tokens, fewer than block_size \+ 1 = 17"):
        CausalLMBatches(path, block_size=16, batch_size=1)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        CausalLMBatches(path.with_name("missing.bin"), block_size=2, batch_size=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu_batches(train_bin: Path) -> None:
    x, y = CausalLMBatches(train_bin, 32, 8, seed=2).next_batch()
    gx, gy = CausalLMBatches(train_bin, 32, 8, seed=2, device="cuda").next_batch()
    assert gx.is_cuda and gy.is_cuda
    assert torch.equal(gx.cpu(), x) and torch.equal(gy.cpu(), y)
