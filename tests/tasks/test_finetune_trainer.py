"""Fine-tuning runs on the one Trainer: a killed fine-tune resumes bit for bit, 2 torchrun processes (DDP, FSDP)
equal one, gradient accumulation equals the larger batch, bf16 runs, a NaN stop names a checkpoint, and the
`tformer finetune` run is a `train.objective=task` recipe that `tformer train` runs alike."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tformer
from tformer.cli import main
from tformer.tasks.finetune import FinetuneOptions, evaluate, finetune, prepare_finetune
from tformer.tasks.registry import get_task
from tformer.training import TrainingDiverged, load_recipe
from tformer.training.objectives.task import TaskFinetuning
from tformer.training.streams import shuffled_batches

from .finetune_data import write_data, write_model

TOLERANCE = 1e-5
FAST = ["--epochs=2", "--lr=1e-3", "--batch_size=8", "--log_every=1", "--threads=1", "--device=cpu"]
SRC = Path(tformer.__file__).resolve().parents[1]

# Runs `tformer finetune ARGV` and kills itself (SIGKILL, no clean-up) once the checkpoint of step KILL_AFTER is on
# disk and the step after it logged (the checkpoint is written during that next step, once its loss is finite).
KILLED = r'''
import os, signal, sys
from tformer.training import trainer as T

KILL_AFTER = int(os.environ["TEST_KILL_AFTER"])
real_step = T.Trainer.train_step


def train_step(self):
    stats = real_step(self)
    if self.step == KILL_AFTER + 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return stats


T.Trainer.train_step = train_step
from tformer.cli import main  # noqa: E402

sys.exit(main())
'''


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune-trainer")
    return {"data": write_data(root / "data"), "bert": write_model(root / "bert", "bert"),
            "still": write_model(root / "still", "bert", dropout=0.0, attention_dropout=0.0),
            "gpt": write_model(root / "gpt", "gpt", dropout=0.0, attention_dropout=0.0)}


def _run(folders: dict[str, Path], task: str, model: str, out: Path, *overrides: str, **kwargs) -> object:
    options = FinetuneOptions.from_overrides([*FAST, *overrides])
    return finetune(task, folders[model], folders["data"], out, options, stream=io.StringIO(), **kwargs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return tformer.from_pretrained(folder).state_dict()


def _train_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if row["split"] == "train"}


def _assert_close(ours: Path, reference: Path, tolerance: float = TOLERANCE) -> None:
    mine, theirs = _weights(ours), _weights(reference)
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.allclose(mine[name], tensor, atol=tolerance, rtol=0), name
    a, b = _train_losses(ours), _train_losses(reference)
    assert a.keys() == b.keys()
    for step, loss in b.items():
        assert a[step] == pytest.approx(loss, abs=tolerance, rel=0), step


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def test_a_killed_finetune_resumes_bit_for_bit(folders, tmp_path) -> None:
    flags = ["--checkpoint_every=3", "--max_steps=10"]  # dropout 0.1: the RNG state must come back too
    straight = tmp_path / "straight"
    _run(folders, "sst2", "bert", straight, *flags)
    killed = tmp_path / "killed"
    script = tmp_path / "killed.py"
    script.write_text(KILLED, encoding="utf-8")
    argv = ["finetune", "sst2", "--model", str(folders["bert"]), "--data", str(folders["data"]), "--out", str(killed),
            *FAST, *flags]
    done = subprocess.run([sys.executable, str(script), *argv], env={**_env(), "TEST_KILL_AFTER": "6"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (killed / "checkpoints" / "step-00000006").is_dir() and not (killed / "model.safetensors").exists()
    assert max(_train_losses(killed)) == 7  # the step after the checkpoint was logged, then redone on resume
    result = _run(folders, "sst2", "bert", killed, *flags, resume=True)
    assert result.steps == 10
    mine, theirs = _weights(killed), _weights(straight)
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), name
    assert _train_losses(killed) == _train_losses(straight)
    assert json.loads((killed / "metrics.json").read_text())["metrics"] == result.metrics


def test_resume_refuses_a_checkpoint_of_another_task(folders, tmp_path) -> None:
    out = tmp_path / "rte"
    _run(folders, "rte", "bert", out, "--max_steps=2")
    with pytest.raises(ValueError, match=r"task.name='rte' in the checkpoint's recipe, 'sst2' in this run"):
        _run(folders, "sst2", "bert", out, "--max_steps=2", resume=True)


def _torchrun(folders: dict[str, Path], out: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "tformer.cli", "finetune", "stsb", "--model", str(folders["still"]), "--data", str(folders["data"]),
               "--out", str(out), *FAST, *flags]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_torchrun_processes_fine_tune_as_one(folders, tmp_path, strategy) -> None:
    flags = ("--max_steps=5", "--grad_accum=2", "--batch_size=6", "--max_grad_norm=0.5")  # odd shares: 3 + 3 rows
    one = tmp_path / "one"
    single = _run(folders, "stsb", "still", one, *flags)
    two = tmp_path / "two"
    done = _torchrun(folders, two, *flags, f"--distributed={strategy}")
    _assert_close(two, one)
    record = json.loads((two / "metrics.json").read_text())
    assert record["processes"] == 2 and record["steps"] == 5
    assert record["metrics"] == pytest.approx(single.metrics, abs=1e-4)
    assert done.stdout.count("stsb dev:") == 1  # rank 0 alone reports
    assert evaluate("stsb", two, folders["data"]) == pytest.approx(record["metrics"], abs=1e-6)


@pytest.mark.parametrize("family", ["still", "gpt"])
def test_grad_accum_of_batch_b_equals_one_micro_batch_of_2b(folders, tmp_path, family) -> None:
    task = "rte" if family == "still" else "stsb"  # GPT: both orders of a pair, (batch, 2, length), and the LM loss
    accumulated = tmp_path / "accumulated"
    _run(folders, task, family, accumulated, "--batch_size=4", "--grad_accum=2", "--max_steps=6")
    whole = tmp_path / "whole"
    _run(folders, task, family, whole, "--batch_size=8", "--max_steps=6")
    _assert_close(accumulated, whole)


def test_bf16_fine_tuning_runs_and_scores(folders, tmp_path) -> None:
    out = tmp_path / "bf16"
    result = _run(folders, "conll2003", "bert", out, "--precision=bf16", "--max_steps=4")
    losses = _train_losses(out)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert load_recipe(out / "recipe.yaml").train.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in tformer.from_pretrained(out).parameters())  # fp32 master weights
    assert evaluate("conll2003", out, folders["data"]) == pytest.approx(result.metrics)


def test_a_nan_loss_stops_the_fine_tune_naming_the_last_checkpoint(folders, tmp_path, monkeypatch) -> None:
    real_loss, calls = TaskFinetuning.loss, {"n": 0}

    def poisoned(self, model, batch, totals):
        calls["n"] += 1
        loss, sums = real_loss(self, model, batch, totals)
        if calls["n"] == 5:
            return loss * float("nan"), {**sums, "task_loss_sum": sums["task_loss_sum"] * float("nan")}
        return loss, sums

    monkeypatch.setattr(TaskFinetuning, "loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at step 5; .*step-00000002\)") as error:
        _run(folders, "sst2", "bert", out, "--checkpoint_every=2", "--max_steps=8")
    assert "\n" not in str(error.value)
    # step 4's checkpoint was due, but its weights gave the NaN: never written
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000002"]


def test_the_finetune_run_is_a_task_recipe_that_tformer_train_runs_alike(folders, tmp_path, capsys) -> None:
    out = tmp_path / "finetune"
    _run(folders, "sst2", "bert", out, "--max_steps=5")
    again = tmp_path / "train"
    assert main(["train", str(out / "recipe.yaml"), f"--out.dir={again}", "--out.progress=none"]) == 0
    assert "done: 5 steps" in capsys.readouterr().out
    mine, theirs = _weights(again), _weights(out)
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), name
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.train.objective == "task" and recipe.task.name == "sst2" and recipe.train.max_steps == 5


def test_the_data_order_is_one_generators_successive_permutations(folders, tmp_path) -> None:
    """Epoch e is the e-th torch.randperm of one generator seeded with --seed (the order of the loop fine-tuning had
    before the Trainer, so its documented figures reproduce), and a stream resumed mid-epoch finds it again."""
    generator = torch.Generator().manual_seed(42)
    expected = [torch.randperm(50, generator=generator).tolist() for _ in range(3)]
    for epoch in range(3):
        batches = shuffled_batches(50, 8, 42, epoch)
        assert [int(i) for batch in batches for i in batch] == expected[epoch]
        assert [len(batch) for batch in batches] == [8] * 6 + [2]
    assert expected[0] != expected[1]
    options = FinetuneOptions.from_overrides([*FAST, "--max_steps=1"])
    _, data, _ = prepare_finetune(get_task("sst2"), folders["bert"], folders["data"], tmp_path / "unused", options)
    seen = [data.train.next_batch()["labels"] for _ in range(12)]  # 8 batches an epoch: into the second epoch
    data.train.load_state_dict({"epoch": 1, "position": 2})
    assert torch.equal(data.train.next_batch()["labels"], seen[10])


@pytest.mark.parametrize("family", ["bert", "gpt"])
@pytest.mark.parametrize("task", ["sst2", "stsb", "copa", "squad", "conll2003"])
def test_the_step_loss_is_the_heads_loss_counted_over_its_items(folders, tmp_path, family, task) -> None:
    """One micro-batch that is the whole step: the objective's loss equals the head's own (mean) loss, GPT-1's
    auxiliary LM loss included, so the sums over items and tokens are counted as the head averages them."""
    options = FinetuneOptions.from_overrides([*FAST, "--max_steps=1"])
    recipe, data, _ = prepare_finetune(get_task(task), folders[family], folders["data"], tmp_path / "out", options)
    objective = TaskFinetuning(recipe)
    model = objective.build_model(data).eval()
    batch = data.train.next_batch()
    with torch.no_grad():
        loss, sums = objective.loss(model, batch, objective.counts(batch))
        mean = model(**batch)
    assert float(loss) == pytest.approx(float(mean.loss), rel=1e-5)
    assert (mean.lm_loss is not None) == (family == "gpt") == ("lm_loss_sum" in sums)
    assert objective.summary({k: float(v) for k, v in sums.items()})["loss"] == pytest.approx(float(mean.loss),
                                                                                               rel=1e-5)
