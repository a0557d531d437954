"""Fine-tuning a pre-trained model folder on a registered task, and scoring a fine-tuned one on its dev split.

`finetune("sst2", "bert-folder", data_root, "runs/sst2")` builds the recipe of a `train.objective=task` run
(`training/objectives/task.py`) and runs it on the one Trainer: a fresh task head on the model (GPT also gets GPT-1's
start / delimiter / extract tokens, and keeps its language-model loss as an auxiliary loss with weight 0.5), AdamW
(no weight decay on biases, norms and embeddings) under BERT's fine-tuning schedule (linear warmup over the first
10 % of the steps, then linear decay to 0), the dev split scored with the task's metrics; so fine-tuning has the
Trainer's bf16, gradient accumulation, torch.compile, checkpoints, --resume, the NaN stop, the logs and torchrun.
OUT/ is a model folder with its tokenizer (loadable by `tformer.from_pretrained`) plus OUT/metrics.json, the run's
metrics.jsonl, recipe.yaml and checkpoints/. `evaluate("sst2", "runs/sst2", data_root)` scores the folder again.

Defaults are the papers': BERT (Devlin et al. 2019, appendix A.3) batch 32, 3 epochs, lr 2e-5..5e-5, sequences of
128 tokens; SQuAD windows of 384 tokens with a stride of 128, lr 5e-5; GPT-1 (Radford et al. 2018) lr 6.25e-5,
warmup over 0.2 % of the steps.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from tformer.interop.huggingface import from_pretrained
from tformer.interop.model_folder import find_model_folder
from tformer.models import TaskModel
from tformer.tasks.encoding import HEAD_TASKS, TaskEncoder, task_encoder
from tformer.tasks.metrics import compute_metrics
from tformer.tasks.options import FinetuneOptions
from tformer.tasks.out_folder import check_out_folder, clear_out_folder, writable_folder
from tformer.tasks.registry import Task, get_task
from tformer.tokenization import Tokenizer
from tformer.training.distributed import pick_device
from tformer.training.objectives.task import TaskData, TaskFinetuning
from tformer.training.options import OptionError, to_dict
from tformer.training.recipe import Recipe, load_recipe
from tformer.training.streams import length_grouped_order
from tformer.training.trainer import Trainer, TrainResult

__all__ = ["DevScore", "FinetuneOptions", "FinetuneResult", "evaluate", "evaluate_dev", "finetune",
           "finetune_recipe", "length_grouped_order", "prepare_finetune", "score"]


@dataclass
class FinetuneResult:
    """What a run did: dev `metrics`, optimizer `steps`, training examples used, seconds, and the model folder."""

    task: str
    metrics: dict[str, float]
    steps: int
    train_examples: int
    seconds: float
    model_dir: Path


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def _device(name: str | None) -> torch.device:
    try:
        return pick_device("auto" if name is None else name, option="--device")
    except ValueError as error:
        raise OptionError(str(error)) from None


def _check_model_dir(model_dir: str | Path) -> Path:
    return find_model_folder(model_dir)  # a Hub name resolved; a file, run folder, missing config.json refused


def score(encoder: TaskEncoder, task: Task, examples: list, batch_size: int) -> dict[str, float]:
    """The task's metrics of `encoder.model` on `examples` (dropout off)."""
    encoder.model.eval()
    predictions, references = encoder.predict(examples, batch_size)
    return compute_metrics(task.metrics, predictions, references)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def finetune_recipe(task: Task, folder: Path, data_root: str | Path | None, out_dir: str | Path,
                    options: FinetuneOptions) -> Recipe:
    """The `train.objective=task` recipe of a fine-tune (before its model is read: lr, batch size, length and the
    steps are set by `finetune` once the model's family and the training items are known)."""
    o = options
    mapping = {
        "name": f"finetune-{task.name}", "description": f"fine-tune {folder} on {task.name}",
        "model": {"from_pretrained": str(folder)},
        "data": {"root": None if data_root is None else str(data_root), "batch_size": o.batch_size or 32,
                 "max_length": o.max_length or 128},
        "train": {"objective": "task", "lr": o.lr or 1e-4, "schedule": "linear", "weight_decay": o.weight_decay,
                  "clip_grad_norm": o.max_grad_norm if o.max_grad_norm > 0 else None, "seed": o.seed,
                  "device": o.device or "auto", "threads": o.threads, "grad_accum": o.grad_accum,
                  "precision": o.precision, "compile": o.compile, "distributed": o.distributed},
        "eval": {"every": o.eval_every},
        "task": {"name": task.name, "doc_stride": o.doc_stride or 128, "max_train_examples": o.max_train_examples,
                 "max_eval_examples": o.max_eval_examples, "eval_batch_size": o.eval_batch_size,
                 "group_by_length": o.group_by_length, "init": o.init, "lm_weight": o.lm_weight},
        "out": {"dir": str(out_dir), "checkpoint_every": o.checkpoint_every, "log_every": o.log_every},
    }
    return load_recipe(mapping)


def _schedule(recipe: Recipe, opts: FinetuneOptions, items: int) -> None:
    """train.max_steps from the epochs (or --max_steps) and train.warmup_steps from the warmup fraction."""
    per_epoch = math.ceil(items / (opts.batch_size * opts.grad_accum))  # type: ignore[operator]
    steps = per_epoch * opts.epochs if opts.max_steps is None else min(opts.max_steps, per_epoch * opts.epochs)
    recipe.train.max_steps = steps
    recipe.train.warmup_steps = round(steps * (opts.warmup_fraction or 0.0))


def _items_seen(steps: int, micro_per_step: int, items: int, batch_size: int) -> int:
    """How many training items `steps` optimizer steps fed (epochs end with a smaller batch)."""
    per_epoch = math.ceil(items / batch_size)
    micro = steps * micro_per_step
    return (micro // per_epoch) * items + min((micro % per_epoch) * batch_size, items)


def prepare_finetune(task: Task, folder: Path, data_root: str | Path | None, out_dir: str | Path,
             options: FinetuneOptions) -> tuple[Recipe, TaskData, FinetuneOptions]:
    """The recipe and data of a fine-tune, every refusal (tokenizer, lengths, dev encoding) said before it writes."""
    _device(options.device)  # a bad --device is named as the finetune option it is
    recipe = finetune_recipe(task, folder.resolve(), data_root, out_dir, options)
    objective = TaskFinetuning(recipe)
    model, _ = objective.load_model()
    opts = options.resolved(task, model.config)
    assert opts.lr and opts.batch_size and opts.max_length and opts.doc_stride is not None
    recipe.train.lr, recipe.data.batch_size, recipe.data.max_length = opts.lr, opts.batch_size, opts.max_length
    recipe.task.doc_stride = opts.doc_stride
    data = objective.build_data(recipe.run_dir, print)
    _schedule(recipe, opts, len(data.items))
    return recipe, data, opts


def finetune(task_name: str, model_dir: str | Path, data_root: str | Path | None, out_dir: str | Path,
             options: FinetuneOptions | None = None, *, command: str | None = None,
             stream: TextIO | None = None, overwrite: bool = False,
             resume: bool | str | Path = False) -> FinetuneResult:
    """Fine-tune the model in `model_dir` on task `task_name` (train split), score the dev split, and write the
    model folder and metrics.json to `out_dir`. Progress goes to `stream` (stderr by default).

    Before anything is written: `out_dir` is checked (not the model folder, nothing foreign in it, a previous
    fine-tune only with `overwrite`, or `resume` to continue it from its newest checkpoint), the tokenizer must cover
    the text, and the dev split must encode. Ctrl-C or SIGTERM finishes the step, writes a checkpoint and raises
    `Interrupted` (continue with `resume=True`); a NaN loss raises `TrainingDiverged` naming the last checkpoint.
    Under torchrun every process calls this; rank 0 alone writes."""
    began = time.perf_counter()
    options = options or FinetuneOptions()
    stream = stream or sys.stderr
    task = get_task(task_name)
    folder = _check_model_dir(model_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    replace_previous = check_out_folder(folder, out_dir, overwrite, bool(resume)) if main else False
    _set_threads(options.threads)
    recipe, data, opts = prepare_finetune(task, folder, data_root, out_dir, options)
    if replace_previous:
        clear_out_folder(out_dir)
    if main:
        writable_folder(out_dir)
        _announce(stream, folder, data, opts, recipe)
    trainer = Trainer(recipe, data=data, resume=resume, log_stream=stream)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if main:
        _write_json(Path(out_dir) / "metrics.json", _record(task, folder, data, opts, result, command, trainer,
                                                            time.perf_counter() - began))
    return FinetuneResult(task.name, result.eval_metrics, result.step, len(data.train_examples),
                          time.perf_counter() - began, Path(out_dir))


def _record(task: Task, folder: Path, data: TaskData, opts: FinetuneOptions, result: TrainResult,
            command: str | None, trainer: Trainer, seconds: float) -> dict[str, Any]:
    """metrics.json: the dev metrics and how they were made."""
    assert opts.batch_size is not None
    seen = _items_seen(result.step, opts.grad_accum, len(data.items), opts.batch_size)
    return {"task": task.name, "split": "dev", "metrics": result.eval_metrics, "dev_examples": len(data.dev),
            "model": str(folder), "train_examples": len(data.train_examples),
            "train_examples_available": data.train_available,
            "subset": len(data.train_examples) < data.train_available, "train_items": len(data.items),
            "steps": result.step, "epochs": round(seen / len(data.items), 3), "train_seconds": round(result.seconds, 1),
            "wall_seconds": round(seconds, 1), "command": command, "device": str(trainer.env.device),
            "threads": torch.get_num_threads(), "processes": trainer.env.world_size, "options": to_dict(opts)}


def _announce(stream: TextIO, folder: Path, data: TaskData, opts: FinetuneOptions, recipe: Recipe) -> None:
    assert data.model is not None and data.task is not None
    train, items, task, model = data.train_examples, data.items, data.task, data.model
    subset = (f"a seeded random subset of {len(train):,} of the {data.train_available:,} training examples "
              f"(max_train_examples={opts.max_train_examples})" if len(train) < data.train_available
              else f"all {len(train):,} training examples")
    windows = f" ({len(items):,} windows)" if len(items) != len(train) else ""
    start = "" if opts.init == "pretrained" else ", freshly initialised (--init=random)"
    accum = f" x {opts.grad_accum} micro-batches" if opts.grad_accum > 1 else ""
    lines = [f"fine-tuning {folder} ({model.config.family}, {model.num_parameters():,} parameters{start}) on "
             f"{task.name}: {subset}{windows}; {recipe.train.max_steps} steps of {opts.batch_size}{accum}, lr "
             f"{opts.lr:g}, warmup {recipe.train.warmup_steps} steps; dev {len(data.dev):,} examples"]
    if task.note:
        lines.append(f"{task.name}: {task.note}")
    for line in lines:
        print(line, file=stream, flush=True)


@dataclass
class DevScore:
    """What `evaluate_dev` scored: the dev `metrics`, on `examples` of the split's `available` examples."""

    metrics: dict[str, float]
    examples: int
    available: int


def evaluate(task_name: str, model_dir: str | Path, data_root: str | Path | None = None, *,
             max_examples: int | None = None, max_length: int | None = None, doc_stride: int | None = None,
             batch_size: int = 64, threads: int | None = None, device: str | None = None) -> dict[str, float]:
    """The dev metrics of the fine-tuned model in `model_dir` on task `task_name` (see `evaluate_dev`)."""
    return evaluate_dev(task_name, model_dir, data_root, max_examples=max_examples, max_length=max_length,
                        doc_stride=doc_stride, batch_size=batch_size, threads=threads, device=device).metrics


def evaluate_dev(task_name: str, model_dir: str | Path, data_root: str | Path | None = None, *,
                 max_examples: int | None = None, max_length: int | None = None, doc_stride: int | None = None,
                 batch_size: int = 64, threads: int | None = None, device: str | None = None) -> DevScore:
    """Score the fine-tuned model in `model_dir` on task `task_name`'s dev split: all of it, or its first
    `max_examples`. The sequence settings (max_length, doc_stride), when unset, are those the run that wrote the
    folder used (its metrics.json), else the task's defaults."""
    task = get_task(task_name)
    folder = _check_model_dir(model_dir)
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_eval_examples={max_examples} must be at least 1 (or leave it out to score all)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads} must be at least 1")
    _set_threads(threads)
    saved = _saved_options(folder)
    every = task.read("dev", data_root)
    dev = every[:max_examples]
    model = from_pretrained(folder).to(_device(device))
    head = HEAD_TASKS[task.kind]
    if not isinstance(model, TaskModel) or model.config.task != head:
        has = f"a {model.config.task} model" if isinstance(model, TaskModel) else "a model without a task head"
        raise ValueError(f"{folder} holds {has} but {task.name} needs a {head} head; fine-tune one first: "
                         f"tformer finetune {task.name} --model {folder}")
    task.check_head(model.config.num_labels if head != "multiple-choice" else 1)
    tokenizer = Tokenizer.from_file(folder)
    opts = FinetuneOptions(max_length=max_length or saved.get("max_length"),
                           doc_stride=doc_stride or saved.get("doc_stride")).resolved(task, model.config)
    assert opts.max_length and opts.doc_stride is not None
    encoder = task_encoder(task, model, tokenizer, opts.max_length, opts.doc_stride)
    return DevScore(score(encoder, task, dev, batch_size), len(dev), len(every))


def _saved_options(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("options") or {})
    except (OSError, ValueError, AttributeError):
        return {}
