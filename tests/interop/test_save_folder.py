"""save_pretrained: a target that cannot be a model folder is one line naming it and the fix; files get the
umask's mode (issue 13)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import tformer
from tformer import Tokenizer
from tformer.config import ModelConfig

from ..dev_dependency import import_dev


@pytest.fixture
def model() -> tformer.TransformerModel:
    torch.manual_seed(0)
    return tformer.build_model(ModelConfig.preset("gpt2-tiny"))


def test_save_onto_an_existing_file_is_refused_and_the_file_kept(model, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    with pytest.raises(FileExistsError) as error:
        tformer.save_pretrained(model, target)
    assert str(error.value) == (f"cannot save the model to {str(target)!r}: it is a file, and a model is saved as a "
                                "folder (config.json, model.safetensors); pass a folder path, or move the file away")
    assert target.read_text() == "my notes"


def test_save_under_a_file_is_refused(model, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(NotADirectoryError, match=r"cannot save the model to '.*notes.txt/a/b': '.*notes.txt' is a "
                                                 r"file, not a folder; pass a folder path that is not under a file"):
        tformer.save_pretrained(model, tmp_path / "notes.txt" / "a" / "b")


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """The folder made unwritable: by its mode for a user, by a read-only bind mount for root (who ignores modes)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield "permission denied"
        finally:
            folder.chmod(0o755)
        return
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"root cannot make a read-only bind mount here ({bound.stderr.strip()})")  # no CAP_SYS_ADMIN
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"root cannot remount a bind mount read-only here ({remount.stderr.strip()})")
        yield "the file system is read-only"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_save_into_a_read_only_folder_is_a_permission_error(model, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder) as reason, pytest.raises(
            PermissionError, match=rf"cannot write '.*locked': {reason}; save to a"):
        tformer.save_pretrained(model, folder)
    assert list(folder.iterdir()) == []


def test_unwritable_folder_is_found_before_anything_is_written(model, tmp_path: Path, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)  # what a read-only folder answers to a new file
    with pytest.raises(PermissionError) as error:
        tformer.save_pretrained(model, tmp_path / "out")
    assert str(error.value).startswith(f"cannot write '{tmp_path / 'out'}': permission denied; save to a folder")
    assert list((tmp_path / "out").iterdir()) == []


def test_full_disk_while_writing_weights_is_one_line_and_keeps_the_old_files(model, tmp_path: Path,
                                                                              monkeypatch) -> None:
    tformer.save_pretrained(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def full_disk(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error 28) at path "
                              f"\"{filename}\"")

    monkeypatch.setattr("tformer.interop.huggingface.save_file", full_disk)
    with pytest.raises(OSError) as error:
        tformer.save_pretrained(model, tmp_path)
    assert str(error.value) == (f"cannot write '{tmp_path / 'model.safetensors'}': no space left on the device; "
                                "free some space and save again (the files already there are kept)")
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_weights_get_the_same_mode_as_the_other_files(model, tmp_path: Path, umask: int) -> None:
    tokenizer = Tokenizer.train(iter(["hello world"] * 3), kind="char")
    old = os.umask(umask)
    try:
        tformer.save_pretrained(model, tmp_path, tokenizer=tokenizer)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"config.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask,
                     "generation_config.json": 0o666 & ~umask, "tokenizer.json": 0o666 & ~umask}


def test_full_disk_while_writing_the_tokenizer_is_one_line(model, tmp_path: Path, monkeypatch) -> None:
    tokenizer = Tokenizer.train(iter(["hello world"] * 3), kind="char")

    def full_disk(path: object) -> None:
        raise Exception("No space left on device (os error 28)")  # what tokenizers' Rust side raises

    monkeypatch.setattr(tokenizer, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write '.*tokenizer.json': no space left on the device"):
        tformer.save_pretrained(model, tmp_path, tokenizer=tokenizer)


def test_a_tokenizer_of_another_library_is_refused_before_writing(model, tmp_path: Path) -> None:
    transformers = import_dev("transformers")
    tokenizer = Tokenizer.train(iter(["hello world"] * 3), kind="char")
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend)
    with pytest.raises(ValueError, match=r"tokenizer is a \w+, but save_pretrained writes a "
                                         r"tformer.Tokenizer; wrap .* as tformer.Tokenizer\(tok.backend_tokenizer\)"):
        tformer.save_pretrained(model, tmp_path / "out", tokenizer=theirs)
    assert not (tmp_path / "out").exists()
    tformer.save_pretrained(model, tmp_path / "out", tokenizer=Tokenizer(theirs.backend_tokenizer))  # the fix it names
    assert Tokenizer.from_file(tmp_path / "out").encode("hello") == tokenizer.encode("hello")
