"""Ctrl-C and SIGTERM during `tformer train` / `tformer demo`: the step ends, a checkpoint is written, exit 130."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tformer.training import Trainer
from tformer.training.checkpoint import list_checkpoints
from tformer.training.options import to_yaml

SRC = Path(__file__).resolve().parents[2] / "src"
STOPPED = re.compile(r"tformer (train|demo): interrupted at step (\d+): checkpoint at (\S+), continue with --resume")


def stop_when(argv: list[str], text: str, sig: signal.Signals, cwd: Path,
              launcher: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run `tformer ARGV`, send `sig` once `text` appears in its output; returns the exit code and the output."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, *(launcher or ("-m",)), "tformer.cli", *argv], cwd=cwd, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            process.send_signal(sig)
            break
    rest, _ = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + rest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_with_a_checkpoint_that_resumes(make_recipe, tmp_path, sig) -> None:
    recipe = make_recipe("causal_lm", "--train.max_steps=100000", "--out.progress=lines")
    path = tmp_path / "tiny.yaml"
    path.write_text(to_yaml(recipe))
    rc, output = stop_when(["train", str(path)], "step 3:", sig, tmp_path)
    assert rc == 130, output
    assert "Traceback" not in output
    found = STOPPED.search(output)
    assert found, output
    step, checkpoint = int(found.group(2)), Path(found.group(3))
    assert step >= 3 and checkpoint == list_checkpoints(recipe.run_dir)[-1] and checkpoint.name == f"step-{step:08d}"
    assert not (recipe.run_dir / ".tformer.lock").exists()
    resumed = Trainer(make_recipe("causal_lm", f"--train.max_steps={step + 2}"), resume=True)
    assert resumed.fit().step == step + 2 and resumed.resume_from == checkpoint
    rows = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == list(range(1, step + 3))


@pytest.mark.slow  # two demo processes: ~30 s on two cores
def test_ctrl_c_stops_the_demo_and_demo_resume_continues_it(tmp_path) -> None:
    small = ["--data.train_pairs=300", "--data.test_pairs=8", "--data.valid_pairs=8", "--train.threads=1",
             "--out.progress=lines", "--eval.every=0", "--out.log_every=1"]
    rc, output = stop_when(["demo", "--out", "d", "--train.max_steps=100000", *small], "step 2:", signal.SIGINT,
                           tmp_path)
    assert rc == 130 and "Traceback" not in output, output
    found = STOPPED.search(output)
    assert found and found.group(1) == "demo", output
    step = int(found.group(2))
    done = subprocess.run([sys.executable, "-m", "tformer.cli", "demo", "--out", "d", "--resume",
                           f"--train.max_steps={step + 1}", *small], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming from d/checkpoints/step-{step:08d} at step {step}" in done.stdout
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["steps"] == step + 1


@pytest.mark.slow  # a torchrun launch of two processes: ~20 s on two cores
def test_sigterm_under_torchrun_stops_both_processes_at_one_step(make_recipe, tmp_path) -> None:
    recipe = make_recipe("causal_lm", "--train.max_steps=100000", "--out.progress=lines", "--train.distributed=ddp")
    path = tmp_path / "tiny.yaml"
    path.write_text(to_yaml(recipe))
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m")
    _, output = stop_when(["train", str(path)], "step 3:", signal.SIGTERM, tmp_path, launcher=torchrun)
    stops = STOPPED.findall(output)
    assert len(stops) == 1, output  # every process stops; rank 0 alone says so
    step, checkpoint = int(stops[0][1]), Path(stops[0][2])
    assert checkpoint == list_checkpoints(recipe.run_dir)[-1] and "Traceback (most recent" not in \
        output.split("tformer train: interrupted")[0]
    # the checkpoint is a collective: both processes reached it at the same step, each leaving its RNG state
    assert {p.name for p in checkpoint.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
    assert json.loads((checkpoint / "state.json").read_text())["step"] == step
    resumed = Trainer(make_recipe("causal_lm", f"--train.max_steps={step + 1}"), resume=True)  # in one process
    assert resumed.fit().step == step + 1
