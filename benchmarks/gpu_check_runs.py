"""The checks of benchmarks/gpu_check.py that run the library's training entry points on written inputs.

Each returns (passed, figure) or raises `Skipped` with the reason; gpu_check.py turns them into rows. Everything
they read is written to a temporary folder first (the GPU machine has no ../shared/data): a tiny SST-2 folder in
GLUE's TSV format with a tiny BERT folder (WordPiece tokenizer saved with it) for fine-tuning, and a small text
file with a tiny causal-LM recipe for `tformer train` (DDP under torchrun, fp16 with the GradScaler).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import tformer
from tformer import ModelConfig

GOOD = ("great", "moving", "charming", "superb", "lovely", "wonderful")
BAD = ("dull", "tedious", "clumsy", "bland", "awful", "boring")
NOUNS = ("film", "plot", "cast", "script", "ending", "story")
TEXT_WORDS = "the cat sat on a mat while the dog ran to the old red barn and a bird sang in a tree".split()
TORCHRUN_TIMEOUT_S = 300
DATA_PARALLEL_TOLERANCE = 1e-4  # loss gap between 2 processes and 1 (the CPU gloo tests hold 1e-5)


class Skipped(Exception):
    """A check that cannot run here (no CUDA, one GPU); its message is the reason shown in the table."""


def subprocess_env() -> dict[str, str]:
    """The environment for a child process, with the imported tformer's src/ first on PYTHONPATH (same code)."""
    src = str(Path(tformer.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}


def write_sst2(root: Path, train: int = 32, dev: int = 16) -> Path:
    """glue/SST-2/{train,dev}.tsv under `root` (header `sentence<TAB>label`), a learnable toy sentiment task."""
    rng = random.Random(0)
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", train), ("dev", dev)):
        rows = [f"the {rng.choice(NOUNS)} was {rng.choice(GOOD if i % 2 else BAD)}\t{i % 2}" for i in range(n)]
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def write_bert(folder: Path) -> Path:
    """A tiny BERT with a 2-class sequence-classification head and a WordPiece tokenizer, saved as a model folder."""
    texts = [" ".join(GOOD + BAD + NOUNS + ("the", "was"))] * 4
    tokenizer = tformer.Tokenizer.train(iter(texts), kind="wordpiece", vocab_size=120)
    config = ModelConfig.preset("bert-tiny", vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                task="sequence-classification", num_labels=2, id2label={0: "negative", 1: "positive"})
    torch.manual_seed(0)
    tformer.save_pretrained(tformer.build_model(config), folder, tokenizer=tokenizer)
    return folder


def train_losses(run_dir: Path) -> list[float]:
    """The training losses recorded in every metrics.jsonl under `run_dir`, in file order."""
    losses = []
    for path in sorted(run_dir.rglob("metrics.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("split") == "train" and "loss" in record:
                losses.append(float(record["loss"]))
    return losses


def _losses_figure(losses: list[float]) -> tuple[bool, str]:
    if not losses:
        return False, "no training loss recorded (metrics.jsonl)"
    return all(math.isfinite(x) for x in losses), f"loss {losses[0]:.3f} -> {losses[-1]:.3f} ({len(losses)} logged)"


def _head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in state.items() if not name.startswith("backbone.")}


def _model_folder(result: object, out: Path) -> Path:
    """Where a fine-tune left its model: the result's model_dir, else OUT/final (a run folder), else OUT."""
    candidates = [getattr(result, "model_dir", None), out / "final", out]
    return next(Path(c) for c in candidates if c is not None and (Path(c) / "config.json").is_file())


def check_finetune(device: torch.device) -> tuple[bool, str]:
    """Two fine-tuning steps on SST-2: finite losses, and the classification head's weights changed."""
    from tformer.tasks.finetune import FinetuneOptions, finetune

    with tempfile.TemporaryDirectory(prefix="tformer-gpu-check-") as tmp:
        root = write_sst2(Path(tmp) / "data")
        model_dir = write_bert(Path(tmp) / "bert")
        before = _head(tformer.from_pretrained(model_dir).state_dict())
        wanted = {"max_steps": 2, "batch_size": 8, "max_length": 32, "device": str(device), "log_every": 1}
        known = {f.name for f in dataclasses.fields(FinetuneOptions)}  # log_every: where the options still have it
        options = FinetuneOptions(**{k: v for k, v in wanted.items() if k in known})
        with contextlib.redirect_stdout(sys.stderr):  # its messages are progress, not the table
            result = finetune("sst2", model_dir, root, Path(tmp) / "out", options)
        after = _head(tformer.from_pretrained(_model_folder(result, Path(tmp) / "out")).state_dict())
        ok, figure = _losses_figure(train_losses(Path(tmp) / "out"))
    if not before or set(before) != set(after):
        return False, f"head tensors before {sorted(before)} and after {sorted(after)} do not match; {figure}"
    change = max((after[name].float() - before[name].float()).abs().max().item() for name in before)
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in getattr(result, "metrics", {}).items())
    return ok and change > 0, f"{figure}; largest head change {change:.1e} ({len(before)} tensors); dev {metrics}"


def causal_lm_recipe(folder: Path, device: str, **train: Any) -> dict[str, Any]:
    """A tiny causal-LM recipe (gpt2-tiny, characters, 16-token windows) over a text file written in `folder`."""
    rng = random.Random(0)
    text = folder / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(TEXT_WORDS) for _ in range(10)) for _ in range(300)) + "\n",
                    encoding="utf-8")
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0}  # processes draw their own masks: 2 vs 1 would differ
    return {"name": "gpu-check", "model": {"preset": "gpt2-tiny", "config": no_dropout},
            "data": {"text": [str(text)], "tokenizer": "char", "block_size": 16, "batch_size": 8},
            "train": {"objective": "causal_lm", "max_steps": 6, "lr": 3e-3, "device": device, **train},
            "eval": {"every": 0, "batches": 1},
            "out": {"dir": str(folder / "run"), "progress": "none", "tensorboard": False, "plot": False,
                    "log_every": 1}}


def _train_cli(prefix: list[str], recipe: Path, run_dir: Path, *overrides: str) -> list[float]:
    """Run `tformer train RECIPE` (after `prefix`: the interpreter, or torchrun) into `run_dir`; its losses."""
    command = [*prefix, "-m", "tformer.cli", "train", str(recipe), f"--out.dir={run_dir}", *overrides]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                          timeout=TORCHRUN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
        raise RuntimeError(f"{' '.join(prefix[-3:])} train exited {done.returncode}: {last}")
    return train_losses(run_dir)


def _data_parallel(device: torch.device, strategy: str) -> tuple[bool, str]:
    """2 processes under torchrun (nccl) against one process with the same global batch: the same losses."""
    if device.type != "cuda":
        raise Skipped("--device cpu: the 2-process gloo runs are tests/training/test_distributed.py")
    if torch.cuda.device_count() < 2:
        raise Skipped(f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    return compare_parallel_runs(strategy, "auto")


def compare_parallel_runs(strategy: str, train_device: str) -> tuple[bool, str]:
    """The data-parallel check on `train_device` (auto: cuda:LOCAL_RANK and nccl; cpu: gloo, for its test)."""
    with tempfile.TemporaryDirectory(prefix=f"tformer-gpu-check-{strategy}-") as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(json.dumps(causal_lm_recipe(Path(tmp), train_device)), encoding="utf-8")  # JSON is YAML
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        parallel = _train_cli(torchrun, recipe, Path(tmp) / strategy, f"--train.distributed={strategy}")
        single = _train_cli([sys.executable], recipe, Path(tmp) / "single")
    ok, figure = _losses_figure(parallel)
    if len(parallel) != len(single):
        return False, f"{figure}; the single process logged {len(single)} losses"
    gap = max(abs(a - b) for a, b in zip(parallel, single, strict=True)) if parallel else float("nan")
    backend = "gloo" if train_device == "cpu" else "nccl"
    return ok and gap <= DATA_PARALLEL_TOLERANCE, (f"{backend}, 2 processes: {figure}; largest loss gap to 1 "
                                                   f"process {gap:.1e} (bar {DATA_PARALLEL_TOLERANCE:.0e})")


def check_ddp(device: torch.device) -> tuple[bool, str]:
    """`torchrun --nproc-per-node 2 -m tformer.cli train` with DDP, when two GPUs exist."""
    return _data_parallel(device, "ddp")


def check_fsdp(device: torch.device) -> tuple[bool, str]:
    """The same with FSDP2 (`train.distributed=fsdp`)."""
    return _data_parallel(device, "fsdp")


def check_fp16(device: torch.device) -> tuple[bool, str]:
    """A few fp16 steps of the Trainer on CUDA: finite losses through the GradScaler and the fused AdamW."""
    if device.type != "cuda":
        raise Skipped("--device cpu: fp16 with a GradScaler needs CUDA (the CPU tests mock it)")
    from tformer.training.recipe import load_recipe
    from tformer.training.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="tformer-gpu-check-fp16-") as tmp:
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer's messages are progress, not the table
            trainer = Trainer(load_recipe(causal_lm_recipe(Path(tmp), str(device), precision="fp16", max_steps=8)))
            trainer.fit()
        ok, figure = _losses_figure(train_losses(Path(tmp) / "run"))
    scaler = getattr(trainer, "scaler", None)
    optimizer = getattr(trainer, "optimizer", None)
    fused = None if optimizer is None else optimizer.param_groups[0].get("fused", optimizer.defaults.get("fused"))
    scale = f"GradScaler scale {scaler.get_scale():.0f}" if scaler is not None else "no GradScaler found"
    return ok and scaler is not None and fused is not False, f"{figure}; {scale}; AdamW fused={fused}"
