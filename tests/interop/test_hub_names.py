"""Model names that are not folders ("bert-base-cased", "org/name") load through the Hugging Face cache (issue 13)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tformer
from tformer import ModelConfig, Tokenizer
from tformer.cli import main

from ..weights import randomize

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_model(cache: Path, name: str, model: tformer.TransformerModel, tokenizer: Tokenizer | None = None) -> None:
    """`model` in the layout huggingface_hub downloads into: blobs/ by content hash, snapshots/<commit>/ of links
    to them, refs/main naming the commit."""
    repo = cache / ("models--" + name.replace("/", "--"))
    plain = repo / "plain"
    tformer.save_pretrained(model, plain, tokenizer=tokenizer)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in plain.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        file.rename(blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    plain.rmdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def gpt() -> tformer.TransformerModel:
    return randomize(tformer.build_model(ModelConfig.preset("gpt2-tiny")), seed=0)


def _logits(model: tformer.TransformerModel) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[1, 5, 9, 2]])).logits


def test_org_name_loads_from_the_hf_home_cache_offline(tmp_path: Path, monkeypatch, gpt) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    _cache_model(tmp_path / "hf" / "hub", "tiny-org/tiny-gpt2", gpt)
    monkeypatch.chdir(tmp_path)
    loaded = tformer.from_pretrained("tiny-org/tiny-gpt2")
    assert torch.equal(_logits(loaded), _logits(gpt))


def test_plain_name_loads_from_hf_hub_cache_with_a_new_head(tmp_path: Path, monkeypatch) -> None:
    bert = randomize(tformer.build_model(ModelConfig.preset("bert-tiny")), seed=1)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_model(tmp_path / "elsewhere", "bert-base-cased", bert)
    monkeypatch.chdir(tmp_path)
    model = tformer.from_pretrained("bert-base-cased", task="sequence-classification", num_labels=3)
    assert model.config.task == "sequence-classification" and model.config.num_labels == 3
    loaded = {name.removeprefix("backbone."): tensor for name, tensor in model.state_dict().items()}
    shared = [name for name in bert.state_dict() if name in loaded]  # the pre-training heads make way for the task's
    assert len(shared) > 20 and all(torch.equal(loaded[n], bert.state_dict()[n]) for n in shared)


def test_name_in_no_cache_offline_says_so_and_how_to_pass_a_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        tformer.from_pretrained("bert-base-cased")
    assert str(error.value) == (
        f"no folder 'bert-base-cased' here, and no model 'bert-base-cased' in the Hugging Face cache {tmp_path}/hf/hub "
        "(HF_HUB_OFFLINE=1 allows no download); pass a local model folder (config.json + model.safetensors), "
        "or unset HF_HUB_OFFLINE to download it")


def test_name_without_network_says_the_hub_cannot_be_reached(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_ENDPOINT": "http://127.0.0.1:9",  # port 9: the connection is refused at once
           "PYTHONPATH": str(Path(tformer.__file__).parents[1])}  # the tformer under test
    env.pop("HF_HUB_CACHE", None)
    code = ("import tformer\ntry:\n    tformer.from_pretrained('org/nothing')\n"
            "except FileNotFoundError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert "'org/nothing' is not in the Hugging Face cache" in done.stdout, done.stdout + done.stderr
    assert "the Hub cannot be reached; pass a local model folder" in done.stdout


def test_strings_that_look_like_paths_stay_paths(tmp_path: Path, monkeypatch, gpt) -> None:
    from tformer.hub import looks_like_model_name

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_model(tmp_path / "hf" / "hub", "tiny-org/tiny-gpt2", gpt)
    monkeypatch.chdir(tmp_path)
    for path in ("./tiny-org/tiny-gpt2", "runs/a/final", "~/no-such-model-folder", "/no/such/folder", "a b"):
        assert not looks_like_model_name(path)
        with pytest.raises(FileNotFoundError, match="does not exist; pass a folder with config.json"):
            tformer.from_pretrained(path)
    local = randomize(tformer.build_model(ModelConfig.preset("gpt2-tiny")), seed=5)
    tformer.save_pretrained(local, tmp_path / "tiny-org" / "tiny-gpt2")  # a folder here wins over the cache
    assert torch.equal(_logits(tformer.from_pretrained("tiny-org/tiny-gpt2")), _logits(local))
    assert looks_like_model_name("gpt2") and looks_like_model_name("openai-community/gpt2")


def test_without_huggingface_hub_a_name_says_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"install huggingface_hub \(pip install huggingface_hub\), or pass "
                                                r"a local model folder"):
        tformer.from_pretrained("bert-base-cased")


def test_cli_generate_takes_a_cached_name(tmp_path: Path, monkeypatch, capsys) -> None:
    tok = Tokenizer.train(iter(["the quick brown fox"] * 5), kind="char")
    model = randomize(tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=None,
                                                             eos_token_id=None)), seed=2)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_model(tmp_path / "hf" / "hub", "tiny-org/char-gpt", model, tokenizer=tok)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--model", "tiny-org/char-gpt", "the", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("the")
    assert main(["generate", "--model", "tiny-org/other", "the"]) == 2
    assert "no model 'tiny-org/other' in the Hugging Face cache" in capsys.readouterr().err


def test_tokenizer_from_file_takes_a_cached_name_as_the_readme_writes(tmp_path: Path, monkeypatch) -> None:
    tok = Tokenizer.train(iter(["the quick brown fox"] * 5), kind="char")
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=None,
                                                   eos_token_id=None))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_model(tmp_path / "hf" / "hub", "char-gpt", model, tokenizer=tok)
    monkeypatch.chdir(tmp_path)
    assert Tokenizer.from_file("char-gpt").encode("the fox") == tok.encode("the fox")
