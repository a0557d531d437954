"""Every way a model folder can be broken is one ValueError/OSError naming the file and the fix (issue 13)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import tformer
from tformer.config import ModelConfig
from tformer.interop.huggingface import load_weights


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    tformer.save_pretrained(tformer.build_model(ModelConfig.preset("gpt2-tiny")), tmp_path / "model")
    return tmp_path / "model"


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, ValueError | OSError)
    return text


@pytest.mark.parametrize("keep", [0, 7, 100])  # empty, inside the header length, inside the header
def test_truncated_safetensors_names_the_file(folder: Path, keep: int) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    with pytest.raises(ValueError) as error:
        tformer.from_pretrained(folder)
    assert str(weights) in _one_line(error) and "download or save the model again" in str(error.value)


def test_safetensors_cut_inside_the_tensor_data(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    with pytest.raises(ValueError, match="truncated or corrupt") as error:
        tformer.from_pretrained(folder)
    assert str(weights) in _one_line(error)


def test_pickled_pytorch_bin_says_safetensors_is_needed_and_how_to_convert(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({"state_dict": state, "epoch": 3, "fn": math.sqrt}, folder / "pytorch_model.bin")  # a training pickle
    with pytest.raises(ValueError) as error:
        tformer.from_pretrained(folder)
    message = _one_line(error)
    assert "pytorch_model.bin holds pickled Python objects" in message and "safetensors" in message
    assert "s.save_file(" in message and str(folder / "model.safetensors") in message


def test_garbage_pytorch_bin_is_one_line(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ValueError, match="pytorch_model.bin is not a readable PyTorch file") as error:
        tformer.from_pretrained(folder)
    _one_line(error)


@pytest.mark.parametrize("text, expected", [
    ("[1, 2, 3]", "holds a JSON array, but a config.json is an object"),
    ('"gpt2"', "holds a JSON string"),
    ("not json at all", r"is not valid JSON \(Expecting value at line 1 column 1\)"),
    ('{"model_type": "gpt2",', "is not valid JSON"),
    ("\xff\xfe{}", "is not UTF-8 text"),
])
def test_config_json_that_is_not_a_mapping_names_the_file(folder: Path, text: str, expected: str) -> None:
    (folder / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match=expected) as error:
        tformer.from_pretrained(folder)
    assert str(folder / "config.json") in _one_line(error)


@pytest.mark.parametrize("value, kind", [(None, "null"), ([1], "array"), (3, "number")])
def test_tformer_config_that_is_not_an_object(folder: Path, value: object, kind: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["tformer_config"] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f'"tformer_config" is a JSON {kind}') as error:
        tformer.from_pretrained(folder)
    assert "delete the key" in _one_line(error)


def test_tformer_config_with_a_wrong_value_names_the_file(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["tformer_config"]["dropout"] = "lots"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: tformer_config: ") as error:
        tformer.from_pretrained(folder)
    _one_line(error)


def test_hf_config_missing_a_field_names_it(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    del config["tformer_config"], config["n_embd"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json has no field 'n_embd', which a gpt2 config.json needs"):
        tformer.from_pretrained(folder)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_weights_are_found_at_load_naming_the_tensor(folder: Path, value: float) -> None:
    state = load_file(folder / "model.safetensors")
    state["transformer.h.1.mlp.c_fc.weight"][3, 5] = value
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"'transformer.h.1.mlp.c_fc.weight'") as error:
        tformer.from_pretrained(folder)
    assert ("NaN" if math.isnan(value) else "inf") in _one_line(error)
    with pytest.raises(ValueError, match="load an earlier checkpoint"):  # resume reads weights the same way
        load_weights(tformer.build_model(ModelConfig.preset("gpt2-tiny")), folder)


def _shard(folder: Path, name: str) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: name for n in load_file(folder / "model.safetensors")}}))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors",
                                   "C:\\\\weights.safetensors"])
def test_shard_paths_that_leave_the_folder_are_refused(folder: Path, shard: str) -> None:
    outside = folder.parent / "outside.safetensors"
    shutil.copy(folder / "model.safetensors", outside)  # would load, if the path were followed
    _shard(folder, shard)
    with pytest.raises(ValueError, match="lies outside the model folder") as error:
        tformer.from_pretrained(folder)
    assert "model.safetensors.index.json" in _one_line(error)


def test_missing_shard_and_broken_index_are_named(folder: Path) -> None:
    _shard(folder, "model-00001-of-00002.safetensors")
    with pytest.raises(FileNotFoundError, match=r"model-00001-of-00002.safetensors is missing, but "
                                                r"model.safetensors.index.json names it"):
        tformer.from_pretrained(folder)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": [1, 2]}')
    with pytest.raises(ValueError, match=r"index.json has no \"weight_map\" object"):
        tformer.from_pretrained(folder)


def test_folder_where_a_file_is_expected(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match="model.safetensors is a folder, but it should be the weights file"):
        tformer.from_pretrained(folder)
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()
    with pytest.raises(IsADirectoryError, match="config.json' is a folder, but it should be the model's config.json"):
        tformer.from_pretrained(folder)


def test_file_where_the_folder_is_expected(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match=r"config.json' is a file, not a model folder; it is a file of the "
                                                 r"model folder '.*model': pass that folder"):
        tformer.from_pretrained(folder / "config.json")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotADirectoryError, match=r"notes.txt' is a file, not a model folder; pass the folder"):
        tformer.from_pretrained(tmp_path / "notes.txt")


def test_training_run_folder_points_at_final_and_checkpoints(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: x\n")
    for step in (10, 20):
        shutil.copytree(folder, run / "checkpoints" / f"step-{step:08d}")
    with pytest.raises(FileNotFoundError) as error:
        tformer.from_pretrained(run)
    assert _one_line(error) == (f"{run} is a training run folder, not a model folder: pass a checkpoint such as "
                                f"{run}/checkpoints/step-00000020")
    shutil.copytree(folder, run / "final")
    with pytest.raises(FileNotFoundError, match=rf"pass {run}/final \(the model at the end of the run\) or a "
                                                r"checkpoint such as .*step-00000020"):
        tformer.from_pretrained(run)
    assert tformer.from_pretrained(run / "final").config.n_layers == 2


def test_run_folder_without_a_model_yet(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("name: x\n")
    with pytest.raises(FileNotFoundError, match="training run folder that holds no model yet"):
        tformer.from_pretrained(tmp_path)


def test_override_that_changes_the_weights_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError) as error:
        tformer.from_pretrained(folder, n_layers=7)
    message = _one_line(error)
    assert message.startswith("from_pretrained override n_layers=7 changes the weights")
    assert "saved with n_layers=2" in message and "dropout" in message and "attention" in message
    with pytest.raises(ValueError, match="override d_model=64 changes the weights"):
        tformer.from_pretrained(folder, d_model=64)
    same = tformer.from_pretrained(folder, n_layers=2, dropout=0.0, attention="explicit")  # allowed: weights as saved
    assert same.config.dropout == 0.0 and same.config.attention == "explicit"


def test_override_of_a_saved_heads_size_is_refused(folder: Path, tmp_path: Path) -> None:
    backbone = tformer.from_pretrained(folder)
    tformer.save_pretrained(tformer.with_task_head(backbone, "sequence-classification", num_labels=2), tmp_path / "cls")
    with pytest.raises(ValueError, match=r"num_labels=3 does not fit the saved sequence-classification head"):
        tformer.from_pretrained(tmp_path / "cls", num_labels=3)


def test_unreadable_config_is_a_permission_error(folder: Path, monkeypatch) -> None:
    config = folder / "config.json"
    read_text = Path.read_text

    def unreadable(self: Path, *args: object, **kwargs: object) -> str:
        if self == config:  # what chmod 0 gives a user who is not root (root reads any file)
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", unreadable)
    with pytest.raises(PermissionError, match=r"Permission denied: '.*config.json'"):
        tformer.from_pretrained(folder)
