"""Which value each generation setting takes: the argument, else the model folder's generation config, else ours.

A model loaded from a folder carries `model.generation_config` (a dict read from generation_config.json, or from
the legacy generation fields of config.json, by `tformer.interop.generation_config`). `generate` takes every
setting it is not given from there, as `transformers` takes them from `model.generation_config`; explicit
arguments win. Arguments given that the chosen decoding does not use get a one-line warning, as in transformers.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

# tformer's own default for each setting that a folder's generation config may set (transformers' names).
BUILTIN_DEFAULTS: dict[str, Any] = {
    "num_beams": 1, "num_return_sequences": 1, "do_sample": False, "temperature": 1.0, "top_k": None,
    "top_p": None, "length_penalty": 1.0, "early_stopping": False, "use_cache": True,
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "min_length": 0,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "bad_words_ids": None, "stop_strings": None,
}


def folder_settings(model: nn.Module) -> dict[str, Any]:
    """The model's generation config (empty for a model built in this process)."""
    settings = getattr(model, "generation_config", None)
    return dict(settings) if isinstance(settings, dict) else {}


def resolve(explicit: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Each setting of BUILTIN_DEFAULTS: explicit (not None) > the folder's generation config > the built-in one."""
    folder = folder_settings(model)
    resolved = {}
    for name, default in BUILTIN_DEFAULTS.items():
        value = explicit.get(name)
        if value is None:
            value = folder.get(name)
        resolved[name] = default if value is None else value
    return resolved


def resolve_max_new_tokens(max_new_tokens: int | None, model: nn.Module, decoder_prompt_len: int) -> int:
    """max_new_tokens, else the folder's max_new_tokens, else its max_length (which counts the decoder's prompt)."""
    if max_new_tokens is not None:
        return max_new_tokens
    folder = folder_settings(model)
    if folder.get("max_new_tokens") is not None:
        return folder["max_new_tokens"]
    max_length = folder.get("max_length")
    if max_length is None:
        raise ValueError("generate needs max_new_tokens (the model's generation config sets neither "
                         "max_new_tokens nor max_length): pass max_new_tokens=N")
    if not isinstance(max_length, int) or max_length <= decoder_prompt_len:
        raise ValueError(f"the model's generation config sets max_length={max_length!r}, which leaves no room after "
                         f"the {decoder_prompt_len} tokens the decoder starts from: pass max_new_tokens=N")
    return max_length - decoder_prompt_len


def special_token(name: str, explicit: Any, model: nn.Module) -> Any:
    """eos/pad/decoder-start ids: explicit > the folder's generation config > the model's config."""
    if explicit is not None:
        return explicit
    folder = folder_settings(model)
    return folder[name] if folder.get(name) is not None else getattr(model.config, name, None)


def warn_unused(explicit: dict[str, Any], sampling: bool, num_beams: int) -> None:
    """A one-line warning for each explicit argument the chosen decoding ignores, as transformers warns: values
    other than the neutral ones (temperature 1.0, top_k None or 0, top_p None or 1.0, length_penalty 1.0)."""
    neutral = {"temperature": (None, 1.0), "top_k": (None, 0), "top_p": (None, 1.0), "seed": (None,)}
    if not sampling and not (explicit.get("do_sample") and explicit.get("temperature") == 0):
        unused = [f"{name}={explicit[name]!r}" for name, off in neutral.items() if explicit.get(name) not in off]
        if unused:
            verb = "is" if len(unused) == 1 else "are"
            warnings.warn(f"{', '.join(unused)} {verb} used by sampling only, which is off (do_sample=False): "
                          "ignored; pass do_sample=True (--do-sample) to sample", UserWarning, stacklevel=4)
    if num_beams == 1 and explicit.get("length_penalty") not in (None, 1.0):
        warnings.warn(f"length_penalty={explicit['length_penalty']!r} only applies to beam search, which is off "
                      "(num_beams=1): ignored; pass num_beams > 1 (--num-beams N) to use it", UserWarning,
                      stacklevel=4)
