"""--resume continues only a checkpoint that loads and fits this run; a damaged newest one is skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tformer.cli import main
from tformer.training import Trainer, TrainingDiverged
from tformer.training.checkpoint import list_checkpoints
from tformer.training.options import to_yaml


@pytest.fixture
def trained(make_recipe, tmp_path: Path) -> tuple[Path, Path]:
    """A recipe file and its run folder after 4 steps with checkpoints at 2 and 4 (keeping both)."""
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(to_yaml(make_recipe("causal_lm", "--train.max_steps=4", "--out.checkpoint_every=2")))
    assert main(["train", str(recipe_file)]) == 0
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002", "step-00000004"]
    return recipe_file, run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(("flag", "named"), [
    ("--model.config.n_layers=3",
     "model.config.n_layers=unset (the preset's) in the checkpoint's recipe, 3 in this run"),
    ("--data.tokenizer=word", "data.tokenizer='char' in the checkpoint's recipe, 'word' in this run"),
])
def test_resume_refuses_a_checkpoint_of_another_model(trained, capsys, flag, named) -> None:
    recipe_file, _ = trained
    capsys.readouterr()
    rc = main(["train", str(recipe_file), "--train.max_steps=6", "--resume", flag])
    assert rc == 2
    err = one_error_line(capsys)
    assert named in err and "step-00000004 was trained differently" in err and "--out.dir" in err


def test_resume_refuses_fewer_steps_than_the_checkpoint_has(trained, capsys) -> None:
    recipe_file, _ = trained
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--train.max_steps=3", "--resume"]) == 2
    assert "train.max_steps=3 is below the step of the checkpoint to resume" in one_error_line(capsys)


def test_resume_with_another_schedule_says_so_and_follows_the_new_lr(trained, capsys) -> None:
    recipe_file, run = trained
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--train.max_steps=8", "--train.lr=1e-3", "--resume",
                 "--train.schedule=constant"]) == 0
    out = capsys.readouterr().out
    assert "--resume: the learning-rate schedule changes (train.max_steps 4 -> 8, train.lr 0.003 -> 0.001, " \
           "train.schedule cosine -> constant)" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows if r["split"] == "train" and r["step"] > 4] == [1e-3] * 4


def test_a_damaged_newest_checkpoint_is_skipped_with_the_reason(trained, capsys) -> None:
    recipe_file, run = trained
    newest = run / "checkpoints" / "step-00000004" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--train.max_steps=5", "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"--resume: skipping {newest.parent} (model.safetensors: " in out
    assert f"resuming from {run / 'checkpoints' / 'step-00000002'} at step 2" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5]  # the redone steps 3 and 4 are logged once


def test_garbage_trainer_state_is_skipped_and_resume_path_picks_a_checkpoint(trained, capsys) -> None:
    recipe_file, run = trained
    (run / "checkpoints" / "step-00000004" / "trainer.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["train", str(recipe_file), "--train.max_steps=4", "--resume"]) == 0
    assert f"--resume: skipping {run / 'checkpoints' / 'step-00000004'} (trainer.pt: " in capsys.readouterr().out
    chosen = list_checkpoints(run)[0]
    assert main(["train", str(recipe_file), "--train.max_steps=4", f"--resume={chosen}"]) == 0
    assert f"resuming from {chosen} at step {int(chosen.name[5:])}" in capsys.readouterr().out
    missing = run / "checkpoints" / "step-00000099"
    assert main(["train", str(recipe_file), f"--resume={missing}"]) == 2
    assert f"--resume={missing} is not a training checkpoint" in one_error_line(capsys)


def test_the_last_good_checkpoint_of_a_nan_stop_resumes_to_a_finite_loss(make_recipe) -> None:
    """The issue's reproduction: lr 1e3 without warmup or clipping, a checkpoint every step, then lr 1e-4."""
    wild = ("--train.lr=1e3", "--train.warmup_steps=0", "--train.clip_grad_norm=null", "--out.checkpoint_every=1",
            "--train.max_steps=30")
    trainer = Trainer(make_recipe("causal_lm", *wild))
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    trainer.close()
    message = str(caught.value)
    good = list_checkpoints(trainer.run_dir)[-1]
    assert str(good) in message
    calm = ("--train.lr=1e-4", "--train.warmup_steps=0", "--train.clip_grad_norm=null", "--out.checkpoint_every=1")
    step = int(good.name[5:])
    resumed = Trainer(make_recipe("causal_lm", *calm, f"--train.max_steps={step + 3}"), resume=True)
    result = resumed.fit()
    assert resumed.resume_from == good and result.step == step + 3
    rows = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows if r["step"] > step)


def test_resume_of_a_run_that_stopped_before_its_first_checkpoint_starts_its_log_again(make_recipe) -> None:
    recipe = make_recipe("causal_lm", "--train.max_steps=2")
    recipe.run_dir.mkdir()
    (recipe.run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "split": "train", "loss": 9.0})
                                                          + "\n" for s in (1, 2, 3)))
    trainer = Trainer(recipe, resume=True)
    assert trainer.fit().step == 2
    rows = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2] and all(r["loss"] < 9 for r in rows)
