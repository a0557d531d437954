"""task: fine-tuning a pre-trained folder on a registered task (`tformer finetune`), on the one Trainer.

Batches come from the task's `TaskEncoder` (sentences, pairs, choices, QA windows, NER sentences) in epochs of a
seeded shuffle (optionally length-grouped); the loss is the head's, summed over the step's items (examples; labelled
tokens for NER) and divided by their count over all processes, plus for GPT GPT-1's auxiliary LM loss weighted by
lm_weight over its own token count; the evaluation is the task's metrics on the dev split.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tformer.interop.huggingface import from_pretrained
from tformer.losses import IGNORE_INDEX
from tformer.models import TaskModel, TransformerModel, build_model, with_task_head
from tformer.tasks.encoding import HEAD_TASKS, TaskEncoder, task_encoder
from tformer.tasks.inputs import add_gpt_special_tokens
from tformer.tasks.metrics import compute_metrics
from tformer.tasks.preflight import check_dev_encodes, check_tokenizer_covers
from tformer.tasks.registry import Task, get_task
from tformer.tokenization import Tokenizer
from tformer.training.datasets import TrainingData
from tformer.training.distributed import Distributed
from tformer.training.objectives.base import Objective, mean_over
from tformer.training.options import OptionError
from tformer.training.recipe import Recipe
from tformer.training.streams import EpochStream, shuffled_batches


@dataclass
class TaskData(TrainingData):
    """TrainingData of a fine-tune: the task, its encoder and task model, the training items and the dev split."""

    task: Task | None = None
    encoder: TaskEncoder | None = None
    model: TaskModel | None = None
    train_examples: list[Any] = field(default_factory=list)
    train_available: int = 0
    items: list[Any] = field(default_factory=list)
    dev: list[Any] = field(default_factory=list)


def task_model(model: TransformerModel, task: Task, lm_weight: float | None) -> TaskModel:
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


def subset(examples: list, limit: int | None, seed: int) -> list:
    """At most `limit` examples, a seeded random choice kept in file order."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


class TaskFinetuning(Objective):
    """Fine-tuning on task `task.name`: batches are a task model's keyword arguments with the head's labels."""

    name = "task"
    length_field = "max_length"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.lm_weight = 0.0  # GPT's auxiliary LM weight, once the model is known
        self.loaded: tuple[TaskModel, Tokenizer] | None = None

    @classmethod
    def check_data(cls, recipe: Recipe) -> None:
        if not recipe.model.from_pretrained:
            raise OptionError("train.objective=task fine-tunes a pre-trained model folder; set model.from_pretrained "
                              "(e.g. a folder written by tformer train or a Hugging Face BERT / GPT folder)")
        if recipe.task.name is None:
            raise OptionError("train.objective=task needs task.name, the task to fine-tune on (e.g. task.name=sst2)")
        get_task(recipe.task.name)  # an unknown name is a one-line error naming the closest

    @classmethod
    def data_files(cls, recipe: Recipe) -> list[tuple[str, Path]]:
        return []  # the task's reader finds and checks its own files

    @property
    def task(self) -> Task:
        return get_task(str(self.recipe.task.name))

    def load_model(self) -> tuple[TaskModel, Tokenizer]:
        """The folder's model (or, with task.init=random, its architecture freshly initialised) with the task's head,
        and its tokenizer; GPT also gets GPT-1's start / delimiter / extract tokens in both. Seeded by train.seed, and
        the generator seeded again after, so dropout draws the same masks however the run was started."""
        if self.loaded is None:
            folder = self.recipe.data_path(str(self.recipe.model.from_pretrained))
            tokenizer = Tokenizer.from_file(folder)
            torch.manual_seed(self.recipe.train.seed)
            backbone = from_pretrained(folder)
            if self.recipe.task.init == "random":
                backbone = build_model(backbone.config)
            model = task_model(backbone, self.task, self.recipe.task.lm_weight)
            if model.config.family == "gpt":
                add_gpt_special_tokens(tokenizer, model)
            torch.manual_seed(self.recipe.train.seed)
            self.loaded = model, tokenizer
        return self.loaded

    def build_data(self, run_dir: Path, log: Callable[[str], Any]) -> TaskData:
        recipe, task = self.recipe, self.task
        d, t = recipe.data, recipe.task
        root = recipe.data.root
        train_all = task.read("train", root)
        dev = task.read("dev", root)[:t.max_eval_examples]
        train = subset(train_all, t.max_train_examples, recipe.train.seed)
        folder = str(recipe.model.from_pretrained)
        check_tokenizer_covers(Tokenizer.from_file(recipe.data_path(folder)), {"train": train, "dev": dev},
                               task.name, folder)
        model, tokenizer = self.load_model()
        if d.max_length > model.config.max_positions:
            raise ValueError(f"data.max_length={d.max_length} is longer than the model's {model.config.max_positions} "
                             f"positions; set it to {model.config.max_positions} or less")
        encoder = task_encoder(task, model, tokenizer, d.max_length, t.doc_stride)
        items = encoder.items(train)
        if not items:
            raise ValueError(f"{task.name} train has no examples to fine-tune on; check the data folder")
        check_dev_encodes(encoder, dev, t.eval_batch_size)
        sizes = [encoder.size(item) for item in items] if t.group_by_length else None
        stream = EpochStream(lambda epoch: shuffled_batches(len(items), d.batch_size, recipe.train.seed, epoch, sizes),
                             lambda indices: encoder.batch([items[i] for i in indices.tolist()]))
        return TaskData(tokenizer, stream, [], {"vocab_size": tokenizer.vocab_size}, task=task, encoder=encoder,
                        model=model, train_examples=train, train_available=len(train_all), items=items, dev=dev)

    def build_model(self, data: TrainingData) -> TransformerModel:
        assert isinstance(data, TaskData) and data.model is not None
        config = data.model.config
        self.lm_weight = config.lm_weight if config.family == "gpt" else 0.0
        return data.model

    # ------------------------------------------------------------------------------------------------ loss

    def counts(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """items: the examples (QA windows) the task loss averages over, or for NER the labelled tokens; lm_tokens:
        the next-token targets of GPT's auxiliary LM loss (every real token after the first of a row)."""
        if "start_positions" in batch:
            items = torch.tensor(batch["start_positions"].numel())
        elif batch["labels"].is_floating_point():
            items = torch.tensor(batch["labels"].numel())
        else:
            items = (batch["labels"] != IGNORE_INDEX).sum()
        counts = {"items": items, "examples": torch.tensor(batch["input_ids"].shape[0])}
        if self.lm_weight > 0:
            mask = batch.get("attention_mask")
            ids = batch["input_ids"]
            counts["lm_tokens"] = mask[..., 1:].sum() if mask is not None else torch.tensor(ids[..., 1:].numel())
        return counts

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        out = model(**batch, loss_reduction="sum")
        counts = self.counts(batch)
        loss = mean_over(out.loss, totals["items"])
        sums = {"task_loss_sum": out.loss.detach(), "items": counts["items"], "examples": counts["examples"]}
        if out.lm_loss is not None:
            loss = loss + self.lm_weight * mean_over(out.lm_loss, totals["lm_tokens"])
            sums.update(lm_loss_sum=out.lm_loss.detach(), lm_tokens=counts["lm_tokens"])
        return loss, sums

    def summary(self, sums: dict[str, float]) -> dict[str, float]:
        """loss = task_loss + lm_weight * lm_loss (GPT), each the mean over its own count."""
        task_loss = sums.get("task_loss_sum", 0.0) / max(sums.get("items", 0.0), 1.0)
        if "lm_tokens" not in sums:
            return {"loss": task_loss}
        lm_loss = sums.get("lm_loss_sum", 0.0) / max(sums["lm_tokens"], 1.0)
        return {"loss": task_loss + self.lm_weight * lm_loss, "task_loss": task_loss, "lm_loss": lm_loss}

    def throughput(self, sums: dict[str, float], seconds: float) -> dict[str, float]:
        return {"examples/s": round(sums.get("examples", 0.0) / seconds, 1)}

    # ------------------------------------------------------------------------------ evaluation and the end

    def evaluate(self, model: nn.Module, data: TrainingData, *, env: Distributed, autocast: torch.autocast | None,
                 final: bool) -> dict[str, float]:
        """The task's metrics on the dev split, in fp32 and eval mode as `tformer evaluate` scores the folder (every
        process scores all of it: under FSDP each forward gathers the shards, so all must run it)."""
        assert isinstance(data, TaskData) and data.encoder is not None and data.task is not None
        was_training = model.training
        model.eval()
        try:
            predictions, references = data.encoder.predict(data.dev, self.recipe.task.eval_batch_size)
        finally:
            model.train(was_training)
        return compute_metrics(data.task.metrics, predictions, references)

    def final_folder(self, run_dir: Path) -> Path:
        return run_dir  # OUT/ itself is the fine-tuned model folder (`tformer evaluate TASK --model OUT`)
