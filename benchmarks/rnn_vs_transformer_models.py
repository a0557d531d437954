"""benchmarks/rnn_vs_transformer.py's models: the matched RNNsearch / Transformer pairs, where their parameters sit,
and the machine line. Both models are tformer's own: `ModelConfig(family="rnn")` (RNNsearch) and the
encoder-decoder Transformer of the demo recipe, built by `tformer.models.build_model`."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

import torch
from torch import nn

from forward import cpu_model
from tformer.config import PRESETS, ModelConfig
from tformer.models import build_model
from tformer.training.recipe import load_recipe, model_config

FAMILIES = ("rnn", "transformer")
LABELS = {"rnn": "RNNsearch (GRU + additive attention)", "transformer": "Transformer (SDPA attention)"}
SPECIAL_IDS = dict(pad_token_id=0, decoder_start_token_id=1, bos_token_id=1, eos_token_id=2)
# size -> (RNNsearch preset, how the Transformer of the same size is made)
SIZES = {"demo": ("rnnsearch-demo", "demo-numbers"), "tiny": ("rnnsearch-tiny", "transformer-tiny"),
         "small": ("rnnsearch-tiny", "demo-numbers")}
# "small" (the path-length task): the demo recipe's pre-norm Transformer at half its width, one decoder layer;
# the RNN is rnnsearch-tiny with hidden_size (and alignment_size) fitted to the same parameter count
SMALL_TRANSFORMER = dict(d_model=64, n_layers=2, n_decoder_layers=1, n_heads=4, d_ff=128)


def rnn_available() -> str | None:
    """None when tformer has the rnn family and its presets; else why not, in one line."""
    try:
        import tformer.models.rnn  # noqa: F401
    except ImportError as error:
        return f"tformer has no RNN model yet ({error})"
    missing = [name for name, _ in SIZES.values() if name not in PRESETS]
    return f"tformer lacks the presets {', '.join(sorted(set(missing)))}" if missing else None


def transformer_config(size: str, vocab_size: int, max_positions: int, dropout: float = 0.0) -> ModelConfig:
    """The Transformer of `size`: the demo-numbers recipe's model (2 + 2 layers, 128 wide), its small version,
    or transformer-tiny."""
    source = SIZES[size][1]
    ids = dict(vocab_size=vocab_size, max_positions=max_positions, dropout=dropout, attention_dropout=dropout,
               **SPECIAL_IDS)
    if size == "small":
        ids.update(SMALL_TRANSFORMER)
    if source in PRESETS:
        return ModelConfig.preset(source, **ids)
    return model_config(load_recipe(source), **ids)


def count(config: ModelConfig) -> int:
    return sum(p.numel() for p in build_model(config).parameters())


def rnn_config(size: str, vocab_size: int, max_positions: int = 64, dropout: float = 0.0) -> ModelConfig:
    """The RNNsearch preset of `size` (rnnsearch-demo: matched to the demo Transformer; rnnsearch-tiny); "small":
    rnnsearch-tiny with the small Transformer's embedding width and the hidden size that matches its count.
    max_positions only bounds generation for the RNN (it has no position table)."""
    config = ModelConfig.preset(SIZES[size][0], vocab_size=vocab_size, max_positions=max_positions, dropout=dropout,
                                **SPECIAL_IDS)
    if size != "small":
        return config
    width = SMALL_TRANSFORMER["d_model"]
    return config.replace(d_model=width, maxout_size=width, **_small_rnn_sizes(vocab_size))


@functools.lru_cache
def _small_rnn_sizes(vocab_size: int) -> dict[str, int]:
    """hidden_size = alignment_size (a multiple of 4) whose small RNNsearch comes closest to the small Transformer's
    parameter count at this vocabulary."""
    target = count(transformer_config("small", vocab_size, 64))
    base = ModelConfig.preset(SIZES["small"][0], vocab_size=vocab_size, **SPECIAL_IDS)
    width = SMALL_TRANSFORMER["d_model"]

    def gap(h: int) -> int:
        return abs(count(base.replace(d_model=width, maxout_size=width, hidden_size=h, alignment_size=h)) - target)

    best = min(range(8, 257, 4), key=gap)
    return {"hidden_size": best, "alignment_size": best}


def config_for(family: str, size: str, vocab_size: int, max_positions: int, dropout: float = 0.0) -> ModelConfig:
    if family == "rnn":
        return rnn_config(size, vocab_size, max_positions, dropout)
    return transformer_config(size, vocab_size, max_positions, dropout)


def build(family: str, size: str, vocab_size: int, max_positions: int, seed: int = 0) -> nn.Module:
    """A freshly initialised model of `family` and `size` (dropout 0), seeded."""
    torch.manual_seed(seed)
    return build_model(config_for(family, size, vocab_size, max_positions))


def counted_configs(quick: bool, with_rnn: bool) -> dict[str, ModelConfig]:
    """The models whose parameters the benchmark counts: each matched pair at its recipe's vocabulary."""
    rnn: dict[str, ModelConfig] = {}
    if quick:
        if with_rnn:
            rnn["RNNsearch rnnsearch-tiny (vocab 99)"] = rnn_config("tiny", 99)
        return {**rnn, "Transformer transformer-tiny (vocab 99)": transformer_config("tiny", 99, 64)}
    transformers = {"Transformer demo-numbers (vocab 400)": transformer_config("demo", 400, 64),
                    "Transformer transformer-multi30k (vocab 8,000)":
                    model_config(load_recipe("transformer-multi30k"), vocab_size=8000, **SPECIAL_IDS)}
    if with_rnn:
        rnn["RNNsearch rnnsearch-demo (vocab 400)"] = rnn_config("demo", 400)
        for preset, vocab in (("rnnsearch-multi30k", 8000), ("rnnsearch", None)):
            if preset in PRESETS:
                sizes = {"vocab_size": vocab, **SPECIAL_IDS} if vocab else {}
                rnn[f"RNNsearch {preset} (vocab {vocab or 'of the preset'})"] = ModelConfig.preset(preset, **sizes)
    return {**rnn, **transformers}


PLACES = ("embeddings", "recurrence", "attention", "feed-forward", "norms", "output", "other")


def _place_of_module(module: nn.Module) -> str | None:
    name = type(module).__name__.lower()
    if isinstance(module, nn.Embedding):
        return "embeddings"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "recurrence"
    if "attention" in name:
        return "attention"
    if "feedforward" in name or "maxout" in name:
        return "feed-forward" if "feedforward" in name else "output"
    if isinstance(module, nn.LayerNorm) or "norm" in name:
        return "norms"
    return None


def _place_of_name(name: str) -> str:
    lowered = name.lower()
    if any(word in lowered for word in ("lm_head", "output", "logit", "readout", "maxout")):
        return "output"
    if any(word in lowered for word in ("gru", "lstm", "rnn", "cell")):
        return "recurrence"
    return "other"


def parameter_places(model: nn.Module) -> dict[str, dict]:
    """Parameters per place: {place: {"count": n, "names": [...]}}, each shared tensor counted once (tied output
    projection = the embedding table). A module type decides first (Embedding, GRU/LSTM, *Attention*,
    *FeedForward*, norms, maxout); the rest by name (output/head/logit -> output, else "other")."""
    owner: dict[int, str] = {}
    for _, module in reversed(list(model.named_modules())):  # the innermost module decides, before its parents
        place = _place_of_module(module)
        if place is not None:
            for p in module.parameters():
                owner.setdefault(id(p), place)
    places = {place: {"count": 0, "names": []} for place in PLACES}
    for name, p in model.named_parameters():  # a shared tensor is listed once, under its first name
        place = owner.get(id(p)) or _place_of_name(name)
        places[place]["count"] += p.numel()
        places[place]["names"].append(name)
    return places


@dataclass
class Machine:
    """The machine line: CPU model, cores, torch version and threads."""

    cpu: str
    cores: int
    torch_version: str
    python: str

    def line(self, threads: str) -> str:
        return (f"machine: {self.cpu}, {self.cores} cores (os.cpu_count), torch {self.torch_version}, Python "
                f"{self.python}, torch threads: {threads}; load average at start {load_average()}")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> Machine:
    return Machine(cpu_model(), os.cpu_count() or 1, torch.__version__, platform.python_version())
