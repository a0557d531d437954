"""A model folder on disk: finding it (a path, or a Hub name), reading its config.json, the overrides it allows,
and preparing a folder that `save_pretrained` may write into.

Every way a folder can be wrong is one error naming the path and the fix, raised where it is found.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from dataclasses import fields
from os import PathLike
from pathlib import Path
from typing import Any

from torch import Tensor

from tformer.config import ModelConfig
from tformer.hub import resolve_model_path
from tformer.interop.hf_config import config_from_hf

# Files of a model folder: a user who names one of them means the folder around it.
FOLDER_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "generation_config.json",
                "model.safetensors.index.json")
# Config fields a loaded model may change: they leave every weight as saved (dropout, the attention code path,
# special-token ids, a new task head on the backbone).
RUNTIME_FIELDS = ("attention", "dropout", "attention_dropout", "activation_dropout", "classifier_dropout", "init_std",
                  "lm_weight", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
                  "extract_token_id", "task", "num_labels", "id2label", "problem_type")


def find_model_folder(path: str | PathLike[str]) -> Path:
    """The model folder `path` names (a Hub name resolves to its cached snapshot), checked to hold config.json."""
    folder = resolve_model_path(path)
    if not folder.exists():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist; pass a folder with config.json")
    if not folder.is_dir():
        hint = (f"; it is a file of the model folder {str(folder.parent)!r}: pass that folder" if folder.name in
                FOLDER_FILES else "; pass the folder that holds config.json and the weights")
        raise NotADirectoryError(f"{str(folder)!r} is a file, not a model folder{hint}")
    config = folder / "config.json"
    if config.is_dir():
        raise IsADirectoryError(f"{str(config)!r} is a folder, but it should be the model's config.json file; "
                                "remove it or put the config.json there")
    if not config.is_file():
        raise FileNotFoundError(_run_folder_message(folder) or
                                f"{str(config)!r} is missing; a model folder needs config.json and weights")
    return folder


def _run_folder_message(folder: Path) -> str | None:
    """For a training run folder (final/, checkpoints/, recipe.yaml): which model folders it holds."""
    checkpoints = sorted(p for p in (folder / "checkpoints").glob("step-*") if re.fullmatch(r"step-\d+", p.name))
    final = folder / "final"
    if not (final.is_dir() or checkpoints or (folder / "recipe.yaml").is_file()):
        return None
    choices = [f"{final} (the model at the end of the run)"] if final.is_dir() else []
    if checkpoints:
        choices.append(f"a checkpoint such as {checkpoints[-1]}")
    if not choices:
        return (f"{folder} is a training run folder that holds no model yet (no final/ and no checkpoints/step-*); "
                "pass a model folder, or continue the run with `tformer train --resume`")
    return f"{folder} is a training run folder, not a model folder: pass {' or '.join(choices)}"


def read_config_json(folder: Path) -> dict[str, Any]:
    """The config.json of a model folder as a mapping that names a model_type."""
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                         "restore it from the model's source, or save the model again") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; restore it from the model's source, or save the model "
                         "again") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{path} holds a JSON {_json_kind(hf)}, but a config.json is an object of config fields "
                         "({\"model_type\": ...}); restore it from the model's source, or save the model again")
    return hf


def model_config_of(hf: dict[str, Any], state: dict[str, Tensor], path: Path) -> ModelConfig:
    """The ModelConfig a config.json describes: its "tformer_config" when saved by tformer, else the HF fields."""
    if "tformer_config" in hf:
        saved = hf["tformer_config"]
        if not isinstance(saved, dict):
            raise ValueError(f"{path}: \"tformer_config\" is a JSON {_json_kind(saved)}, not the object of ModelConfig "
                             "fields save_pretrained writes; delete the key to read the Hugging Face fields, or save "
                             "the model again")
        try:
            return ModelConfig.from_dict(saved)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: tformer_config: {error}; fix that field or save the model again") from None
    try:
        return config_from_hf(hf, state)
    except KeyError as error:
        raise ValueError(f"{path} has no field {error.args[0]!r}, which a {hf.get('model_type')} config.json needs; "
                         "restore it from the model's source, or save the model again") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None


def _json_kind(value: object) -> str:
    return {type(None): "null", list: "array", str: "string", bool: "boolean", dict: "object"}.get(
        type(value), "number")


def apply_overrides(config: ModelConfig, overrides: dict[str, Any], folder: Path) -> ModelConfig:
    """`config` with `overrides`, which may change only fields that leave the saved weights as they are."""
    known = {f.name for f in fields(ModelConfig)}
    for name, value in overrides.items():
        if name in known and name not in RUNTIME_FIELDS and getattr(config, name) != value:
            raise ValueError(f"from_pretrained override {name}={value!r} changes the weights {folder} holds (they "
                             f"were saved with {name}={getattr(config, name)!r}); overrides may change only "
                             f"{', '.join(RUNTIME_FIELDS)}; for another architecture build a new model "
                             "(tformer.build_model) and train it")
    new = config.replace(**overrides)
    if config.task is not None and new.task == config.task and new.num_labels != config.num_labels:
        raise ValueError(f"num_labels={new.num_labels} does not fit the saved {config.task} head of {folder} "
                         f"(num_labels={config.num_labels}); load the backbone with task=None and put a new head "
                         "on it with tformer.with_task_head")
    return new


def prepare_output_folder(path: str | PathLike[str]) -> Path:
    """Create the folder a model is saved into, checking first that it is not a file and can be written."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"cannot save the model to {str(folder)!r}: it is a file, and a model is saved as a "
                              "folder (config.json, model.safetensors); pass a folder path, or move the file away")
    blocking = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"cannot save the model to {str(folder)!r}: {str(blocking)!r} is a file, not a "
                                 "folder; pass a folder path that is not under a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".tformer-write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise write_error(folder, error) from None
    return folder


def write_error(target: Path, error: OSError) -> OSError:
    """An OSError met while writing `target`, as one line naming the path and the fix."""
    code = error.errno
    if code in (errno.EACCES, errno.EPERM):
        return _with_errno(PermissionError(f"cannot write {str(target)!r}: permission denied; save to a folder you "
                                           "can write to, or change its permissions"), code)
    if code == errno.EROFS:
        return _with_errno(PermissionError(f"cannot write {str(target)!r}: the file system is read-only; save to a "
                                           "writable folder"), code)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _with_errno(OSError(f"cannot write {str(target)!r}: no space left on the device; free some space and "
                                   "save again (the files already there are kept)"), code)
    return _with_errno(OSError(f"cannot write {str(target)!r}: {error.strerror or error}"), code)


def _with_errno(error: OSError, code: int | None) -> OSError:
    error.errno = code  # kept for callers that branch on it; str(error) stays the one-line message
    return error


def os_error_in(error: Exception) -> OSError | None:
    """The operating-system error inside a safetensors write failure ("... (os error 28) ..."), if any."""
    found = re.search(r"os error (\d+)", str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


def file_mode() -> int:
    """The mode a newly created file gets under this process's umask (0644 under the usual 022)."""
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask
