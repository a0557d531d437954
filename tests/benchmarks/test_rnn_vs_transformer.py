"""benchmarks/rnn_vs_transformer.py: the path-length task, where parameters are counted, the schedule fitted to a
budget, one-line option errors, and one real --quick run end to end (tables, figures, machine line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.benchmarks.conftest import BENCHMARKS

REPO = BENCHMARKS.parent


def test_the_answer_stands_d_positions_before_the_end_and_nothing_else_marks_it() -> None:
    from rnn_vs_transformer_path import EOS, PathTask, make_batch

    task = PathTask(distances=(4, 32), content_tokens=8, jitter=5)
    generator = torch.Generator().manual_seed(0)
    lengths = set()
    for d in task.distances:
        for _ in range(20):
            batch = make_batch(task, d, 6, generator)
            source, labels = batch["input_ids"], batch["labels"]
            end = source.shape[1] - 1
            lengths.add(end - d)
            assert (source[:, end] == EOS).all() and (labels[:, 1] == EOS).all()
            assert torch.equal(labels[:, 0], source[:, end - d])
            assert ((source[:, :end] >= 3) & (source[:, :end] < 3 + 8)).all()  # only content tokens before [EOS]
    assert len(lengths) > 3  # the answer's absolute position moves: only its distance from the end is fixed


class _AttentionDecoder(nn.Module):  # its name says attention, but the cell inside it is recurrence
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(2, 2)
        self.query = nn.Linear(2, 2, bias=False)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.decoder = _AttentionDecoder()
        self.encoder = nn.GRU(4, 3, bidirectional=True)
        self.norm = nn.LayerNorm(6)
        self.bridge = nn.Linear(6, 3)
        self.output_projection = nn.Linear(3, 10)


def test_parameter_places_count_every_tensor_once_by_module_type_then_name() -> None:
    from rnn_vs_transformer_models import parameter_places
    from tformer.config import ModelConfig
    from tformer.models import build_model

    toy = parameter_places(_Toy())
    gru = 2 * (3 * 3 * (4 + 3) + 2 * 3 * 3)
    assert toy["embeddings"]["count"] == 40 and toy["recurrence"]["count"] == gru + 3 * 2 * (2 + 2) + 2 * 3 * 2
    assert toy["attention"]["count"] == 4  # the container's own projection; its cell counted as recurrence
    assert toy["norms"]["count"] == 12 and toy["other"]["count"] == 21 and toy["output"]["count"] == 40
    model = build_model(ModelConfig.preset("transformer-tiny"))  # tied output: counted once, with the embeddings
    places = parameter_places(model)
    assert sum(p["count"] for p in places.values()) == model.num_parameters()
    assert places["embeddings"]["count"] == 99 * 32 and places["recurrence"]["count"] == 0
    assert places["attention"]["count"] > 0 and places["feed-forward"]["count"] > 0


class _FakeTrainer:
    def __init__(self) -> None:
        from tformer.training.optim import build_optimizer, build_scheduler
        from tformer.training.recipe import load_recipe

        self.recipe = load_recipe("demo-numbers")  # 800 steps, warmup 100, cosine to 1e-4 from 2e-3
        self.optimizer = build_optimizer(nn.Linear(2, 2), lr=2e-3, weight_decay=0.0, betas=(0.9, 0.98), eps=1e-9)
        self.scheduler = build_scheduler(self.optimizer, "cosine", max_steps=800, warmup_steps=100, lr=2e-3,
                                         min_lr=1e-4)
        self.step = 0
        for _ in range(5):
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1


def test_the_schedule_is_fitted_to_the_budget_from_the_measured_step_time() -> None:
    from rnn_vs_transformer_quality import fit_schedule
    from tformer.training.optim import lr_multiplier

    trainer = _FakeTrainer()
    steps = fit_schedule(trainer, budget_s=60.0, seconds=[9.0, 0.5, 0.5, 0.6, 0.4])  # the first step is warm-up
    assert steps == 120 and trainer.recipe.train.max_steps == 120  # 60 s at 0.5 s a step
    assert trainer.recipe.train.warmup_steps == 30  # a quarter of the fitted steps, not the recipe's 100
    factor = lr_multiplier("cosine", max_steps=120, warmup_steps=30, lr=2e-3, min_lr=1e-4)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * factor(5))


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from rnn_vs_transformer_options import parse_args

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for argv, expected in ((["--sections", "speed"], "unknown section 'speed'"),
                           (["--lengths", "32,x"], "--lengths='32,x' must be comma-separated integers"),
                           (["--demo-budget", "0"], "--demo-budget=0.0 must be above 0 seconds"),
                           (["--out", str(foreign)], "holds files this benchmark did not write")):
        with pytest.raises(SystemExit) as stopped:
            parse_args([*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # the whole benchmark on tiny sizes: about a minute on two shared cores
def test_quick_run_writes_every_table_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "rnn_vs_transformer.py"), "--quick", "--out", str(out),
                           "--threads", "1"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert text.startswith("# RNN vs Transformer") and "machine: " in text and "torch threads: 1" in text
    results = json.loads((out / "results.json").read_text())
    has_data = "multi30k" in results["results"]
    for heading in ("## Parameters", "## Parallelism", "## Path length", "## Quality per wall-clock: demo"):
        assert heading in text
    assert ("## Quality per wall-clock: multi30k" in text) == has_data
    figures = ["parallelism.png", "path_length.png", "quality_demo.png", *(["quality_multi30k.png"] * has_data)]
    for name in figures:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "results.md").read_text().strip() == text.strip()
    rows = results["results"]["parallelism"]
    assert {row["length"] for row in rows if row["family"] == "transformer"} == {32, 64, 128, 256}
    assert all(len(row["steps"]) == 1 and row["seconds"] > 0 for row in rows)
    with_rnn = any(row["family"] == "rnn" for row in rows)
    if with_rnn:  # the RNN at the shared lengths only, n sequential steps per layer
        assert {row["length"]: row["sequential_steps"] for row in rows if row["family"] == "rnn"} == {
            32: 32, 64: 64, 128: 128}
        assert "RNNsearch" in text.split("## Path length")[1]
    demo = results["results"]["demo"]["results"]["transformer"]
    assert demo["train_seconds"] <= 6.0 + 5 and {"greedy", "beam4"} <= set(demo["test"])
