"""Reading the weights of a model folder: model.safetensors, pytorch_model.bin, or the shards an index names.

Each way a weights file can be wrong (empty, truncated, a pickle of Python objects, shards outside the folder,
NaN or inf values) is one error that names the file and what to do, raised here where it is found.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# A bias of -inf legitimately forbids a token (Marian's final_logits_bias); NaN is never allowed.
MAY_HOLD_INF = ("final_logits_bias",)


def read_checkpoint(folder: Path) -> dict[str, Tensor]:
    """All tensors of a model folder: one weights file, or the shards its index names."""
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.exists():
            state: dict[str, Tensor] = {}
            for shard in shard_files(index):
                state |= read_weights(shard)
            return state
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, but it should be the weights file; remove it or put the "
                                    f"model's {name} file there")
        if path.is_file():
            return read_weights(path)
    raise FileNotFoundError(f"no weights in {folder}: expected one of {', '.join(WEIGHT_FILES + INDEX_FILES)}")


def shard_files(index: Path) -> list[Path]:
    """The shard files an index's weight_map names, each checked to lie inside the model folder and to exist."""
    if index.is_dir():
        raise IsADirectoryError(f"{index} is a folder, but it should be the shard index (a JSON file); remove it")
    contents = _load_json(index)
    weight_map = contents.get("weight_map") if isinstance(contents, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index} has no \"weight_map\" object of tensor name -> shard file; restore the index "
                         "from the model's source, or save the model again")
    shards = []
    for name in sorted(set(weight_map.values())):
        if _leaves_folder(name):
            raise ValueError(f"{index} names the shard {name!r}, which lies outside the model folder; an index may "
                             "name only files inside its folder (such as model-00001-of-00002.safetensors)")
        shard = index.parent / name
        if not shard.is_file():
            raise FileNotFoundError(f"{shard} is missing{' (it is a folder)' if shard.is_dir() else ''}, but "
                                    f"{index.name} names it; download or copy the whole model folder again")
        shards.append(shard)
    return shards


def _leaves_folder(name: str) -> bool:
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or pure.anchor or ".." in pure.parts:
            return True
    return not name.strip()


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" (line {error.lineno} column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not valid JSON{where}; restore it from the model's source, or save the model "
                         "again") from None


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of one .safetensors or pytorch .bin file, checked to be a state dict of finite numbers."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), an interrupted download or copy; download or save the model "
                         "again")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle_file(path)
    check_finite(state, path)
    return state


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file ({_first_line(error)}): it is truncated or "
                         "corrupt, e.g. an interrupted download or copy; download or save the model again") from None


def _read_pickle_file(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" not in str(error).lower():
            raise ValueError(f"{path} is not a readable PyTorch file ({_first_line(error)}): it is truncated or "
                             "corrupt; download or save the model again") from None
        raise ValueError(
            f"{path} holds pickled Python objects, which tformer does not load (unpickling can run any code): it "
            "needs the weights as safetensors; if you trust the file, convert it once with python -c \"import torch, "
            "safetensors.torch as s; s.save_file({k: v.contiguous().clone() for k, v in torch.load('" + str(path)
            + "', weights_only=False).items()}, '" + str(path.with_name("model.safetensors")) + "')\" (for a "
            "pickled whole model or training state, save its state_dict() of tensors that way)") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PyTorch file ({_first_line(error)}): it is truncated or corrupt; "
                         "download or save the model again") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensor name -> tensor; save the "
                         "model's state_dict() (or use model.safetensors)")
    return state


def check_finite(state: dict[str, Tensor], path: Path) -> None:
    """Refuse weights with NaN or inf, naming the first such tensor: they would only fail later, while sampling."""
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        bad = torch.isnan(tensor) if name.endswith(MAY_HOLD_INF) else ~torch.isfinite(tensor)
        count = int(bad.sum())
        if count:
            kind = "NaN" if torch.isnan(tensor).any() else "inf"
            raise ValueError(f"{path} holds {count} {kind} value(s) in tensor {name!r} (of {tensor.numel()}): the "
                             "weights are broken, e.g. saved from a run that diverged; load an earlier checkpoint")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:160] if text else type(error).__name__
