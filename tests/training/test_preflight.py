"""A recipe's own files (tokenizer.json, model folder, data files) are checked before any data is read or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tformer import Tokenizer
from tformer.training import datasets
from tformer.training.objectives import build_data


@pytest.fixture
def no_data_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading or preparing data fails the test: the check must come first."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("data was read or prepared before the recipe was checked")

    for name in ("prepare", "read_text", "read_lines", "number_pairs"):
        monkeypatch.setattr(datasets, name, refuse)


def _model_folder(path: Path, model_type: str) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": model_type}))
    (path / "model.safetensors").write_bytes(b"")
    return path


@pytest.mark.usefixtures("no_data_work")
@pytest.mark.parametrize(("objective", "overrides", "error", "message"), [
    ("causal_lm", ["--data.tokenizer=missing.json"], FileNotFoundError, "data.tokenizer=missing.json: "),
    ("causal_lm", ["--data.text=[book0.txt,nope.txt]"], FileNotFoundError, "data.text[1]: "),
    ("seq2seq", ["--data.corpus=files", "--data.train_source=a.en", "--data.train_target=a.de",
                 "--data.valid_source=b.en", "--data.valid_target=b.de"], FileNotFoundError, "data.train_source: "),
    ("causal_lm", ["--model.from_pretrained=nowhere"], FileNotFoundError, "model.from_pretrained=nowhere: "),
])
def test_missing_files_are_found_before_the_data_is_read(make_recipe, tmp_path: Path, objective: str,
                                                         overrides: list[str], error: type, message: str) -> None:
    recipe = make_recipe(objective, f"--data.root={tmp_path}", *overrides)
    with pytest.raises(error) as caught:
        build_data(recipe, tmp_path / "run", log=lambda _: None)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("no_data_work")
def test_a_model_folder_of_the_wrong_family_is_refused_before_the_data(make_recipe, tmp_path: Path) -> None:
    _model_folder(tmp_path / "bert", "bert")
    recipe = make_recipe("causal_lm", f"--model.from_pretrained={tmp_path / 'bert'}")
    with pytest.raises(ValueError, match="train.objective=causal_lm trains a gpt model but model.from_pretrained=.* "
                                         "holds a bert model"):
        build_data(recipe, tmp_path / "run", log=lambda _: None)
    run = tmp_path / "r"
    run.mkdir()
    _model_folder(run / "final", "gpt2")  # a run folder: its model is in final/
    with pytest.raises(FileNotFoundError, match=r"did you mean .*r/final \(a run folder keeps its model there\)"):
        build_data(make_recipe("causal_lm", f"--model.from_pretrained={run}"), tmp_path / "run", log=lambda _: None)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="config.json is not JSON"):
        build_data(make_recipe("causal_lm", f"--model.from_pretrained={tmp_path / 'bad'}"), tmp_path / "run",
                   log=lambda _: None)


@pytest.mark.usefixtures("no_data_work")
def test_a_tokenizer_file_without_the_objectives_special_tokens_is_refused_before_the_data(make_recipe,
                                                                                          tmp_path: Path) -> None:
    Tokenizer.train(iter(["some text to learn from"]), kind="bpe", vocab_size=300).save(tmp_path / "gpt.json")
    recipe = make_recipe("mlm_nsp", f"--data.tokenizer={tmp_path / 'gpt.json'}")
    with pytest.raises(ValueError, match=r"has no \[PAD\], \[CLS\], \[SEP\], \[MASK\] token, which "
                                         "train.objective=mlm_nsp needs"):
        build_data(recipe, tmp_path / "run", log=lambda _: None)
    (tmp_path / "garbage.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a tokenizer.json that `tokenizers` can read"):
        build_data(make_recipe("causal_lm", f"--data.tokenizer={tmp_path / 'garbage.json'}"), tmp_path / "run",
                   log=lambda _: None)


def test_the_supported_model_types_are_the_interop_ones() -> None:
    from tformer.interop.huggingface import LAYOUTS
    from tformer.training.preflight import FAMILY_OF_MODEL_TYPE

    assert set(FAMILY_OF_MODEL_TYPE) == set(LAYOUTS)


@pytest.mark.usefixtures("no_data_work")
def test_fp16_without_cuda_is_refused_before_the_data(make_recipe, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.precision=fp16 needs a CUDA device; on CPU use train.precision=bf16"):
        build_data(make_recipe("causal_lm", "--train.precision=fp16"), tmp_path / "run", log=lambda _: None)
