"""A training recipe: every option as a typed dataclass field with help text (`tformer train R --print-config`).

A recipe YAML has the sections below; anything left out takes the default shown by `--print-config`. The
recipes shipped with tformer live in `recipes/` (`tformer train demo-numbers` finds them by name).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tformer.config import PRESETS, ModelConfig
from tformer.training.options import OptionError, apply_overrides, build, read_yaml

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
OBJECTIVES = ("causal_lm", "mlm", "mlm_nsp", "seq2seq", "decoder_seq2seq")


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
            if getattr(self, name) < 1:
                raise OptionError(f"data.{name}={getattr(self, name)} must be at least 1")
        if not 0 <= self.val_fraction < 1:
            raise OptionError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass
class TrainOptions:
    """The optimisation: objective, steps, AdamW, schedule, precision, devices."""

    objective: Literal["causal_lm", "mlm", "mlm_nsp", "seq2seq", "decoder_seq2seq"] = _help(
        "causal_lm (GPT), mlm or mlm_nsp (BERT), seq2seq (encoder-decoder), decoder_seq2seq (T-D: source [SEP] "
        "target, loss on the target)", "causal_lm")
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
    seed: int = _help("seed of the weights, dropout and batches", 0)
    device: str = _help("auto (cuda when there is one), cpu, cuda, cuda:N", "auto")
    threads: int | None = _help("CPU threads for torch (None: torch's default)")
    distributed: Literal["ddp", "fsdp"] = _help("under torchrun: ddp (replicas) or fsdp (FSDP2 fully_shard)", "ddp")

    def __post_init__(self) -> None:
        for name in ("max_steps", "grad_accum"):
            if getattr(self, name) < 1:
                raise OptionError(f"train.{name}={getattr(self, name)} must be at least 1")
        if self.lr <= 0:
            raise OptionError(f"train.lr={self.lr} must be positive")
        if self.warmup_steps < 0:
            raise OptionError(f"train.warmup_steps={self.warmup_steps} must be 0 or more")
        if self.schedule == "noam" and self.warmup_steps < 1:
            raise OptionError("train.schedule=noam needs train.warmup_steps >= 1 (the paper: 4000)")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"train.label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise OptionError(f"train.clip_grad_norm={self.clip_grad_norm} must be positive or null")


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
    return build(Recipe, apply_overrides(mapping, list(overrides or [])))


def model_config(recipe: Recipe, **from_data: Any) -> ModelConfig:
    """The ModelConfig a recipe trains: preset, then `model.config`, then what the data fixes (vocab, ids)."""
    base = ModelConfig.preset(recipe.model.preset).to_dict() if recipe.model.preset else {}
    if "vocab_size" in from_data:  # a new vocabulary: the preset's special ids mean nothing in it
        from_data = {**dict.fromkeys(SPECIAL_ID_FIELDS), **from_data}
    try:
        return ModelConfig.from_dict({**base, **recipe.model.config, **from_data})
    except ValueError as error:
        raise OptionError(f"model.config: {error}") from None
