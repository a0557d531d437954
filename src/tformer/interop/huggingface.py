"""Hugging Face model folders in and out: GPT-2, GPT-1 (openai-gpt), BERT and Marian, and task models on them; and
the folders of models Hugging Face has no class for, in the same format under a tformer-native model_type: the RNN
family ("tformer-rnnsearch") and a GPT with local or memory-compressed layers ("tformer-tdmca", the T-DMCA).

A folder holds `config.json` and `model.safetensors` (or `pytorch_model.bin`, or shards with an index).
Loading maps every tensor to its tformer name (transposing GPT's Conv1D weights, joining BERT's and
Marian's separate query/key/value projections into one), then checks shapes; saving does the reverse and
writes a `config.json` that `transformers` reads, plus our own config under the key "tformer_config".
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import Tensor

from tformer.config import ModelConfig
from tformer.interop.generation_config import FILE as GENERATION_CONFIG
from tformer.interop.generation_config import attach_generation_config, generation_config_text
from tformer.interop.hf_config import RNN_MODEL_TYPE, TDMCA_MODEL_TYPE, config_to_hf
from tformer.interop.model_folder import (
    apply_overrides,
    file_mode,
    find_model_folder,
    model_config_of,
    os_error_in,
    prepare_output_folder,
    read_config_json,
    write_error,
)
from tformer.interop.weight_files import INDEX_FILES, WEIGHT_FILES, read_checkpoint
from tformer.layers.positions import sinusoidal_table
from tformer.models import TransformerModel, build_model, with_task_head
from tformer.tokenization import Tokenizer

__all__ = ["INDEX_FILES", "WEIGHT_FILES", "from_pretrained", "load_weights", "read_checkpoint", "save_pretrained"]
# Stored by some versions of `transformers` but computed, not learned: nothing to load.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "embeddings.position_ids")


@dataclass(frozen=True)
class Rule:
    """Where one tformer tensor lives in a Hugging Face checkpoint."""

    parts: tuple[str, ...]  # one name, or the q/k/v (or k/v) names joined along dim 0
    transpose: bool = False  # GPT's Conv1D stores (in, out); nn.Linear wants (out, in)
    aliases: tuple[str, ...] = ()  # other names a tied tensor may be saved under
    save: bool = True  # False for tensors tied to one already written


def _linear(ours: str, theirs: str, transpose: bool = False) -> dict[str, Rule]:
    return {f"{ours}.weight": Rule((f"{theirs}.weight",), transpose), f"{ours}.bias": Rule((f"{theirs}.bias",))}


def _joined(ours: str, theirs: list[str]) -> dict[str, Rule]:
    return {f"{ours}.{p}": Rule(tuple(f"{t}.{p}" for t in theirs)) for p in ("weight", "bias")}


def _gpt_rules(config: ModelConfig, model_type: str) -> dict[str, Rule]:
    token, position = ("wte", "wpe") if model_type == "gpt2" else ("tokens_embed", "positions_embed")
    rules = {"decoder.embeddings.token.weight": Rule((f"{token}.weight",)),
             "decoder.embeddings.positions.weight": Rule((f"{position}.weight",))}
    for i in range(config.n_layers):
        ours, theirs = f"decoder.blocks.{i}", f"h.{i}"
        rules |= _linear(f"{ours}.self_attention.qkv_proj", f"{theirs}.attn.c_attn", transpose=True)
        rules |= _linear(f"{ours}.self_attention.out_proj", f"{theirs}.attn.c_proj", transpose=True)
        rules |= _linear(f"{ours}.self_attention_residual.norm", f"{theirs}.ln_1")
        rules |= _linear(f"{ours}.feedforward.fc_in", f"{theirs}.mlp.c_fc", transpose=True)
        rules |= _linear(f"{ours}.feedforward.fc_out", f"{theirs}.mlp.c_proj", transpose=True)
        rules |= _linear(f"{ours}.feedforward_residual.norm", f"{theirs}.ln_2")
    if config.final_norm:
        rules |= _linear("decoder.final_norm", "ln_f")
    rules["lm_head.weight"] = Rule(("lm_head.weight",), aliases=(f"{token}.weight",),
                                   save=not config.tie_word_embeddings)
    return rules


def _bert_rules(config: ModelConfig) -> dict[str, Rule]:
    rules = {"encoder.embeddings.token.weight": Rule(("embeddings.word_embeddings.weight",)),
             "encoder.embeddings.positions.weight": Rule(("embeddings.position_embeddings.weight",)),
             "encoder.embeddings.token_type.weight": Rule(("embeddings.token_type_embeddings.weight",))}
    rules |= _linear("encoder.embeddings.norm", "embeddings.LayerNorm")
    for i in range(config.n_layers):
        ours, theirs = f"encoder.blocks.{i}", f"encoder.layer.{i}"
        rules |= _joined(f"{ours}.self_attention.qkv_proj",
                         [f"{theirs}.attention.self.{n}" for n in ("query", "key", "value")])
        rules |= _linear(f"{ours}.self_attention.out_proj", f"{theirs}.attention.output.dense")
        rules |= _linear(f"{ours}.self_attention_residual.norm", f"{theirs}.attention.output.LayerNorm")
        rules |= _linear(f"{ours}.feedforward.fc_in", f"{theirs}.intermediate.dense")
        rules |= _linear(f"{ours}.feedforward.fc_out", f"{theirs}.output.dense")
        rules |= _linear(f"{ours}.feedforward_residual.norm", f"{theirs}.output.LayerNorm")
    if config.final_norm:
        rules |= _linear("encoder.final_norm", "encoder.LayerNorm")
    if config.pooler:
        rules |= _linear("pooler.dense", "pooler.dense")
    if config.pretraining_heads:
        rules |= _linear("mlm_head.dense", "cls.predictions.transform.dense")
        rules |= _linear("mlm_head.norm", "cls.predictions.transform.LayerNorm")
        rules["mlm_head.bias"] = Rule(("cls.predictions.bias",), aliases=("cls.predictions.decoder.bias",))
        rules["mlm_head.decoder.weight"] = Rule(("cls.predictions.decoder.weight",),
                                                aliases=("embeddings.word_embeddings.weight",),
                                                save=not config.tie_word_embeddings)
        rules |= _linear("nsp_head", "cls.seq_relationship")
    return rules


def _marian_rules(config: ModelConfig) -> dict[str, Rule]:
    shared = config.share_encoder_decoder_embeddings
    if shared:
        rules = {"encoder.embeddings.token.weight": Rule(("shared.weight",), aliases=("encoder.embed_tokens.weight",)),
                 "decoder.embeddings.token.weight": Rule(("shared.weight",), aliases=("decoder.embed_tokens.weight",),
                                                         save=False)}
    else:
        rules = {"encoder.embeddings.token.weight": Rule(("encoder.embed_tokens.weight",)),
                 "decoder.embeddings.token.weight": Rule(("decoder.embed_tokens.weight",))}
    for side, n_layers in (("encoder", config.n_layers), ("decoder", config.decoder_layers)):
        if config.positions == "learned":
            rules[f"{side}.embeddings.positions.weight"] = Rule((f"{side}.embed_positions.weight",))
        for i in range(n_layers):
            ours, theirs = f"{side}.blocks.{i}", f"{side}.layers.{i}"
            rules |= _joined(f"{ours}.self_attention.qkv_proj", [f"{theirs}.self_attn.{n}_proj" for n in "qkv"])
            rules |= _linear(f"{ours}.self_attention.out_proj", f"{theirs}.self_attn.out_proj")
            rules |= _linear(f"{ours}.self_attention_residual.norm", f"{theirs}.self_attn_layer_norm")
            if side == "decoder":
                rules |= _linear(f"{ours}.cross_attention.q_proj", f"{theirs}.encoder_attn.q_proj")
                rules |= _joined(f"{ours}.cross_attention.kv_proj", [f"{theirs}.encoder_attn.{n}_proj" for n in "kv"])
                rules |= _linear(f"{ours}.cross_attention.out_proj", f"{theirs}.encoder_attn.out_proj")
                rules |= _linear(f"{ours}.cross_attention_residual.norm", f"{theirs}.encoder_attn_layer_norm")
            rules |= _linear(f"{ours}.feedforward.fc_in", f"{theirs}.fc1")
            rules |= _linear(f"{ours}.feedforward.fc_out", f"{theirs}.fc2")
            rules |= _linear(f"{ours}.feedforward_residual.norm", f"{theirs}.final_layer_norm")
        if config.final_norm:
            rules |= _linear(f"{side}.final_norm", f"{side}.layer_norm")
    target = "shared.weight" if shared else "decoder.embed_tokens.weight"
    rules["lm_head.weight"] = Rule(("lm_head.weight",), aliases=(target,), save=not config.tie_word_embeddings)
    if config.final_logits_bias:
        rules["final_logits_bias"] = Rule(("final_logits_bias",))
    return rules


def _native_rules(config: ModelConfig) -> dict[str, Rule]:
    """tformer's own layout (the RNN family, the T-DMCA): every tensor under its state-dict name, a shared or tied
    one written once, under the name of the table it shares. A task model's backbone names come from
    `checkpoint_rules`, as for the Hugging Face layouts."""
    with torch.device("meta"):  # the names only: no memory, no time
        names = list(build_model(config.replace(task=None)).state_dict())
    rules = {name: Rule((name,)) for name in names}
    if config.family == "gpt":
        if config.tie_word_embeddings:
            rules["lm_head.weight"] = Rule(("lm_head.weight",), aliases=("decoder.embeddings.token.weight",),
                                           save=False)
        return rules
    table = "source_embeddings.weight"
    if config.share_encoder_decoder_embeddings:
        rules["target_embeddings.weight"] = Rule(("target_embeddings.weight",), aliases=(table,), save=False)
    else:
        table = "target_embeddings.weight"
    if config.tie_word_embeddings:
        rules["lm_head.weight"] = Rule(("lm_head.weight",), aliases=(table,), save=False)
    return rules


def _task_head_rules(config: ModelConfig) -> dict[str, Rule]:
    """The task head: `classifier` (BertForSequenceClassification / ...MultipleChoice / ...TokenClassification)
    or `qa_outputs` (BertForQuestionAnswering), at the top level of the checkpoint, beside the backbone."""
    head = "qa_outputs" if config.task == "question-answering" else "classifier"
    return _linear(head, head)


TASK_HEAD_PREFIXES = ("classifier.", "qa_outputs.")
# Each model type: the prefix of its backbone tensors, and the names that sit outside that prefix (heads).
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gpt2": ("transformer.", ("lm_head.", *TASK_HEAD_PREFIXES)),
    "openai-gpt": ("transformer.", ("lm_head.", *TASK_HEAD_PREFIXES)),
    "bert": ("bert.", ("cls.", *TASK_HEAD_PREFIXES)),
    "marian": ("model.", ("lm_head.", "final_logits_bias")),
    RNN_MODEL_TYPE: ("", ()),
    TDMCA_MODEL_TYPE: ("", ()),
}


def checkpoint_rules(config: ModelConfig, model_type: str) -> dict[str, Rule]:
    """tformer state-dict name -> where that tensor lives in a `model_type` checkpoint (prefix removed).

    A task model's backbone tensors are `backbone.<name>` on our side and sit where the plain model's do.
    """
    if model_type in ("gpt2", "openai-gpt"):
        if config.has_long_attention:
            raise ValueError(f"attention_pattern={config.attention_pattern!r} has no Hugging Face {model_type} layout: "
                             f"HF GPT-2 has no local/compressed attention; use a {TDMCA_MODEL_TYPE} folder")
        rules = _gpt_rules(config, model_type)
    elif model_type == "bert":
        rules = _bert_rules(config)
    elif model_type == "marian":
        rules = _marian_rules(config)
    elif model_type in (RNN_MODEL_TYPE, TDMCA_MODEL_TYPE):
        rules = _native_rules(config)
    else:
        raise ValueError(f"model_type {model_type!r} is not supported; tformer reads {', '.join(LAYOUTS)}")
    if config.task is None:
        return rules
    return {f"backbone.{name}": rule for name, rule in rules.items()} | _task_head_rules(config)


def _strip_prefix(state: dict[str, Tensor], model_type: str) -> dict[str, Tensor]:
    prefix, _ = LAYOUTS[model_type]
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix(prefix)
        if name.endswith(".gamma"):  # the oldest BERT checkpoints name LayerNorm weights gamma and beta
            name = name.removesuffix(".gamma") + ".weight"
        elif name.endswith(".beta"):
            name = name.removesuffix(".beta") + ".bias"
        out[name] = tensor
    return out


def load_checkpoint_into(model: TransformerModel, checkpoint: dict[str, Tensor], model_type: str) -> None:
    """Copy a Hugging Face state dict into `model`, checking every name and shape."""
    state = _strip_prefix(checkpoint, model_type)
    rules = checkpoint_rules(model.config, model_type)
    expected = model.state_dict()
    used: set[str] = set()
    loaded: dict[str, Tensor] = {}
    for name, target in expected.items():
        if name not in rules:
            raise RuntimeError(f"no checkpoint rule for tformer tensor {name!r} (model_type {model_type})")
        rule = rules[name]
        if len(rule.parts) == 1:
            source = next((n for n in (rule.parts[0], *rule.aliases) if n in state), None)
            if source is None:
                raise ValueError(f"checkpoint has no tensor {rule.parts[0]!r} (needed for {name!r}); "
                                 f"is it a {model_type} checkpoint of this configuration?")
            tensor, used = state[source], used | {source}
            shown = source
        else:
            missing = [n for n in rule.parts if n not in state]
            if missing:
                raise ValueError(f"checkpoint has no tensor {missing[0]!r} (needed for {name!r})")
            tensor, used = torch.cat([state[n] for n in rule.parts], dim=0), used | set(rule.parts)
            shown = " + ".join(rule.parts)
        if rule.transpose:
            tensor = tensor.t()
        if tuple(tensor.shape) != tuple(target.shape):
            stored = tuple(tensor.t().shape) if rule.transpose else tuple(tensor.shape)
            raise ValueError(f"checkpoint tensor {shown!r} has shape {stored} but the model's {name!r} needs "
                             f"{tuple(target.t().shape) if rule.transpose else tuple(target.shape)}; "
                             "the config.json does not describe these weights")
        loaded[name] = tensor
    _check_sinusoids(model.config, state, used)
    model.load_state_dict(loaded, strict=True)
    if "final_logits_bias" in state and not state["final_logits_bias"].any():
        used.add("final_logits_bias")  # save_pretrained writes zeros for transformers' sake
    unused = [n for n in state if n not in used and not n.endswith(IGNORED_SUFFIXES)]
    if unused:
        warnings.warn(f"{len(unused)} checkpoint tensors were not used, e.g. {unused[0]!r} "
                      "(a task head tformer's model does not have)", stacklevel=3)


def load_weights(model: TransformerModel, path: str | PathLike[str]) -> None:
    """Copy the weights of a model folder (as `save_pretrained` writes it) into an existing model, exactly."""
    load_checkpoint_into(model, read_checkpoint(Path(path)), model_type_of(model.config))


def _check_sinusoids(config: ModelConfig, state: dict[str, Tensor], used: set[str]) -> None:
    """Older Marian checkpoints store their sinusoid tables: make sure ours are the same numbers."""
    if config.positions != "sinusoidal":
        return
    ours = sinusoidal_table(config.max_positions, config.d_model, config.sinusoidal_layout)
    for name in ("encoder.embed_positions.weight", "decoder.embed_positions.weight"):
        if name in state:
            used.add(name)
            stored = state[name].float()
            if stored.shape != ours.shape or not torch.allclose(stored, ours, atol=1e-4):
                raise ValueError(f"checkpoint tensor {name!r} is not the {config.sinusoidal_layout!r} sinusoid "
                                 "table this config computes; check sinusoidal_layout and max_positions")


def from_pretrained(path: str | PathLike[str], **overrides: object) -> TransformerModel:
    """Load a Hugging Face (or tformer-saved) model folder: gpt2, openai-gpt, bert or marian, or a task model
    on one (BertForSequenceClassification, ... or a tformer-saved GPT task model), or a tformer-rnnsearch folder.

    `path` is a folder, or a Hugging Face Hub name ("bert-base-cased") found in (or downloaded into) the Hugging
    Face cache. `overrides` replace config fields that do not change the weights, e.g. attention="explicit" or
    dropout=0.0 (model_folder.RUNTIME_FIELDS); one that does (n_layers=7) is refused. A `task`
    the folder was not saved with (task="sequence-classification", num_labels=3) loads the backbone and puts
    a freshly initialised head of that task on it, ready to fine-tune.
    """
    folder = find_model_folder(path)
    config_path = folder / "config.json"
    hf_config = read_config_json(folder)
    model_type = hf_config.get("model_type")
    if model_type is None:
        raise ValueError(f"{config_path} has no \"model_type\"; tformer reads {', '.join(LAYOUTS)} folders "
                         "(restore the config.json from the model's source, or save the model again)")
    if model_type not in LAYOUTS:
        raise ValueError(f"model_type {model_type!r} in {config_path} is not supported; "
                         f"tformer reads {', '.join(LAYOUTS)}")
    checkpoint = read_checkpoint(folder)
    config = model_config_of(hf_config, _strip_prefix(checkpoint, model_type), config_path)
    saved_task = config.task
    if overrides:
        config = apply_overrides(config, overrides, folder)
    if config.task is not None and config.task != saved_task:  # a new head on the saved backbone
        backbone = build_model(config.replace(task=None))
        load_checkpoint_into(backbone, checkpoint, model_type)
        return attach_generation_config(with_task_head(
            backbone, config.task, num_labels=config.num_labels, id2label=config.id2label,
            problem_type=config.problem_type).eval(), folder, hf_config)
    model = build_model(config)
    load_checkpoint_into(model, checkpoint, model_type)
    return attach_generation_config(model.eval(), folder, hf_config)


def model_type_of(config: ModelConfig) -> str:
    """The Hugging Face model type whose layout a config's weights are written in (tformer's own for the RNN)."""
    if config.family == "rnn":
        return RNN_MODEL_TYPE
    if config.has_long_attention:  # local or compressed layers: no Hugging Face class computes them
        return TDMCA_MODEL_TYPE
    if config.family == "gpt":
        return "gpt2" if config.norm == "pre" else "openai-gpt"
    return "bert" if config.family == "bert" else "marian"


def save_pretrained(model: TransformerModel, path: str | PathLike[str],
                    state_dict: dict[str, Tensor] | None = None, tokenizer: Tokenizer | None = None) -> None:
    """Write `model` as a Hugging Face folder: config.json and model.safetensors (tied tensors written once),
    and tokenizer.json when a tokenizer is given.

    `state_dict` (default: the model's own) lets a sharded model pass its gathered full weights.
    Files are written under temporary names and renamed, so an interrupted save leaves the old files intact.
    """
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        raise ValueError(f"tokenizer is a {type(tokenizer).__name__}, but save_pretrained writes a tformer.Tokenizer; "
                         "wrap a transformers tokenizer as tformer.Tokenizer(tok.backend_tokenizer), or save it with "
                         "its own save_pretrained(path)")
    config = model.config
    model_type = model_type_of(config)
    prefix, head_prefixes = LAYOUTS[model_type]
    hf_config, differences = config_to_hf(config, model_type)
    if differences:
        warnings.warn(f"`transformers` will not compute the same outputs from this folder: {'; '.join(differences)} "
                      "(tformer.from_pretrained reads it exactly)", stacklevel=2)
    rules = checkpoint_rules(config, model_type)
    tensors: dict[str, Tensor] = {}
    for name, tensor in (model.state_dict() if state_dict is None else state_dict).items():
        rule = rules[name]
        if not rule.save:
            continue
        tensor = tensor.detach()
        if rule.transpose:
            tensor = tensor.t()
        pieces = tensor.chunk(len(rule.parts), dim=0) if len(rule.parts) > 1 else (tensor,)
        for part, piece in zip(rule.parts, pieces, strict=True):
            full = part if part.startswith(head_prefixes) else prefix + part
            tensors[full] = piece.contiguous().clone()
    if model_type == "marian" and "final_logits_bias" not in tensors:
        tensors["final_logits_bias"] = torch.zeros(1, config.vocab_size)

    folder = prepare_output_folder(path)
    _write_atomically(folder / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    _write_atomically(folder / "config.json",
                      lambda tmp: tmp.write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n"))
    generation_text = generation_config_text(model, hf_config)
    if generation_text is not None:
        _write_atomically(folder / GENERATION_CONFIG, lambda tmp: tmp.write_text(generation_text, encoding="utf-8"))
    if tokenizer is not None:
        _save_tokenizer(tokenizer, folder / "tokenizer.json")


def _save_tokenizer(tokenizer: Tokenizer, target: Path) -> None:
    try:
        tokenizer.save(target)
    except Exception as error:  # noqa: BLE001 - the Rust side raises a bare Exception with the OS error inside
        cause = error if isinstance(error, OSError) else os_error_in(error)
        if cause is None:
            raise
        raise write_error(target, cause) from None


def _write_atomically(target: Path, write) -> None:  # noqa: ANN001 - a callable taking the temporary path
    """`write(tmp)`, then give the file the umask's mode (safetensors creates 0600 files) and rename it over
    `target`; a failure removes the temporary file and is one line naming `target`."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        tmp.replace(target)
    except (OSError, SafetensorError) as error:
        tmp.unlink(missing_ok=True)
        cause = error if isinstance(error, OSError) else os_error_in(error)
        if cause is None:
            raise
        raise write_error(target, cause) from None
