"""A run folder is never overwritten: refused without --resume, cleared only by --overwrite, locked, writable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tformer.cli import main
from tformer.training import Trainer
from tformer.training.checkpoint import list_checkpoints
from tformer.training.options import to_yaml
from tformer.training.run_folder import LOCK_NAME

from ..dev_dependency import import_dev

SRC = Path(__file__).resolve().parents[2] / "src"


def fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(folder.rglob("*")):
        digest.update(str(item.relative_to(folder)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def recipe_file(make_recipe, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(to_yaml(make_recipe("causal_lm", "--train.max_steps=2")))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(recipe_file, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(recipe_file)]) == 0
    before = fingerprint(run)
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--train.max_steps=3"]) == 2
    err = one_error_line(capsys)
    assert f"out.dir={run} already holds a run (recipe.yaml, metrics.jsonl, checkpoints/, final/)" in err
    assert "--resume" in err and "new --out.dir" in err and "--overwrite" in err
    assert fingerprint(run) == before


def test_overwrite_deletes_the_old_run_and_keeps_other_files(recipe_file, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(recipe_file), "--train.max_steps=4", "--out.checkpoint_every=2"]) == 0
    (run / "notes.txt").write_text("mine")
    assert main(["train", str(recipe_file), "--overwrite"]) == 0
    assert "overwrite: deleted the old run's recipe.yaml, metrics.jsonl, checkpoints/" in capsys.readouterr().out
    assert (run / "notes.txt").read_text() == "mine"
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]  # the first run's step 4 is gone
    steps = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(steps) == 2  # one run's rows, not two runs mixed
    assert main(["train", str(recipe_file), "--resume", "--overwrite"]) == 2
    assert "pass one of them" in one_error_line(capsys)


def test_overwrite_never_deletes_what_the_run_reads(make_recipe, tmp_path) -> None:
    Trainer(make_recipe("seq2seq", "--train.max_steps=1")).fit()
    tokenizer = tmp_path / "run" / "data" / "tokenizer.json"
    with pytest.raises(ValueError, match="--overwrite would delete .*data, which this run reads"):
        Trainer(make_recipe("seq2seq", f"--data.tokenizer={tokenizer}"), overwrite=True)
    assert tokenizer.is_file()


def test_out_dir_that_is_a_file_or_cannot_be_written_is_one_line(recipe_file, tmp_path, capsys,
                                                                 monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", str(recipe_file), f"--out.dir={blocker}"]) == 2
    assert "is a file, not a folder" in one_error_line(capsys) and blocker.read_text() == "x"
    assert main(["train", str(recipe_file), f"--out.dir={blocker}/run"]) == 2
    assert f"{blocker} is a file, not a folder" in one_error_line(capsys)

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", str(recipe_file), f"--out.dir={tmp_path / 'full'}"]) == 2
    err = one_error_line(capsys)
    assert "cannot be written (No space left on device)" in err
    assert not (tmp_path / "full" / "data").exists()  # refused before any data was prepared


HOLD_LOCK = """
import sys, time
from pathlib import Path
from tformer.training.run_folder import take_lock
lock = take_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_a_locked_folder_names_the_process(recipe_file, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", str(recipe_file)]) == 2
        err = one_error_line(capsys)
        assert f"out.dir={run} is in use by another run (pid {holder.pid} on " in err
        assert not (run / "data").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock is stale and the next run takes it over
    assert (run / LOCK_NAME).is_file()
    assert main(["train", str(recipe_file)]) == 0
    assert f"taking over the lock of a run that is gone (pid {holder.pid}" in capsys.readouterr().out
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_a_full_disk_during_the_run_is_the_line_the_user_sees(recipe_file, tmp_path, capsys, monkeypatch) -> None:
    import_dev("matplotlib")
    from tformer.training import checkpoint, progress

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_model_folder", no_space)
    monkeypatch.setattr(progress, "plot_losses", no_space)  # the disk is full for loss.png as well
    assert main(["train", str(recipe_file), "--out.plot=true", "--out.checkpoint_every=1"]) == 2
    err = one_error_line(capsys)
    assert "could not write checkpoint" in err and "step-00000001 (No space left on device)" in err
    assert not any((tmp_path / "run" / "checkpoints").iterdir())  # no half-written folder left


@pytest.mark.parametrize(("objective", "hint"), [("causal_lm", "tformer generate --model"),
                                                 ("seq2seq", "tformer translate --model"),
                                                 ("mlm", "tformer finetune TASK --model")])
def test_the_hint_at_the_end_names_the_command_of_the_family(make_recipe, tmp_path, capsys, objective,
                                                             hint) -> None:
    path = tmp_path / f"{objective}.yaml"
    path.write_text(to_yaml(make_recipe(objective, "--train.max_steps=1", run=objective)))
    assert main(["train", str(path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model folder:"))
    assert hint in line and str(tmp_path / objective / "final") in line


def test_a_lock_being_written_is_respected_and_an_old_unreadable_one_taken_over(tmp_path) -> None:
    from tformer.training.run_folder import take_lock

    (tmp_path / LOCK_NAME).write_text("")  # another run created it and is writing its pid right now
    with pytest.raises(BlockingIOError, match="is being locked by another run starting now"):
        take_lock(tmp_path)
    os.utime(tmp_path / LOCK_NAME, (0, 0))  # a run killed between creating and writing it, long ago
    lock = take_lock(tmp_path, say=lambda text: None)
    assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
