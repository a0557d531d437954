"""Model folders: the file layouts tformer reads, and the errors a wrong folder gives."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import tformer
from tformer.config import ModelConfig


@pytest.fixture
def saved_gpt2(tmp_path: Path) -> tuple[tformer.TransformerModel, Path]:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny")).eval()
    tformer.save_pretrained(model, tmp_path)
    return model, tmp_path


def _same_logits(a: tformer.TransformerModel, b: tformer.TransformerModel) -> bool:
    ids = torch.randint(0, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(ids).logits, b(ids).logits)


def test_folder_has_config_and_safetensors_with_tied_weight_once(saved_gpt2) -> None:
    _, folder = saved_gpt2
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    tensors = load_file(folder / "model.safetensors")
    assert "transformer.wte.weight" in tensors and "lm_head.weight" not in tensors
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D layout: (in, out)
    assert not list(folder.glob("*.tmp"))


def test_pytorch_bin_is_read_with_weights_only(saved_gpt2, tmp_path_factory) -> None:
    model, folder = saved_gpt2
    bin_folder = tmp_path_factory.mktemp("bin")
    (bin_folder / "config.json").write_text((folder / "config.json").read_text())
    torch.save(load_file(folder / "model.safetensors"), bin_folder / "pytorch_model.bin")
    assert _same_logits(model, tformer.from_pretrained(bin_folder))


def test_sharded_checkpoint_with_index(saved_gpt2, tmp_path_factory) -> None:
    model, folder = saved_gpt2
    sharded = tmp_path_factory.mktemp("sharded")
    (sharded / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, shard_names in halves.items():
        save_file({n: tensors[n] for n in shard_names}, sharded / shard, metadata={"format": "pt"})
        weight_map |= {n: shard for n in shard_names}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert _same_logits(model, tformer.from_pretrained(sharded))


def test_mismatched_checkpoint_names_first_tensor_and_both_shapes(saved_gpt2) -> None:
    _, folder = saved_gpt2
    config = json.loads((folder / "config.json").read_text())
    config.pop("tformer_config")
    config["n_positions"] = 128  # the weights were saved with 64 positions
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"checkpoint tensor 'wpe.weight' has shape \(64, 32\) but the model's "
                                         r"'decoder.embeddings.positions.weight' needs \(128, 32\)"):
        tformer.from_pretrained(folder)


def test_mismatched_transposed_tensor_reports_stored_shapes(saved_gpt2) -> None:
    _, folder = saved_gpt2
    config = json.loads((folder / "config.json").read_text())
    config.pop("tformer_config")
    config["n_inner"] = 40  # saved with 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"'h.0.mlp.c_fc.weight' has shape \(32, 64\) .* needs \(32, 40\)"):
        tformer.from_pretrained(folder)


def test_missing_tensor_is_named(saved_gpt2) -> None:
    _, folder = saved_gpt2
    tensors = load_file(folder / "model.safetensors")
    del tensors["transformer.h.1.ln_2.bias"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"checkpoint has no tensor 'h.1.ln_2.bias'"):
        tformer.from_pretrained(folder)


def test_missing_folder_and_missing_config_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model folder '.*nowhere' does not exist"):
        tformer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config.json' is missing"):
        tformer.from_pretrained(tmp_path)


def test_unsupported_model_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"model_type 'llama' .* is not supported; tformer reads gpt2"):
        tformer.from_pretrained(tmp_path)


def test_folder_without_weights_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(FileNotFoundError, match=r"no weights in .*model.safetensors"):
        tformer.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset", ["transformer-tiny", "bert-tiny", "gpt1-tiny"])
def test_every_family_round_trips_exactly(preset: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset(preset)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tformer.save_pretrained(model, tmp_path)
    messages = [str(w.message) for w in caught]
    if preset == "transformer-tiny":  # the paper's interleaved sinusoids are not Marian's [sin | cos] layout
        assert len(messages) == 1 and "Marian uses sinusoidal positions in [sin | cos] halves" in messages[0]
    else:
        assert messages == []
    again = tformer.from_pretrained(tmp_path)
    assert again.config == model.config
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_overrides_change_runtime_fields(saved_gpt2) -> None:
    _, folder = saved_gpt2
    assert tformer.from_pretrained(folder, attention="explicit").config.attention == "explicit"

