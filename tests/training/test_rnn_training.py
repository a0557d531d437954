"""RNNsearch (family rnn) on the one Trainer: the seq2seq objective trains it, resumes it bit for bit after a
kill -9, refuses a wrong family in one line; the shipped rnn recipes load, validate and run."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tformer.losses import IGNORE_INDEX
from tformer.training import Trainer, load_recipe
from tformer.training.checkpoint import list_checkpoints
from tformer.training.options import OptionError, to_yaml

from ..weights import randomize
from .conftest import state_of

SRC = Path(__file__).resolve().parents[2] / "src"
RNN = ("--model.preset=rnnsearch-tiny", "--model.config.max_positions=64")


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["split"] == "train"]


def test_a_tiny_rnn_trains_on_the_trainer_its_loss_falls_and_it_is_scored(make_recipe) -> None:
    trainer = Trainer(make_recipe("seq2seq", *RNN, "--train.max_steps=30", "--train.lr=1e-2", "--eval.bleu=true",
                                  "--eval.bleu_pairs=4", "--eval.num_beams=2", "--eval.max_new_tokens=8"))
    result = trainer.fit()
    assert trainer.model.config.family == "rnn" and type(trainer.model).__name__ == "RNNSearch"
    losses = [row["loss"] for row in train_rows(result.run_dir)]
    assert len(losses) == 30 and max(losses[-5:]) < 0.85 * min(losses[:3]), losses  # from ln(30) = 3.40
    for key in ("bleu", "exact_match", "test_bleu", "test_exact_match", "loss", "ppl"):
        assert key in result.eval_metrics, key
    assert (result.model_dir / "model.safetensors").is_file() and (result.model_dir / "tokenizer.json").is_file()


def test_the_objective_teacher_forces_the_rnn_and_smooths_its_labels(make_recipe) -> None:
    """The logged loss is the model's own loss on the labels (its decoder reading [start] + target[:-1]); the
    loss that trains is (1 - 0.1) * NLL + 0.1 * the mean over the vocabulary of -log p (label smoothing 0.1)."""
    trainer = Trainer(make_recipe("seq2seq", *RNN, "--train.label_smoothing=0.1"))
    batch = trainer.data.train.next_batch()
    tokens = (batch["labels"] != IGNORE_INDEX).sum()
    model = randomize(trainer.model, seed=0)
    with torch.no_grad():
        smoothed, sums = trainer.objective.loss(model, batch, {"tokens": tokens})
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert float(sums["loss_sum"] / tokens) == pytest.approx(float(out.loss), rel=1e-5)
    log_p, real = out.logits.log_softmax(-1), batch["labels"] != IGNORE_INDEX
    nll = -log_p.gather(-1, batch["labels"].clamp(min=0)[..., None])[..., 0]
    expected = ((0.9 * nll - 0.1 * log_p.mean(-1))[real]).sum() / tokens
    assert float(smoothed) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(smoothed) - float(out.loss)) > 1e-3  # the smoothing is not a no-op on these weights


def test_a_wrong_family_for_seq2seq_is_one_line(make_recipe) -> None:
    with pytest.raises(OptionError) as caught:
        load_recipe("rnn-demo-numbers", ["--model.preset=gpt2-tiny"])
    message = str(caught.value)
    assert message == ("train.objective=seq2seq trains an encoder-decoder or rnn model but model.preset=gpt2-tiny is "
                       "gpt; pick an encoder-decoder or rnn preset (`tformer models`)")
    with pytest.raises(OptionError, match="train.objective=causal_lm trains a gpt model but model.preset="
                                          "rnnsearch-tiny is rnn; pick a gpt preset"):
        make_recipe("causal_lm", "--model.preset=rnnsearch-tiny")


def _kill_after(argv: list[str], text: str, cwd: Path) -> tuple[int, str]:
    """Run `tformer ARGV` and kill -9 it once `text` appears in its output: no handler, no last checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tformer.cli", *argv], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            process.send_signal(signal.SIGKILL)
            break
    rest, _ = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + rest


def test_an_rnn_run_killed_at_step_10_resumes_bit_for_bit(make_recipe, tmp_path: Path) -> None:
    flags = (*RNN, "--model.config.dropout=0.1", "--train.max_steps=16", "--out.checkpoint_every=8",
             "--out.progress=lines")  # dropout: the RNG state is part of what must come back
    straight = Trainer(make_recipe("seq2seq", *flags, run="straight"))
    straight.fit()
    flags += (f"--data.tokenizer={straight.run_dir / 'data' / 'tokenizer.json'}",)
    recipe = make_recipe("seq2seq", *flags, run="killed")
    path = tmp_path / "rnn.yaml"
    path.write_text(to_yaml(recipe))
    rc, output = _kill_after(["train", str(path)], "step 10:", tmp_path)
    assert rc == -signal.SIGKILL, output
    assert [p.name for p in list_checkpoints(recipe.run_dir)] == ["step-00000008"]
    assert not (recipe.run_dir / "final").exists()
    resumed = Trainer(make_recipe("seq2seq", *flags, run="killed"), resume=True)
    assert resumed.fit().step == 16
    for (name, a), b in zip(state_of(straight.model).items(), state_of(resumed.model).values(), strict=True):
        assert torch.equal(a, b), f"{name} differs after the resume"
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert [row["loss"] for row in train_rows(recipe.run_dir)] == [row["loss"] for row in train_rows(straight.run_dir)]


# ----------------------------------------------------------------------------------------------- the recipes

TINY_RNN = ("--model.config.d_model=16", "--model.config.hidden_size=16", "--model.config.alignment_size=16",
            "--model.config.maxout_size=16", "--train.max_steps=3", "--train.threads=1", "--train.device=cpu",
            "--eval.every=0", "--eval.batches=1", "--eval.bleu_pairs=2", "--eval.num_beams=2",
            "--eval.max_new_tokens=6", "--out.progress=none", "--out.tensorboard=false", "--out.plot=false",
            "--out.log_every=1")


@pytest.mark.parametrize(("rnn", "transformer", "preset"), [
    ("rnn-demo-numbers", "demo-numbers", "rnnsearch-demo"),
    ("rnn-multi30k", "transformer-multi30k", "rnnsearch-multi30k"),
])
def test_the_rnn_recipes_read_the_data_of_their_transformer_counterparts(rnn: str, transformer: str,
                                                                         preset: str) -> None:
    ours, theirs = load_recipe(rnn), load_recipe(transformer)
    assert ours.model.preset == preset and ours.train.objective == theirs.train.objective == "seq2seq"
    assert ours.data == theirs.data  # the same corpus, splits, tokenizer, vocabulary and batches
    assert (ours.eval.bleu, ours.eval.bleu_tokenize, ours.eval.bleu_pairs, ours.eval.num_beams,
            ours.eval.max_new_tokens) == (theirs.eval.bleu, theirs.eval.bleu_tokenize, theirs.eval.bleu_pairs,
                                          theirs.eval.num_beams, theirs.eval.max_new_tokens)
    assert ours.train.label_smoothing == theirs.train.label_smoothing
    assert ours.train.clip_grad_norm == 1.0


def test_a_tiny_rnn_demo_numbers_runs(tmp_path: Path) -> None:
    recipe = load_recipe("rnn-demo-numbers", [*TINY_RNN, f"--out.dir={tmp_path / 'run'}", "--data.train_pairs=200",
                                              "--data.small_numbers=0", "--data.valid_pairs=4",
                                              "--data.test_pairs=4", "--data.tokenizer_pairs=200"])
    result = Trainer(recipe).fit()
    assert result.step == 3 and "test_exact_match" in result.eval_metrics
    assert json.loads((result.model_dir / "config.json").read_text())["tformer_config"]["family"] == "rnn"


def _write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def test_a_tiny_rnn_multi30k_runs_on_files_laid_out_as_multi30k(tmp_path: Path) -> None:
    """The recipe's own relative paths (multi30k/train.en.gz ...) under a data.root holding a few sentences."""
    english = ["a man rides a bike", "two dogs play in the snow", "a girl reads a book", "the boy eats bread"]
    german = ["ein mann fährt fahrrad", "zwei hunde spielen im schnee", "ein mädchen liest ein buch",
              "der junge isst brot"]
    recipe = load_recipe("rnn-multi30k", [])
    for option, lines in (("source", english), ("target", german)):
        for split in ("train", "valid", "test"):
            _write_gz(tmp_path / "data" / getattr(recipe.data, f"{split}_{option}"), lines * (8 if split == "train"
                                                                                               else 1))
    recipe = load_recipe("rnn-multi30k", [*TINY_RNN, f"--data.root={tmp_path / 'data'}", "--data.vocab_size=300",
                                          f"--out.dir={tmp_path / 'run'}"])
    result = Trainer(recipe).fit()
    assert result.step == 3 and "test_bleu" in result.eval_metrics
