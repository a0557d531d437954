"""The options of `tformer finetune` (`--key=value` or `--key value`) and their standard values by task kind.

Light on purpose (no torch): the CLI builds `finetune --help` from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tformer.config import ModelConfig
from tformer.tasks.registry import Task
from tformer.training.options import OptionError, apply_overrides, build

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
    grad_accum: int = field(default=1, metadata=_help(
        "micro-batches of batch_size per optimizer step (the loss is averaged over all their examples)"))
    precision: str = field(default="fp32", metadata=_help(
        "fp32, bf16 (autocast, CPU or CUDA) or fp16 (autocast with a gradient scaler, CUDA)"))
    compile: bool = field(default=False, metadata=_help("torch.compile the model"))
    checkpoint_every: int = field(default=0, metadata=_help(
        "write a checkpoint (OUT/checkpoints/step-N) every this many steps, for --resume (0: only at the end)"))
    eval_every: int = field(default=0, metadata=_help("also score the dev split every this many steps (0: at the "
                                                      "end only)"))
    distributed: str = field(default="ddp", metadata=_help(
        "under torchrun: ddp (a replica per process) or fsdp (FSDP2, parameters sharded)"))

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "max_steps", "max_length", "max_train_examples", "max_eval_examples",
                     "eval_batch_size", "threads", "log_every", "grad_accum"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name}={value} must be at least 1")
        if self.lr is not None and self.lr <= 0:
            raise OptionError(f"lr={self.lr} must be positive, e.g. --lr=2e-5")
        if self.init not in ("pretrained", "random"):
            raise OptionError(f"init={self.init!r} is not an initialisation; pass --init=pretrained or --init=random")
        for name, allowed in (("precision", ("fp32", "bf16", "fp16")), ("distributed", ("ddp", "fsdp"))):
            if getattr(self, name) not in allowed:
                raise OptionError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}; pass "
                                  f"--{name}={allowed[0]}")
        for name in ("checkpoint_every", "eval_every"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name}={getattr(self, name)} must be at least 0 (0: only at the end)")
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


