"""A folder's generation settings are tformer.generate's defaults, and save_pretrained writes them back, so
Hugging Face -> tformer -> Hugging Face gives the same `transformers.generate` output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tformer
from tests.conftest import randomize
from tests.dev_dependency import import_dev
from tests.generation.conftest import _inputs, _marian

transformers = import_dev("transformers")

SETTINGS = dict(num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.4, max_new_tokens=9, length_penalty=0.7)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Marian saved by transformers; its generation_config.json sets forced_eos_token_id=0 and SETTINGS."""
    model = randomize(_marian().eval(), seed=2, std=0.5)
    model.generation_config.update(**SETTINGS)
    folder = tmp_path_factory.mktemp("hf-marian")
    model.save_pretrained(folder)
    assert json.loads((folder / "generation_config.json").read_text())["forced_eos_token_id"] == 0
    return folder


def _theirs(folder: Path, **kwargs: object) -> torch.Tensor:
    ids, mask = _inputs("marian")
    with torch.no_grad():
        return transformers.MarianMTModel.from_pretrained(folder).eval().generate(input_ids=ids,
                                                                                 attention_mask=mask, **kwargs)


def test_folder_settings_are_the_defaults(hf_folder: Path) -> None:
    ids, mask = _inputs("marian")
    ours = tformer.generate(tformer.from_pretrained(hf_folder), ids, mask)  # no argument: the folder's settings
    assert torch.equal(ours, _theirs(hf_folder))
    assert ours.size(1) == 1 + SETTINGS["max_new_tokens"] and (ours[:, -1] == 0).all()  # forced_eos_token_id


def test_explicit_arguments_win(hf_folder: Path) -> None:
    ids, mask = _inputs("marian")
    args = dict(num_beams=1, max_new_tokens=5, repetition_penalty=1.0, no_repeat_ngram_size=0)
    ours = tformer.generate(tformer.from_pretrained(hf_folder), ids, mask, **args)
    assert torch.equal(ours, _theirs(hf_folder, **args))
    assert ours.size(1) == 6


def test_round_trip_keeps_transformers_output(hf_folder: Path, tmp_path: Path) -> None:
    tformer.save_pretrained(tformer.from_pretrained(hf_folder), tmp_path)
    written = json.loads((tmp_path / "generation_config.json").read_text())
    assert written["forced_eos_token_id"] == 0 and written["num_beams"] == 3
    assert torch.equal(_theirs(tmp_path), _theirs(hf_folder))


def test_legacy_config_json_fields_are_read(hf_folder: Path, tmp_path: Path) -> None:
    """Without generation_config.json, transformers reads config.json's generation fields; so does tformer."""
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((hf_folder / name).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config |= dict(num_beams=2, max_length=7, forced_eos_token_id=0, bad_words_ids=[[59]], no_repeat_ngram_size=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    ids, mask = _inputs("marian")
    ours = tformer.generate(tformer.from_pretrained(tmp_path), ids, mask)
    assert torch.equal(ours, _theirs(tmp_path))
    assert ours.size(1) == 7 and 59 not in ours.tolist()


def test_a_tformer_model_saves_its_special_ids(tmp_path: Path) -> None:
    """A model built here gets a generation_config.json that transformers reads as it reads config.json."""
    model = randomize(_marian().eval(), seed=2, std=0.5)
    model.save_pretrained(tmp_path / "hf")
    ours = tformer.from_pretrained(tmp_path / "hf")
    ours.generation_config = {}  # as if built by tformer: only the config's ids are written
    tformer.save_pretrained(ours, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
    assert written == {"decoder_start_token_id": 1, "eos_token_id": 0, "pad_token_id": 1}


@pytest.mark.parametrize("content, named", [("{nope", "is not valid JSON"), ("[1, 2]", "holds a list")])
def test_a_broken_generation_config_is_one_line(hf_folder: Path, tmp_path: Path, content: str, named: str) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((hf_folder / name).read_bytes())
    (tmp_path / "generation_config.json").write_text(content)
    with pytest.raises(ValueError, match=named) as error:
        tformer.from_pretrained(tmp_path)
    assert "generation_config.json" in str(error.value) and "\n" not in str(error.value)


def test_settings_tformer_does_not_apply_are_named_and_kept(hf_folder: Path, tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((hf_folder / name).read_bytes())
    settings = json.loads((hf_folder / "generation_config.json").read_text()) | {"suppress_tokens": [3]}
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    with pytest.warns(UserWarning, match="sets suppress_tokens, which tformer.generate does not apply"):
        model = tformer.from_pretrained(tmp_path)
    tformer.save_pretrained(model, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "generation_config.json").read_text())["suppress_tokens"] == [3]
