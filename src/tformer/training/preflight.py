"""Checks of a recipe's own files (a tokenizer.json, a model folder, the data files) before any data is prepared.

Preparing data can take minutes (reading every book, training a tokenizer, encoding); a misspelled tokenizer path
or a model folder of the wrong family should stop the run before that, in one line. `Objective.prepare_data` calls
`check_before_data` first; nothing here writes, and only small files are read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tformer.interop.huggingface import INDEX_FILES, LAYOUTS, WEIGHT_FILES
from tformer.tokenization import Tokenizer
from tformer.training.objectives import objective_class
from tformer.training.recipe import Recipe, check_recipe

FAMILY_OF_MODEL_TYPE = {"gpt2": "gpt", "openai-gpt": "gpt", "bert": "bert", "marian": "encoder-decoder",
                        "tformer-rnnsearch": "rnn", "tformer-tdmca": "gpt"}


def check_before_data(recipe: Recipe) -> None:
    """Refuse a recipe whose values or named files cannot work, before any data file is read or written."""
    check_recipe(recipe)
    t = recipe.train
    on_cuda = t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available())
    if t.precision == "fp16" and not on_cuda:
        raise ValueError(f"train.precision=fp16 needs a CUDA device; on CPU use train.precision=bf16 (train.device="
                         f"{t.device} has no CUDA here)")
    if recipe.model.from_pretrained:
        check_model_folder(recipe)
    if recipe.data.tokenizer.endswith(".json"):
        check_tokenizer_file(recipe)
    for option, path in data_files(recipe):
        if not path.is_file():
            kind = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"{option}: {path} {kind}; set data.root (or TFORMER_DATA) to the folder that "
                                    f"holds it, or fix the path")


def data_files(recipe: Recipe) -> list[tuple[str, Path]]:
    """(option, path) of every data file the recipe names, globs left out (`datasets` expands and checks them)."""
    return objective_class(recipe.train.objective).data_files(recipe)


def check_model_folder(recipe: Recipe) -> None:
    """model.from_pretrained: a folder with config.json and weights, of the family train.objective trains."""
    where = f"model.from_pretrained={recipe.model.from_pretrained}"
    folder = recipe.data_path(recipe.model.from_pretrained)
    if not folder.is_dir():
        kind = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"{where}: {folder} {kind}; give a model folder (config.json + model.safetensors)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        hint = f"; did you mean {folder / 'final'} (a run folder keeps its model there)?" \
            if (folder / "final" / "config.json").is_file() else "; a model folder holds config.json and weights"
        raise FileNotFoundError(f"{where}: {config_path} is missing{hint}")
    if not any((folder / name).is_file() for name in (*WEIGHT_FILES, *INDEX_FILES)):
        raise FileNotFoundError(f"{where}: no weights in {folder}; expected one of "
                                f"{', '.join((*WEIGHT_FILES, *INDEX_FILES))}")
    family = _family_of(config_path)
    objective = objective_class(recipe.train.objective)
    if objective.families and family not in objective.families:
        wanted = objective.family_names()
        raise ValueError(f"train.objective={recipe.train.objective} trains {wanted} model but {where} holds a "
                         f"{family} model; pick {wanted} model folder or another train.objective")


def _family_of(config_path: Path) -> str:
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path} is not JSON ({error}); restore it from the model's source") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{config_path} holds a {type(hf).__name__}, not a mapping of config fields")
    ours = hf.get("tformer_config")
    if isinstance(ours, dict) and isinstance(ours.get("family"), str):
        return ours["family"]
    model_type = hf.get("model_type")
    if model_type not in LAYOUTS:
        raise ValueError(f"model_type {model_type!r} in {config_path} is not supported; tformer reads "
                         f"{', '.join(LAYOUTS)}")
    return FAMILY_OF_MODEL_TYPE[model_type]


def check_tokenizer_file(recipe: Recipe) -> None:
    """data.tokenizer=PATH.json: a readable tokenizer.json with the special tokens the objective builds with."""
    where, path = f"data.tokenizer={recipe.data.tokenizer}", recipe.data_path(recipe.data.tokenizer)
    if not path.is_file():
        kind = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{where}: {path} {kind}; give a tokenizer.json, or a kind: char, word, bpe, "
                                "wordpiece")
    tokenizer = Tokenizer.from_file(path)
    objective = recipe.train.objective
    missing = objective_class(objective).missing_tokens(tokenizer)
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)} token, which train.objective={objective} needs; "
                         "use a tokenizer that has them, or let the run train one (data.tokenizer=bpe, wordpiece...)")
