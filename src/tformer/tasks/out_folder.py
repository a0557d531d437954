"""Where a fine-tune writes: never onto the pre-trained model, and never over anything it did not write itself.

`check_out_folder(model_dir, out_dir, overwrite)` runs before anything is read or written. The out folder must be
new, empty, or a previous fine-tune's (only the files `tformer finetune` writes, with its metrics file); the last
is replaced only with `overwrite=True` (`--overwrite`), as transformers' `overwrite_output_dir`. `clear_out_folder`
removes a previous fine-tune's files once the new run's inputs have been checked.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

# What `tformer finetune` writes into OUT/ (a model folder, its logs, the weights of an interrupted run).
FINETUNE_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                  "model-*-of-*.safetensors", "tokenizer.json", "metrics.json", "metrics.jsonl", "loss.png",
                  "loss.png.tmp.png", ".*.tmp", "interrupted", ".interrupted.tmp", "checkpoints", "recipe.yaml",
                  "tensorboard", ".tformer.lock", "metrics.jsonl.tmp")
# (OUT/interrupted held the weights of a stopped run before fine-tuning wrote checkpoints; an old one is replaced)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_finetune_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in FINETUNE_FILES)


def check_out_folder(model_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
                     resume: bool = False) -> bool:
    """Refuse (one-line ValueError / OSError) an `out_dir` that is, or is inside, or holds the model folder, that
    is a file, that holds other files, or that holds a previous fine-tune when neither `overwrite` nor `resume`
    (continue it) is on. Returns whether a previous fine-tune is there to be cleared (`clear_out_folder`) before
    this run writes."""
    if overwrite and resume:
        raise ValueError("--resume continues the fine-tune in --out and --overwrite deletes it; pass one of them")
    model, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    if _inside(out, model):
        where = "is the model folder" if out == model else f"is inside the model folder {model_dir}"
        raise ValueError(f"--out {out_dir} {where}: the fine-tune would overwrite the pre-trained weights; pick "
                         "another --out, e.g. --out runs/finetune-TASK")
    if _inside(model, out):
        raise ValueError(f"--out {out_dir} holds the model folder {model_dir}; pick an --out outside it, e.g. "
                         "--out runs/finetune-TASK")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file, not a folder; pick a folder for the fine-tuned model")
    entries = sorted(entry.name for entry in out.iterdir()) if out.is_dir() else []
    if not entries:
        return False
    foreign = [name for name in entries if not _is_finetune_file(name)]
    is_finetune = "metrics.json" in entries or "metrics.jsonl" in entries
    if foreign or not is_finetune:
        shown = ", ".join((foreign or entries)[:3]) + (", ..." if len(foreign or entries) > 3 else "")
        what = "a model" if "config.json" in entries and not is_finetune else "files"
        raise FileExistsError(f"--out {out_dir} already holds {what} that tformer finetune did not write ({shown}); "
                              "pick a new --out (a missing or empty folder)")
    if resume:
        return False
    if not overwrite:
        raise FileExistsError(f"--out {out_dir} already holds a fine-tune ({', '.join(entries[:4])}); pick a new "
                              "--out, continue it with --resume, or pass --overwrite to replace it")
    return True


def clear_out_folder(out_dir: str | os.PathLike) -> None:
    """Remove what a previous fine-tune wrote into `out_dir` (only its files: `check_out_folder` vouched for them)."""
    for entry in Path(out_dir).iterdir():
        if not _is_finetune_file(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def writable_folder(out_dir: str | os.PathLike) -> None:
    """Create `out_dir` (and its parents) and check that files can be written there, before the first step."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".write-test.tmp"
    try:
        probe.write_bytes(b"")
    finally:
        probe.unlink(missing_ok=True)
