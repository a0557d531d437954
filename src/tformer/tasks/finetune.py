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

import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from tformer.config import ModelConfig
from tformer.interop.huggingface import from_pretrained
from tformer.interop.model_folder import find_model_folder
from tformer.models import TaskModel, TransformerModel, build_model, with_task_head
from tformer.tasks.encoding import HEAD_TASKS, TaskEncoder, task_encoder
from tformer.tasks.inputs import add_gpt_special_tokens
from tformer.tasks.metrics import compute_metrics
from tformer.tasks.registry import Task, get_task
from tformer.tokenization import Tokenizer
from tformer.training.distributed import pick_device
from tformer.training.optim import build_optimizer, build_scheduler
from tformer.training.options import OptionError, apply_overrides, build, to_dict
from tformer.training.progress import RunLog

# (lr, batch size, max_length) by task kind for BERT; GPT-1 fine-tunes at 6.25e-5 whatever the task.
KIND_DEFAULTS = {"classification": (2e-5, 32, 128), "regression": (2e-5, 32, 128),
                 "multiple_choice": (2e-5, 16, 128), "qa": (5e-5, 32, 384), "token_classification": (5e-5, 32, 128)}
GPT_LR = 6.25e-5
WARMUP = {"bert": 0.1, "gpt": 0.002}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneOptions:
    """Options of one fine-tuning run; None means the task's (or the model family's) standard value."""

    lr: float | None = field(default=None, metadata=_help(
        "peak learning rate; None: BERT 2e-5 (QA and NER 5e-5), GPT 6.25e-5"))
    batch_size: int | None = field(default=None, metadata=_help("examples per step; None: 32 (multiple choice 16)"))
    epochs: int = field(default=3, metadata=_help("passes over the training examples"))
    max_steps: int | None = field(default=None, metadata=_help("stop after this many steps (None: all epochs)"))
    max_length: int | None = field(default=None, metadata=_help("tokens per sequence; None: 128 (QA 384)"))
    doc_stride: int | None = field(default=None, metadata=_help(
        "QA: context tokens shared by consecutive windows; None: 128 (at most half of max_length)"))
    warmup_fraction: float | None = field(default=None, metadata=_help(
        "fraction of the steps with linear warmup; None: BERT 0.1, GPT 0.002"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW decay of the weight matrices"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping (0: off)"))
    lm_weight: float | None = field(default=None, metadata=_help(
        "GPT: weight of the auxiliary LM loss; None: 0.5 (GPT-1)"))
    max_train_examples: int | None = field(default=None, metadata=_help(
        "train on a seeded random subset of this many examples (None: all)"))
    max_eval_examples: int | None = field(default=None, metadata=_help(
        "score only the first N dev examples (None: all)"))
    eval_batch_size: int = field(default=64, metadata=_help("examples per evaluation batch"))
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (None: torch's default)"))
    device: str | None = field(default=None, metadata=_help("cpu, cuda, cuda:1, ...; None: cuda when there is one"))
    seed: int = field(default=42, metadata=_help("seed of the head's initialisation, shuffling and dropout"))
    group_by_length: bool = field(default=False, metadata=_help(
        "batch examples of similar length together (shuffled groups of 50 batches, each sorted by length), so "
        "less of each batch is padding: faster steps, a slightly less random order (Hugging Face's option)"))
    init: str = field(default="pretrained", metadata=_help(
        "pretrained: start from the folder's weights; random: the same architecture and tokenizer, freshly "
        "initialised (the baseline that shows what pre-training transfers)"))
    log_every: int = field(default=10, metadata=_help("steps between progress lines"))

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "max_steps", "max_length", "max_train_examples", "max_eval_examples",
                     "eval_batch_size", "threads", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name}={value} must be at least 1")
        if self.lr is not None and self.lr <= 0:
            raise OptionError(f"lr={self.lr} must be positive, e.g. --lr=2e-5")
        if self.init not in ("pretrained", "random"):
            raise OptionError(f"init={self.init!r} is not an initialisation; pass --init=pretrained or --init=random")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise OptionError(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")

    @classmethod
    def from_overrides(cls, overrides: list[str] | dict[str, Any]) -> FinetuneOptions:
        """Options from `--key=value` words (or a mapping); unknown keys and bad values are one-line OptionErrors."""
        mapping = overrides if isinstance(overrides, dict) else apply_overrides({}, overrides)
        try:
            return build(cls, mapping)
        except OptionError as error:  # build() speaks of recipes; here the keys are finetune's --key=value options
            raise OptionError(str(error).replace("unknown recipe key", "unknown option")) from None

    def resolved(self, task: Task, config: ModelConfig) -> FinetuneOptions:
        """A copy with every None that has a standard value filled in for `task` on a model of `config` (the
        default max_length is cut to the model's positions; a larger one given is an error)."""
        lr, batch_size, max_length = KIND_DEFAULTS[task.kind]
        if self.max_length is not None and self.max_length > config.max_positions:
            raise OptionError(f"max_length={self.max_length} is longer than the model's {config.max_positions} "
                              f"positions; pass --max_length={config.max_positions} or less")
        max_length = self.max_length or min(max_length, config.max_positions)
        return dataclasses.replace(
            self, lr=self.lr or (GPT_LR if config.family == "gpt" else lr), batch_size=self.batch_size or batch_size,
            max_length=max_length, doc_stride=self.doc_stride if self.doc_stride is not None else min(
                128, max_length // 2),
            warmup_fraction=WARMUP.get(config.family, 0.1) if self.warmup_fraction is None else self.warmup_fraction)


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


def length_grouped_order(order: list[int], sizes: Sequence[int], batch_size: int,
                         group_batches: int = 50) -> list[int]:
    """`order` (a random permutation) regrouped so each batch holds items of similar size, as Hugging Face's
    LengthGroupedSampler: cut into groups of `group_batches` batches, sort each group longest first, and put the
    group holding the longest item first (a run that runs out of memory does so at once)."""
    group = group_batches * batch_size
    groups = [sorted(order[i:i + group], key=lambda k: -sizes[k]) for i in range(0, len(order), group)]
    longest = max(range(len(groups)), key=lambda g: sizes[groups[g][0]], default=0)
    if groups:
        groups[0], groups[longest] = groups[longest], groups[0]
    return [index for members in groups for index in members]


def score(encoder: TaskEncoder, task: Task, examples: list, batch_size: int) -> dict[str, float]:
    """The task's metrics of `encoder.model` on `examples` (dropout off)."""
    encoder.model.eval()
    predictions, references = encoder.predict(examples, batch_size)
    return compute_metrics(task.metrics, predictions, references)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def finetune(task_name: str, model_dir: str | Path, data_root: str | Path | None, out_dir: str | Path,
             options: FinetuneOptions | None = None, *, command: str | None = None,
             stream: TextIO | None = None) -> FinetuneResult:
    """Fine-tune the model in `model_dir` on task `task_name` (train split), score the dev split, and write the
    model folder and metrics.json to `out_dir`. Progress goes to `stream` (stderr by default)."""
    began = time.perf_counter()
    options = options or FinetuneOptions()
    stream = stream or sys.stderr
    task = get_task(task_name)
    folder = _check_model_dir(model_dir)
    _set_threads(options.threads)
    train_all = task.read("train", data_root)
    dev = task.read("dev", data_root)[:options.max_eval_examples]
    train = _subset(train_all, options.max_train_examples, options.seed)
    tokenizer = Tokenizer.from_file(folder)
    torch.manual_seed(options.seed)
    device = _device(options.device)
    backbone = from_pretrained(folder)
    if options.init == "random":
        backbone = build_model(backbone.config)
    model = _task_model(backbone, task, options.lm_weight)
    family = model.config.family
    if family == "gpt":
        add_gpt_special_tokens(tokenizer, model)
    model.to(device)
    opts = options.resolved(task, model.config)
    assert opts.lr and opts.batch_size and opts.max_length and opts.doc_stride is not None
    encoder = task_encoder(task, model, tokenizer, opts.max_length, opts.doc_stride)
    items = encoder.items(train)
    per_epoch = math.ceil(len(items) / opts.batch_size)
    steps = per_epoch * opts.epochs if opts.max_steps is None else min(opts.max_steps, per_epoch * opts.epochs)
    warmup = round(steps * (opts.warmup_fraction or 0.0))
    optimizer = build_optimizer(model, lr=opts.lr, weight_decay=opts.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    scheduler = build_scheduler(optimizer, "linear", max_steps=steps, warmup_steps=warmup, lr=opts.lr)
    out = Path(out_dir)
    log = RunLog(out, max_steps=steps, progress="lines", tensorboard=False, plot=True, stream=stream)
    subset = (f"a seeded random subset of {len(train):,} of the {len(train_all):,} training examples "
              f"(max_train_examples={opts.max_train_examples})" if len(train) < len(train_all)
              else f"all {len(train):,} training examples")
    windows = f" ({len(items):,} windows)" if len(items) != len(train) else ""
    start = "" if opts.init == "pretrained" else ", freshly initialised (--init=random)"
    log.message(f"fine-tuning {folder} ({family}, {model.num_parameters():,} parameters{start}) on {task.name}: "
                f"{subset}"
                f"{windows}; {steps} steps of {opts.batch_size}, lr {opts.lr:g}, warmup {warmup} steps; "
                f"dev {len(dev):,} examples; on {device}")
    if task.note:
        log.message(f"{task.name}: {task.note}")

    generator = torch.Generator().manual_seed(opts.seed)
    sizes = [encoder.size(item) for item in items] if opts.group_by_length else []
    step, seen, window_loss, window_lm, window_count, window_began = 0, 0, 0.0, 0.0, 0, time.perf_counter()
    train_began = time.perf_counter()
    model.train()
    while step < steps:
        order = torch.randperm(len(items), generator=generator).tolist()
        if opts.group_by_length:
            order = length_grouped_order(order, sizes, opts.batch_size)
        for start in range(0, len(order), opts.batch_size):
            chunk = [items[i] for i in order[start:start + opts.batch_size]]
            output = model(**encoder.batch(chunk))
            loss = output.loss
            if not torch.isfinite(loss):
                raise ValueError(f"the loss became {loss.item()} at step {step + 1}; lower the learning rate "
                                 f"(--lr, now {opts.lr:g})")
            loss.backward()
            if opts.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(chunk)
            window_loss += loss.item() * len(chunk)
            if output.lm_loss is not None:  # GPT-1's auxiliary LM loss, shown apart from the task's own
                window_lm += output.lm_loss.item() * len(chunk)
            window_count += len(chunk)
            if step % opts.log_every == 0 or step == steps:
                now = time.perf_counter()
                shown = {"loss": window_loss / window_count}
                if window_lm:
                    lm = window_lm / window_count
                    shown |= {"task_loss": shown["loss"] - model.config.lm_weight * lm, "lm_loss": lm}
                log.train(step, shown | {"lr": scheduler.get_last_lr()[0],
                                         "examples/s": round(window_count / max(now - window_began, 1e-9), 1)})
                window_loss, window_lm, window_count, window_began = 0.0, 0.0, 0, now
            if step >= steps:
                break
    train_seconds = time.perf_counter() - train_began

    model.save_pretrained(out, tokenizer=tokenizer)
    metrics = score(encoder, task, dev, opts.eval_batch_size)
    log.eval(step, metrics)
    log.close()
    seconds = time.perf_counter() - began
    _write_json(out / "metrics.json", {
        "task": task.name, "split": "dev", "metrics": metrics, "dev_examples": len(dev), "model": str(folder),
        "train_examples": len(train), "train_examples_available": len(train_all),
        "subset": len(train) < len(train_all), "train_items": len(items), "steps": step,
        "epochs": round(seen / len(items), 3), "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(seconds, 1), "command": command, "device": str(device),
        "threads": torch.get_num_threads(),
        "options": to_dict(opts)})
    return FinetuneResult(task.name, metrics, step, len(train), seconds, out)


def evaluate(task_name: str, model_dir: str | Path, data_root: str | Path | None = None, *,
             max_examples: int | None = None, max_length: int | None = None, doc_stride: int | None = None,
             batch_size: int = 64, threads: int | None = None, device: str | None = None) -> dict[str, float]:
    """The dev metrics of the fine-tuned model in `model_dir` on task `task_name`. Unset settings are those the
    run that wrote the folder used (its metrics.json), else the task's defaults."""
    task = get_task(task_name)
    folder = _check_model_dir(model_dir)
    _set_threads(threads)
    saved = _saved_options(folder)
    max_examples = max_examples if max_examples is not None else saved.get("max_eval_examples")
    dev = task.read("dev", data_root)[:max_examples]
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
    return score(encoder, task, dev, batch_size)


def _saved_options(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("options") or {})
    except (OSError, ValueError, AttributeError):
        return {}
