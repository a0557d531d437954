"""Bad inputs around a run folder (`tformer train`, `tformer demo`): nothing a user has is lost or overwritten."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from run import Case

RECIPE = """name: tiny
model: {{preset: gpt2-tiny}}
data: {{tokenizer: char, block_size: 16, batch_size: 4, text: [{text}]}}
train: {{objective: causal_lm, max_steps: 4, lr: 3.0e-3, warmup_steps: 1, threads: 1, device: cpu}}
eval: {{every: 0, batches: 2}}
out: {{dir: {out}, progress: lines, tensorboard: false, plot: false, log_every: 1, checkpoint_every: 2}}
"""
DEMO = ["--train.max_steps=2", "--data.train_pairs=200", "--data.test_pairs=4", "--data.valid_pairs=4",
        "--train.threads=1", "--eval.every=0"]


def _tformer(work: Path, *argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tformer.cli", *argv], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"fixture `tformer {' '.join(argv)}` failed:\n{done.stderr}")


def cases(work: Path) -> list[Case]:
    text = work / "book.txt"
    text.write_text("the cat sat on the mat and the dog ran to the barn.\n" * 300, encoding="utf-8")
    recipe = work / "tiny.yaml"
    recipe.write_text(RECIPE.format(text=text, out=work / "run"), encoding="utf-8")
    run, train = work / "run", ["train", str(recipe)]
    a_file = work / "a-file.txt"
    a_file.write_text("not a folder\n")
    locked = work / "locked"

    def trained() -> None:
        if not (run / "final").is_dir():
            _tformer(work, *train)

    def trained_with_notes() -> None:
        trained()
        (run / "notes.txt").write_text("the user's own file\n")

    def lock_held_by_a_live_process() -> None:
        locked.mkdir(exist_ok=True)
        (locked / ".tformer.lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "token": "x",
                                                          "started": "2026-01-01T00:00:00"}))

    def demo_ran() -> None:
        if not (work / "d" / "final").is_dir():
            _tformer(work, "demo", "--out", "d", *DEMO)

    def damaged() -> None:
        trained()
        damaged_run = work / "damaged"
        if not damaged_run.exists():
            subprocess.run(["cp", "-r", str(run), str(damaged_run)], check=True)
            for checkpoint in (damaged_run / "checkpoints").iterdir():
                (checkpoint / "trainer.pt").write_bytes(b"garbage")

    return [
        Case("train: out.dir already holds a run", [*train], setup=trained, unchanged=[run], expect="--overwrite"),
        Case("train: --resume with another model", [*train, "--resume", "--train.max_steps=6",
                                                    "--model.config.n_layers=3"], setup=trained, unchanged=[run],
             expect="model.config.n_layers"),
        Case("train: --resume with max_steps below the checkpoint", [*train, "--resume", "--train.max_steps=1"],
             setup=trained, unchanged=[run], expect="train.max_steps=1 is below"),
        Case("train: --resume and --overwrite together", [*train, "--resume", "--overwrite"], setup=trained,
             unchanged=[run]),
        Case("train: --resume=PATH that is no checkpoint", [*train, f"--resume={run / 'final'}"], setup=trained,
             unchanged=[run], expect="not a training checkpoint"),
        Case("train: --resume with every checkpoint damaged", [*train, f"--out.dir={work / 'damaged'}", "--resume"],
             setup=damaged, unchanged=[work / "damaged"], expect="no checkpoint in"),
        Case("train: --overwrite would delete its own tokenizer", [*train, "--overwrite",
                                                                   f"--data.tokenizer={run}/data/tokenizer.json"],
             setup=trained, unchanged=[run], expect="--overwrite would delete"),
        Case("train: --overwrite keeps the user's other files", [*train, "--overwrite"], expect_rc=0,
             setup=trained_with_notes, unchanged=[run / "notes.txt", text]),
        Case("train: out.dir is a file", [*train, f"--out.dir={a_file}"], unchanged=[a_file],
             expect="is a file, not a folder"),
        Case("train: out.dir inside a file", [*train, f"--out.dir={a_file}/run"], unchanged=[a_file],
             expect="is a file, not a folder"),
        Case("train: out.dir locked by a live run", [*train, f"--out.dir={locked}"],
             setup=lock_held_by_a_live_process, unchanged=[locked], expect="in use by another run (pid 1"),
        Case("train: a diverging lr stops with the good checkpoint",
             [*train, f"--out.dir={work / 'nan'}", "--train.lr=1e3", "--train.warmup_steps=0",
              "--train.clip_grad_norm=null", "--out.checkpoint_every=1", "--train.max_steps=40", "--out.progress=none"],
             expect="the last good checkpoint"),
        Case("train: Ctrl-C during training", [*train, f"--out.dir={work / 'stopped'}", "--train.max_steps=100000"],
             expect_rc=130, interrupt_when="step 3:", expect="interrupted at step"),
        Case("demo: --out holding a run", ["demo", "--out", "d", *DEMO], setup=demo_ran, unchanged=[work / "d"],
             expect="already holds a run"),
        Case("demo: Ctrl-C during training", ["demo", "--out", "d2", *DEMO[1:], "--train.max_steps=100000",
                                              "--out.progress=lines", "--out.log_every=1"],
             expect_rc=130, interrupt_when="step 2:", expect="interrupted at step"),
    ]
