"""A training recipe: every option as a typed dataclass field with help text (`tformer train R --print-config`).

A recipe YAML has the sections below; anything left out takes the default shown by `--print-config`. The
recipes shipped with tformer live in `recipes/` (`tformer train demo-numbers` finds them by name).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tformer.config import PRESETS, ModelConfig
from tformer.training.objectives import NAMES as OBJECTIVES
from tformer.training.objectives import objective_class, unknown_objective
from tformer.training.options import OptionError, apply_overrides, build, read_yaml

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
TOKENIZER_KINDS = ("char", "word", "bpe", "wordpiece")  # tokenization.KINDS, without importing torch here


def at_least(where: str, value: int | None, low: int, note: str = "") -> None:
    """Refuse an integer option below `low` (None passes: the option's default)."""
    if value is not None and value < low:
        raise OptionError(f"{where}={value} must be at least {low}" + (f" ({note})" if note else ""))


def positive(where: str, value: float, note: str = "") -> None:
    """Refuse a float option that is not a finite number above 0 (nan, inf, 0 or negative)."""
    if not (math.isfinite(value) and value > 0):
        raise OptionError(f"{where}={value} must be a finite number above 0" + (f", {note}" if note else ""))


def _help(text: str, default: Any = None, *, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class ModelOptions:
    """Which model to train: a preset, or a saved folder, with any ModelConfig field overridden."""

    preset: str | None = _help("a ModelConfig preset (`tformer models` lists them)")
    from_pretrained: str | None = _help("a model folder (Hugging Face layout) to start from instead of random weights")
    config: dict[str, Any] = _help("ModelConfig fields over the preset; vocab_size and special-token ids come from "
                                   "the tokenizer", factory=dict)

    def __post_init__(self) -> None:
        if self.preset is None and self.from_pretrained is None:
            raise OptionError("set model.preset (one of `tformer models`) or model.from_pretrained (a model folder)")
        if self.preset is not None and self.preset not in PRESETS:
            raise OptionError(f"model.preset={self.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
        known = list(ModelConfig.__dataclass_fields__)
        for key in self.config:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (f"did you mean 'model.config.{close[0]}'?" if close
                        else f"ModelConfig fields: {', '.join(known)}")
                raise OptionError(f"unknown recipe key 'model.config.{key}'; {hint}")


@dataclass
class DataOptions:
    """Where the text comes from and how it becomes batches."""

    root: str | None = _help("folder that relative data paths are read from; default $TFORMER_DATA, else "
                             "../shared/data when it exists, else the current folder")
    corpus: Literal["files", "numbers"] = _help("files, or numbers: the synthetic English->German number "
                                                "phrases (translation objectives)", "files")
    text: list[str] = _help("causal_lm / mlm / mlm_nsp: text files, plain or .gz (Gutenberg headers are cut)",
                            factory=list)
    val_fraction: float = _help("causal_lm / mlm: fraction of the text held out for evaluation", 0.1)
    prepared: str | None = _help("causal_lm: a `tformer prepare` output folder (train.bin, val.bin, tokenizer.json, "
                                 "meta.json; relative: under data.root) to train on as it is, instead of preparing "
                                 "data.text into RUN/data")
    train_source: str | None = _help("translation: training source file, one sentence per line")
    train_target: str | None = _help("translation: training target file, line-aligned with train_source")
    valid_source: str | None = _help("translation: validation source file")
    valid_target: str | None = _help("translation: validation target file")
    test_source: str | None = _help("translation: test source file (scored once, at the end)")
    test_target: str | None = _help("translation: test target file")
    train_pairs: int | None = _help("numbers: training pairs drawn from the train split (None: all 980,000)")
    small_numbers: int = _help("numbers: also train on every training-split number below this (a hash sample "
                               "of train_pairs holds almost only 6-digit numbers); 0: none", 0)
    valid_pairs: int | None = _help("numbers: validation pairs (None: the whole split)", 1000)
    test_pairs: int | None = _help("numbers: test pairs (None: the whole split, about 10,000)")
    tokenizer: str = _help("char, word, bpe or wordpiece (trained on the training text), or a tokenizer.json path",
                           "char")
    tokenizer_pairs: int | None = _help("translation: train the tokenizer on the first N training pairs only "
                                        "(None: all of them)")
    vocab_size: int | None = _help("vocabulary size for bpe / word / wordpiece (None: the tokenizer's default)")
    block_size: int = _help("causal_lm: tokens per training window", 256)
    max_length: int = _help("mlm / mlm_nsp: tokens per example; translation: longest source or target kept", 128)
    batch_size: int = _help("rows per micro-step, over all processes together (each takes its share)", 32)
    max_tokens: int | None = _help("translation: at most this many padded tokens per batch")
    mlm_probability: float = _help("masked LM: fraction of tokens chosen for prediction (BERT: 0.15)", 0.15)
    random_next_probability: float = _help("NSP: probability that B is a random segment (BERT: 0.5)", 0.5)
    lowercase: bool = _help("translation: lowercase both sides before tokenising", False)

    def __post_init__(self) -> None:
        for name in ("block_size", "max_length", "batch_size"):
            at_least(f"data.{name}", getattr(self, name), 1)
        for name in ("vocab_size", "max_tokens", "train_pairs", "valid_pairs", "tokenizer_pairs"):
            at_least(f"data.{name}", getattr(self, name), 1, "or null for the default")
        at_least("data.test_pairs", self.test_pairs, 0, "0 for no test score, or null for the whole split")
        at_least("data.small_numbers", self.small_numbers, 0, "0 for none")
        if not 0 <= self.val_fraction < 1:
            raise OptionError(f"data.val_fraction={self.val_fraction} must be in [0, 1) (0.1 holds out the last 10 %)")
        if not 0 < self.mlm_probability <= 1:
            raise OptionError(f"data.mlm_probability={self.mlm_probability} must be in (0, 1]; BERT uses 0.15")
        if not 0 <= self.random_next_probability <= 1:
            raise OptionError(f"data.random_next_probability={self.random_next_probability} must be in [0, 1]; "
                              "BERT uses 0.5")
        if self.tokenizer not in TOKENIZER_KINDS and not self.tokenizer.endswith(".json"):
            raise OptionError(f"data.tokenizer={self.tokenizer!r} is neither a kind ({', '.join(TOKENIZER_KINDS)}) "
                              "nor a tokenizer.json path")


@dataclass
class TrainOptions:
    """The optimisation: objective, steps, AdamW, schedule, precision, devices."""

    objective: str = _help(
        "causal_lm (GPT), mlm or mlm_nsp (BERT), seq2seq (encoder-decoder or rnn), decoder_seq2seq (T-D: "
        "source [SEP] target, loss on the target), task (fine-tuning on the `task` section's task)", "causal_lm")
    max_steps: int = _help("optimizer steps", 1000)
    grad_accum: int = _help("micro-steps per optimizer step (the loss is averaged over all their tokens)", 1)
    lr: float = _help("peak learning rate", 3e-4)
    min_lr: float = _help("cosine / linear: learning rate at the last step", 0.0)
    schedule: Literal["cosine", "linear", "noam", "constant"] = _help(
        "after warmup: cosine or linear decay to min_lr; noam: lr * min(step/warmup, sqrt(warmup/step)) "
        "(the paper's inverse square root; lr = d_model^-0.5 * warmup^-0.5 gives its values); constant", "cosine")
    warmup_steps: int = _help("steps of linear warmup from 0 to lr", 0)
    weight_decay: float = _help("AdamW weight decay (never on biases, norms and embeddings)", 0.01)
    decay_embeddings: bool = _help("also decay token and position embeddings (nanoGPT does; GPT-2 and BERT "
                                   "practice does not)", False)
    betas: tuple[float, float] = _help("AdamW betas", (0.9, 0.999))
    eps: float = _help("AdamW epsilon", 1e-8)
    clip_grad_norm: float | None = _help("clip the global gradient norm to this (None: no clipping)", 1.0)
    label_smoothing: float = _help("label smoothing of the token loss (the paper: 0.1)", 0.0)
    precision: Literal["fp32", "bf16", "fp16"] = _help("fp32, bf16 autocast (CPU or CUDA), fp16 autocast with a "
                                                       "gradient scaler (CUDA)", "fp32")
    compile: bool = _help("torch.compile the model", False)
    seed: int = _help("seed of the weights, dropout and batches (under torchrun process r drops out with seed + 1 + r)",
                      0)
    device: str = _help("auto (cuda when there is one), cpu, cuda, cuda:N", "auto")
    threads: int | None = _help("CPU threads for torch (None: torch's default)")
    distributed: Literal["ddp", "fsdp"] = _help("under torchrun: ddp (replicas) or fsdp (FSDP2 fully_shard)", "ddp")

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise OptionError(unknown_objective(self.objective))
        for name in ("max_steps", "grad_accum"):
            at_least(f"train.{name}", getattr(self, name), 1)
        at_least("train.warmup_steps", self.warmup_steps, 0)
        at_least("train.threads", self.threads, 1, "or null for torch's default")
        if not 0 <= self.seed < 2**32:
            raise OptionError(f"train.seed={self.seed} must be in [0, 2**32) (numpy's seeds)")
        positive("train.lr", self.lr, "e.g. 3e-4")
        positive("train.eps", self.eps, "AdamW's default is 1e-8")
        if self.clip_grad_norm is not None:
            positive("train.clip_grad_norm", self.clip_grad_norm, "or null for no clipping")
        for name in ("min_lr", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise OptionError(f"train.{name}={getattr(self, name)} must be a finite number >= 0")
        if self.schedule in ("cosine", "linear") and self.min_lr > self.lr:
            raise OptionError(f"train.min_lr={self.min_lr} is above train.lr={self.lr}, so the {self.schedule} "
                              f"decay would raise the learning rate; set train.min_lr at most {self.lr}")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise OptionError(f"train.betas[{i}]={beta} must be in [0, 1); AdamW's default is [0.9, 0.999]")
        if self.schedule == "noam" and self.warmup_steps < 1:
            raise OptionError("train.schedule=noam needs train.warmup_steps >= 1 (the paper: 4000)")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"train.label_smoothing={self.label_smoothing} must be in [0, 1)")


@dataclass
class EvalOptions:
    """Evaluation during and after training."""

    every: int = _help("evaluate every this many steps (0: only at the end)", 500)
    batches: int | None = _help("evaluation batches per evaluation (None: the whole validation set)", 20)
    bleu: bool = _help("translation: also decode the validation sources and score BLEU (sacrebleu)", False)
    bleu_pairs: int | None = _help("translation: validation pairs decoded for BLEU (None: all)", 500)
    bleu_tokenize: Literal["13a", "char", "intl", "none"] = _help(
        "sacrebleu tokenisation: 13a (words, the standard) or char (for one-word targets such as German numbers)",
        "13a")
    num_beams: int = _help("translation: beams when decoding for BLEU and the test score", 1)
    max_new_tokens: int = _help("translation: longest decoded target", 64)
    length_penalty: float = _help("translation: beam length penalty", 1.0)

    def __post_init__(self) -> None:
        at_least("eval.every", self.every, 0, "0 evaluates only at the end")
        at_least("eval.batches", self.batches, 1, "or null for the whole validation set")
        at_least("eval.bleu_pairs", self.bleu_pairs, 1, "or null for all of them")
        at_least("eval.num_beams", self.num_beams, 1, "1 is greedy decoding")
        at_least("eval.max_new_tokens", self.max_new_tokens, 1)
        if not math.isfinite(self.length_penalty):
            raise OptionError(f"eval.length_penalty={self.length_penalty} must be a finite number (1.0: none)")


@dataclass
class OutputOptions:
    """Where the run writes, and how often."""

    dir: str = _help("the run folder: checkpoints/, final/, metrics.jsonl, loss.png ({name} is the recipe name)",
                     "runs/{name}")
    checkpoint_every: int = _help("write a checkpoint every this many steps (0: only at the end)", 0)
    keep_checkpoints: int = _help("how many recent checkpoints to keep", 2)
    log_every: int = _help("print and log training metrics every this many steps", 10)
    progress: Literal["auto", "bar", "lines", "none"] = _help("auto: a tqdm bar on a terminal, lines otherwise",
                                                              "auto")
    tensorboard: bool = _help("write TensorBoard events when tensorboard is installed", True)
    plot: bool = _help("write loss.png at the end when matplotlib is installed", True)

    def __post_init__(self) -> None:
        if not self.dir.strip():
            raise OptionError("out.dir is empty; give the run folder, e.g. --out.dir=runs/{name}")
        at_least("out.checkpoint_every", self.checkpoint_every, 0, "0 checkpoints only at the end")
        at_least("out.keep_checkpoints", self.keep_checkpoints, 1, "--resume needs one")
        at_least("out.log_every", self.log_every, 1)


@dataclass
class TaskOptions:
    """train.objective=task: the task fine-tuned (model.from_pretrained is the pre-trained folder)."""

    name: str | None = _help("the task (`tformer finetune --help` lists them), e.g. sst2")
    doc_stride: int = _help("QA: context tokens shared by consecutive windows", 128)
    max_train_examples: int | None = _help("train on a seeded random subset of this many examples (None: all)")
    max_eval_examples: int | None = _help("score only the first N dev examples (None: all)")
    eval_batch_size: int = _help("examples per evaluation batch", 64)
    group_by_length: bool = _help("batch examples of similar length together (shuffled groups of 50 batches, each "
                                  "sorted by length)", False)
    init: Literal["pretrained", "random"] = _help("pretrained: the folder's weights; random: its architecture "
                                                  "freshly initialised", "pretrained")
    lm_weight: float | None = _help("GPT: weight of the auxiliary LM loss (None: 0.5, GPT-1's)")

    def __post_init__(self) -> None:
        for name in ("max_train_examples", "max_eval_examples"):
            at_least(f"task.{name}", getattr(self, name), 1, "or null for all")
        at_least("task.eval_batch_size", self.eval_batch_size, 1)
        at_least("task.doc_stride", self.doc_stride, 0)
        if self.lm_weight is not None and not (math.isfinite(self.lm_weight) and self.lm_weight >= 0):
            raise OptionError(f"task.lm_weight={self.lm_weight} must be a finite number >= 0 (GPT-1: 0.5)")


@dataclass
class Recipe:
    """A whole training run: model, data, optimisation, evaluation and output."""

    name: str = _help("the run's name (used in out.dir)", "run")
    description: str = _help("one line on what the recipe trains", "")
    model: ModelOptions = _help("the model", factory=lambda: ModelOptions(preset="gpt2-tiny"))
    data: DataOptions = _help("the data", factory=DataOptions)
    train: TrainOptions = _help("the optimisation", factory=TrainOptions)
    eval: EvalOptions = _help("evaluation", factory=EvalOptions)
    out: OutputOptions = _help("outputs", factory=OutputOptions)
    task: TaskOptions = _help("train.objective=task: the task to fine-tune on", factory=TaskOptions)

    @property
    def run_dir(self) -> Path:
        return Path(self.out.dir.replace("{name}", self.name))

    def data_path(self, path: str) -> Path:
        """A data path from the recipe: absolute as given, relative ones under data.root."""
        candidate = Path(os.path.expanduser(path))
        if candidate.is_absolute():
            return candidate
        return data_root(self.data.root) / candidate


def data_root(root: str | None) -> Path:
    """data.root, else $TFORMER_DATA, else ../shared/data (where this workplace keeps it), else the current folder."""
    if root:
        return Path(os.path.expanduser(root))
    if os.environ.get("TFORMER_DATA"):
        return Path(os.environ["TFORMER_DATA"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        shared = base.parent / "shared" / "data"
        if shared.is_dir():
            return shared
    return Path.cwd()


def find_data_files(patterns: Sequence[str], roots: Sequence[Path], hint: str) -> list[Path]:
    """The files `patterns` name, in order: an absolute path as given, a relative one under the first of `roots`
    that holds it; a glob (`*`, `?`, `[` in the file name) gives its matches, sorted. `hint` (how to point at
    another folder) ends the one-line error for a pattern found under none of them."""
    files: list[Path] = []
    for pattern in patterns:
        given = Path(os.path.expanduser(pattern))
        bases = [Path()] if given.is_absolute() else list(roots)
        globbed = any(ch in given.name for ch in "*?[")
        found = next((matched for matched in (_matches(base / given, globbed) for base in bases) if matched), None)
        if found is None:
            where = " or ".join(str(base / given) for base in bases)
            folder = next((base / given for base in bases if (base / given).is_dir()), None)
            if folder is not None:
                raise IsADirectoryError(f"{folder} is a folder, not a text file; name its files, e.g. "
                                        f"{folder}/*.txt.gz")
            raise FileNotFoundError(f"no file matches {where}; {hint}" if globbed else
                                    f"data file {where} does not exist; {hint}")
        files.extend(found)
    return files


def _matches(path: Path, globbed: bool) -> list[Path]:
    if globbed:
        return sorted(p for p in path.parent.glob(path.name) if p.is_file())
    return [path] if path.is_file() else []


def recipe_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A recipe file: the path as given when it exists, else `recipes/NAME.yaml` shipped with tformer."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file() and len(path.parts) == 1:
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise OptionError(f"recipe {str(name_or_path)!r} is neither a file nor a shipped recipe; shipped: {names}")


def load_recipe(name_or_path: str | os.PathLike[str] | dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """The Recipe of a YAML file (or shipped name, or mapping) with `--key.sub=value` overrides applied."""
    mapping = name_or_path if isinstance(name_or_path, dict) else read_yaml(recipe_path(name_or_path))
    mapping = apply_overrides(mapping, list(overrides or []))
    _check_sections(mapping)
    recipe = build(Recipe, mapping)
    check_recipe(recipe)
    return recipe


def _check_sections(mapping: dict[str, Any]) -> None:
    """A key written under the wrong section (`train.keep_checkpoints`) names the section it belongs to; a
    ModelConfig field outside model.config (`model.attention_pattern`) names model.config."""
    classes = {"model": ModelOptions, "data": DataOptions, "train": TrainOptions, "eval": EvalOptions,
               "out": OutputOptions, "task": TaskOptions}
    for section, values in mapping.items():
        if section not in classes or not isinstance(values, dict):
            continue
        for key in values:
            home = [name for name, cls in classes.items() if key in cls.__dataclass_fields__]
            model_field = key in ModelConfig.__dataclass_fields__ and section not in home
            if model_field and (section == "model" or not home):  # `--model.attention_pattern=LMLML`
                raise OptionError(f"unknown recipe key '{section}.{key}'; {key} is a ModelConfig field: write "
                                  f"--model.config.{key}=VALUE (in a YAML file, under model: config:)")
            if home and section not in home:
                raise OptionError(f"unknown recipe key '{section}.{key}'; {key} is an option of {home[0]}: write "
                                  f"--{home[0]}.{key}=VALUE (in a YAML file, under {home[0]}:)")


def model_config(recipe: Recipe, **from_data: Any) -> ModelConfig:
    """The ModelConfig a recipe trains: preset, then `model.config`, then what the data fixes (vocab, ids)."""
    base = ModelConfig.preset(recipe.model.preset).to_dict() if recipe.model.preset else {}
    if "vocab_size" in from_data:  # a new vocabulary: the preset's special ids mean nothing in it
        from_data = {**dict.fromkeys(SPECIAL_ID_FIELDS), **from_data}
    try:
        return ModelConfig.from_dict({**base, **recipe.model.config, **from_data})
    except ValueError as error:
        raise OptionError(f"model.config: {error}") from None


def check_recipe(recipe: Recipe) -> None:
    """Refuse values that fit each field alone but not the recipe as a whole, before any file is read or written.

    `load_recipe` calls it, so `--print-config` refuses the same recipes a run would; the objective's
    `prepare_data` calls it again for a Recipe built in Python. What applies to which objective is its entry's.
    """
    objective = objective_class(recipe.train.objective)
    if recipe.model.preset is not None and not recipe.model.from_pretrained:  # a folder's model: preflight.py
        objective.check_model(recipe, model_config(recipe, vocab_size=1 << 30))  # the vocabulary comes with the data
    objective.check_recipe(recipe)


def recipe_notes(recipe: Recipe) -> list[str]:
    """What a valid recipe will do that its writer may not expect, one line each (the run prints them)."""
    t, notes = recipe.train, []
    if t.warmup_steps > t.max_steps:
        notes.append(f"train.warmup_steps={t.warmup_steps} is more than train.max_steps={t.max_steps}: the learning "
                     f"rate climbs to {t.lr * t.max_steps / t.warmup_steps:.3g} and never reaches train.lr={t.lr:g}")
    return notes
