"""Fine-tuning a pre-trained model folder on a registered task, and scoring a fine-tuned one on its dev split.

`finetune("sst2", "bert-folder", data_root, "runs/sst2")` reads the task's train and dev splits, puts a fresh task
head on the model (GPT also gets GPT-1's start / delimiter / extract tokens, and keeps its language-model loss as
an auxiliary loss with weight 0.5), trains with AdamW (no weight decay on biases, norms and embeddings) under
BERT's fine-tuning schedule (linear warmup over the first 10 % of the steps, then linear decay to 0), scores the
dev split with the task's metrics, and writes OUT/ (a model folder with its tokenizer, loadable by
`tformer.from_pretrained`) and OUT/metrics.json. `evaluate("sst2", "runs/sst2", data_root)` loads that folder and
scores the dev split again.

Defaults are the papers': BERT (Devlin et al. 2019, appendix A.3) batch 32, 3 epochs, lr 2e-5..5e-5, sequences of
128 tokens; SQuAD windows of 384 tokens with a stride of 128, lr 5e-5; GPT-1 (Radford et al. 2018) lr 6.25e-5,
warmup over 0.2 % of the steps.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from tformer.interop.huggingface import from_pretrained, save_pretrained
from tformer.interop.model_folder import find_model_folder
from tformer.interrupt import Interrupted
from tformer.models import TaskModel, TransformerModel, build_model, with_task_head
from tformer.tasks.encoding import HEAD_TASKS, TaskEncoder, task_encoder
from tformer.tasks.inputs import add_gpt_special_tokens
from tformer.tasks.metrics import compute_metrics
from tformer.tasks.options import FinetuneOptions
from tformer.tasks.out_folder import INTERRUPTED, check_out_folder, clear_out_folder, writable_folder
from tformer.tasks.preflight import check_dev_encodes, check_tokenizer_covers
from tformer.tasks.registry import Task, get_task
from tformer.tasks.train_loop import LoopResult, length_grouped_order, train_steps
from tformer.tokenization import Tokenizer
from tformer.training.distributed import pick_device
from tformer.training.optim import build_optimizer, build_scheduler
from tformer.training.options import OptionError, to_dict
from tformer.training.progress import RunLog

__all__ = ["DevScore", "FinetuneOptions", "FinetuneResult", "evaluate", "evaluate_dev", "finetune",
           "length_grouped_order", "score"]


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


def _task_model(model: TransformerModel, task: Task, lm_weight: float | None) -> TaskModel:
    """`model` with `task`'s head: kept when it already has one of the right kind and size, else a fresh one."""
    head = HEAD_TASKS[task.kind]
    if isinstance(model, TaskModel) and model.config.task == head:
        task.check_head(model.config.num_labels if head != "multiple-choice" else 1)
    else:
        fields: dict[str, Any] = {}
        if head != "multiple-choice":
            fields["num_labels"] = task.num_labels
        if task.kind in ("classification", "token_classification"):
            fields["id2label"] = dict(enumerate(task.labels))
        model = with_task_head(model, head, **fields)
    if lm_weight is not None:
        for module in model.modules():  # the task model and its backbone share one config
            if isinstance(module, TransformerModel):
                module.config = module.config.replace(lm_weight=lm_weight)
    return model


def _subset(examples: list, limit: int | None, seed: int) -> list:
    """At most `limit` examples, a seeded random choice kept in file order."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def score(encoder: TaskEncoder, task: Task, examples: list, batch_size: int) -> dict[str, float]:
    """The task's metrics of `encoder.model` on `examples` (dropout off)."""
    encoder.model.eval()
    predictions, references = encoder.predict(examples, batch_size)
    return compute_metrics(task.metrics, predictions, references)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _load_task_model(folder: Path, task: Task, options: FinetuneOptions, tokenizer: Tokenizer) -> TaskModel:
    """The folder's model (or, with --init=random, its architecture freshly initialised) with `task`'s head; GPT
    also gets GPT-1's start / delimiter / extract tokens in `tokenizer` and its embeddings."""
    backbone = from_pretrained(folder)
    if options.init == "random":
        backbone = build_model(backbone.config)
    model = _task_model(backbone, task, options.lm_weight)
    if model.config.family == "gpt":
        add_gpt_special_tokens(tokenizer, model)
    return model


def _keep_interrupted(model: TaskModel, tokenizer: Tokenizer, out: Path, loop: LoopResult, steps: int) -> Interrupted:
    """Write the weights so far to OUT/interrupted (atomically: a temporary folder renamed) and say so."""
    target, tmp = out / INTERRUPTED, out / f".{INTERRUPTED}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, tokenizer=tokenizer)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return Interrupted(f"interrupted ({loop.signal_name}) at step {loop.step} of {steps}: the weights so far are in "
                       f"{target} (a model folder, not scored); fine-tuning cannot resume yet, so run it again for "
                       f"the full fine-tune (with --overwrite to replace {out})")


def finetune(task_name: str, model_dir: str | Path, data_root: str | Path | None, out_dir: str | Path,
             options: FinetuneOptions | None = None, *, command: str | None = None,
             stream: TextIO | None = None, overwrite: bool = False) -> FinetuneResult:
    """Fine-tune the model in `model_dir` on task `task_name` (train split), score the dev split, and write the
    model folder and metrics.json to `out_dir`. Progress goes to `stream` (stderr by default).

    Before anything is written: `out_dir` is checked (not the model folder, nothing foreign in it, a previous
    fine-tune only with `overwrite`), the tokenizer must cover the text, and the dev split must encode. Ctrl-C or
    SIGTERM finishes the step, keeps the weights in OUT/interrupted and raises `Interrupted`."""
    began = time.perf_counter()
    options = options or FinetuneOptions()
    stream = stream or sys.stderr
    task = get_task(task_name)
    folder = _check_model_dir(model_dir)
    replace_previous = check_out_folder(folder, out_dir, overwrite)
    _set_threads(options.threads)
    train_all = task.read("train", data_root)
    dev = task.read("dev", data_root)[:options.max_eval_examples]
    train = _subset(train_all, options.max_train_examples, options.seed)
    tokenizer = Tokenizer.from_file(folder)
    check_tokenizer_covers(tokenizer, {"train": train, "dev": dev}, task.name, str(folder))
    torch.manual_seed(options.seed)
    device = _device(options.device)
    model = _load_task_model(folder, task, options, tokenizer).to(device)
    opts = options.resolved(task, model.config)
    assert opts.lr and opts.batch_size and opts.max_length and opts.doc_stride is not None
    encoder = task_encoder(task, model, tokenizer, opts.max_length, opts.doc_stride)
    items = encoder.items(train)
    check_dev_encodes(encoder, dev, opts.eval_batch_size)
    per_epoch = math.ceil(len(items) / opts.batch_size)
    steps = per_epoch * opts.epochs if opts.max_steps is None else min(opts.max_steps, per_epoch * opts.epochs)
    warmup = round(steps * (opts.warmup_fraction or 0.0))
    optimizer = build_optimizer(model, lr=opts.lr, weight_decay=opts.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    scheduler = build_scheduler(optimizer, "linear", max_steps=steps, warmup_steps=warmup, lr=opts.lr)
    out = Path(out_dir)
    if replace_previous:
        clear_out_folder(out)
    writable_folder(out)
    log = RunLog(out, max_steps=steps, progress="lines", tensorboard=False, plot=True, stream=stream)
    _announce(log, folder, model, task, opts, train, train_all, items, dev, steps, warmup, device)
    loop = train_steps(model, encoder, items, opts, steps, optimizer, scheduler, log)
    if loop.signal_name is not None:
        log.close()
        raise _keep_interrupted(model, tokenizer, out, loop, steps)

    save_pretrained(model, out, tokenizer=tokenizer)
    metrics = score(encoder, task, dev, opts.eval_batch_size)
    log.eval(loop.step, metrics)
    log.close()
    seconds = time.perf_counter() - began
    _write_json(out / "metrics.json", {
        "task": task.name, "split": "dev", "metrics": metrics, "dev_examples": len(dev), "model": str(folder),
        "train_examples": len(train), "train_examples_available": len(train_all),
        "subset": len(train) < len(train_all), "train_items": len(items), "steps": loop.step,
        "epochs": round(loop.seen / len(items), 3), "train_seconds": round(loop.seconds, 1),
        "wall_seconds": round(seconds, 1), "command": command, "device": str(device),
        "threads": torch.get_num_threads(),
        "options": to_dict(opts)})
    return FinetuneResult(task.name, metrics, loop.step, len(train), seconds, out)


def _announce(log: RunLog, folder: Path, model: TaskModel, task: Task, opts: FinetuneOptions, train: list,
              train_all: list, items: list, dev: list, steps: int, warmup: int, device: torch.device) -> None:
    subset = (f"a seeded random subset of {len(train):,} of the {len(train_all):,} training examples "
              f"(max_train_examples={opts.max_train_examples})" if len(train) < len(train_all)
              else f"all {len(train):,} training examples")
    windows = f" ({len(items):,} windows)" if len(items) != len(train) else ""
    start = "" if opts.init == "pretrained" else ", freshly initialised (--init=random)"
    log.message(f"fine-tuning {folder} ({model.config.family}, {model.num_parameters():,} parameters{start}) on "
                f"{task.name}: {subset}{windows}; {steps} steps of {opts.batch_size}, lr {opts.lr:g}, warmup "
                f"{warmup} steps; dev {len(dev):,} examples; on {device}")
    if task.note:
        log.message(f"{task.name}: {task.note}")


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
