"""A model folder's generation settings: read from generation_config.json (or config.json's legacy fields), written
back by save_pretrained, so a Hugging Face folder keeps its defaults through tformer.

`transformers` reads generation_config.json when the folder has one, else the generation fields of config.json
(max_length, num_beams, forced_eos_token_id, bad_words_ids...). tformer does the same and keeps the result as
`model.generation_config`, a dict that `tformer.generate` takes its defaults from. save_pretrained writes it
together with the model's special token ids, so transformers reads the same settings back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

FILE = "generation_config.json"
# Settings tformer.generate applies (transformers' names).
APPLIED = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "num_return_sequences",
           "do_sample", "temperature", "top_k", "top_p", "length_penalty", "early_stopping", "use_cache",
           "repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id",
           "forced_eos_token_id", "stop_strings", "bos_token_id", "eos_token_id", "pad_token_id",
           "decoder_start_token_id")
# Settings transformers applies that tformer.generate does not: kept and written back, and named when set.
NOT_APPLIED = ("begin_suppress_tokens", "suppress_tokens", "diversity_penalty", "num_beam_groups",
               "encoder_no_repeat_ngram_size", "encoder_repetition_penalty", "epsilon_cutoff", "eta_cutoff",
               "exponential_decay_length_penalty", "typical_p", "min_p", "top_h", "sequence_bias",
               "guidance_scale", "renormalize_logits", "remove_invalid_values", "max_time")
# tformer's own: the separator a decoder-only seq2seq (T-D) model reads between source and target.
SOURCE_SEPARATOR = "tformer_source_separator"
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
# Neutral values: a field at this value changes nothing, so it is not reported as unapplied.
NEUTRAL: dict[str, Any] = {"encoder_repetition_penalty": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0,
                           "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "guidance_scale": 1.0,
                           "renormalize_logits": False, "remove_invalid_values": False,
                           "encoder_no_repeat_ngram_size": 0}


def read_generation_config(folder: Path, hf_config: dict[str, Any]) -> dict[str, Any]:
    """The folder's generation settings: generation_config.json if it exists, else config.json's generation fields."""
    path = folder / FILE
    if path.exists():
        if not path.is_file():
            raise IsADirectoryError(f"{str(path)!r} is a directory, not a file; remove it or put the generation "
                                    "settings (JSON) there")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{str(path)!r} is not valid JSON ({error}); fix it or delete it to use config.json's "
                             "settings") from None
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} holds a {type(data).__name__}, not a mapping of generation settings; "
                             "fix it or delete it")
    else:
        data = hf_config
    settings = {key: data[key] for key in (*APPLIED, *NOT_APPLIED, SOURCE_SEPARATOR)
                if data.get(key) is not None}
    unapplied = [key for key in NOT_APPLIED if key in settings and settings[key] != NEUTRAL.get(key)]
    if unapplied:
        warnings.warn(f"{path if path.exists() else folder / 'config.json'} sets {', '.join(unapplied)}, which "
                      "tformer.generate does not apply: its outputs can differ from transformers'", stacklevel=3)
    return settings


def attach_generation_config(model: nn.Module, folder: Path, hf_config: dict[str, Any]) -> nn.Module:
    """`model` with `model.generation_config` read from `folder` (the hook from_pretrained calls)."""
    model.generation_config = read_generation_config(folder, hf_config)
    return model


def generation_config_text(model: nn.Module, hf_config: dict[str, Any]) -> str | None:
    """The generation_config.json of a model that generates (its settings over config.json's special ids), or None."""
    if not callable(getattr(model, "new_cache", None)):
        return None
    settings = {key: hf_config[key] for key in SPECIAL_IDS if hf_config.get(key) is not None}
    own = getattr(model, "generation_config", None)
    settings |= own if isinstance(own, dict) else {}
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def mark_decoder_seq2seq(model: nn.Module, separator: str = "[SEP]") -> None:
    """Say in the model's generation settings that it reads `source separator target` (T-D): translate uses it."""
    own = getattr(model, "generation_config", None)
    model.generation_config = {**(own if isinstance(own, dict) else {}), SOURCE_SEPARATOR: separator}


def source_separator(model: nn.Module) -> str | None:
    """The separator token of a decoder-only seq2seq (T-D) model, or None for any other model."""
    own = getattr(model, "generation_config", None)
    return own.get(SOURCE_SEPARATOR) if isinstance(own, dict) else None
