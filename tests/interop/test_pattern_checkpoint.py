"""save_pretrained / from_pretrained of a GPT with a layer pattern (the T-DMCA): a tformer-tdmca folder that loads
back to the same logits; a pattern of all F stays a Hugging Face gpt2 folder; writing local or compressed layers as
Hugging Face GPT-2 is one line saying why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tformer
from tests.conftest import randomize
from tformer.config import ModelConfig
from tformer.interop.hf_config import config_to_hf
from tformer.interop.huggingface import checkpoint_rules
from tformer.models import GPT, SequenceClassification

REFUSAL = "HF GPT-2 has no local/compressed attention"


def _config(pattern: str | None = "LMLML", **overrides: object) -> ModelConfig:
    return ModelConfig.preset("gpt2-tiny", n_layers=5, attention_pattern=pattern, local_block_size=4,
                              local_look_back=0, compression=3, dropout=0.0, attention_dropout=0.0, **overrides)


def _ids() -> torch.Tensor:
    return torch.randint(3, 99, (2, 17), generator=torch.Generator().manual_seed(0))


def test_a_patterned_model_saves_as_a_tdmca_folder_and_loads_to_the_same_logits(tmp_path: Path) -> None:
    model = randomize(GPT(_config())).eval()
    tformer.save_pretrained(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "tformer-tdmca"
    ours = saved["tformer_config"]
    assert (ours["attention_pattern"], ours["local_block_size"], ours["local_look_back"], ours["compression"]) == \
        ("LMLML", 4, 0, 3)
    written = set(load_file(tmp_path / "model.safetensors"))  # tformer's names; the tied head written once
    assert written == set(model.state_dict()) - {"lm_head.weight"}
    loaded = tformer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert set(loaded.state_dict()) == set(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.lm_head.weight is loaded.decoder.embeddings.token.weight  # still tied after loading
    with torch.no_grad():
        assert torch.equal(loaded(_ids()).logits, model(_ids()).logits)
        cache = loaded.new_cache()
        loaded(_ids()[:, :5], cache=cache)
        step = loaded(_ids()[:, 5:6], cache=cache).logits
    torch.testing.assert_close(step, model(_ids()[:, :6]).logits[:, -1:], atol=1e-5, rtol=0)


def test_a_patterned_task_model_round_trips(tmp_path: Path) -> None:
    model = randomize(SequenceClassification(_config(task="sequence-classification", num_labels=3,
                                                     pad_token_id=0))).eval()
    tformer.save_pretrained(model, tmp_path)
    loaded = tformer.from_pretrained(tmp_path)
    assert isinstance(loaded, SequenceClassification) and loaded.config.attention_pattern == "LMLML"
    with torch.no_grad():
        assert torch.equal(loaded(_ids()).logits, model(_ids()).logits)


def test_a_pattern_of_full_layers_stays_a_hugging_face_gpt2_folder(tmp_path: Path) -> None:
    model = randomize(GPT(_config("FFFFF"))).eval()
    tformer.save_pretrained(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "gpt2" and saved["tformer_config"]["attention_pattern"] == "FFFFF"
    loaded = tformer.from_pretrained(tmp_path)
    assert loaded.config.attention_pattern == "FFFFF"
    with torch.no_grad():
        assert torch.equal(loaded(_ids()).logits, model(_ids()).logits)


@pytest.mark.parametrize("model_type", ["gpt2", "openai-gpt"])
def test_writing_local_or_compressed_layers_as_hugging_face_gpt_is_refused(model_type: str) -> None:
    config = _config()
    with pytest.raises(ValueError) as error:
        config_to_hf(config, model_type)
    assert str(error.value) == (f"cannot write attention_pattern='LMLML' as a Hugging Face {model_type} folder: "
                                f"{REFUSAL}; save it as a tformer-tdmca folder (tformer.save_pretrained does), which "
                                "tformer.from_pretrained reads")
    with pytest.raises(ValueError, match=f"^attention_pattern='LMLML' has no Hugging Face {model_type} layout: "
                                         f"{REFUSAL}; use a tformer-tdmca folder$"):
        checkpoint_rules(config, model_type)


def test_a_gpt2_folder_whose_config_names_a_pattern_is_refused_in_one_line(tmp_path: Path) -> None:
    tformer.save_pretrained(randomize(GPT(_config(None))), tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    saved["tformer_config"]["attention_pattern"] = "LMLML"  # a hand-edited folder: the weights are full attention
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=f"^attention_pattern='LMLML' has no Hugging Face gpt2 layout: {REFUSAL}"):
        tformer.from_pretrained(tmp_path)


def test_loading_cannot_change_the_pattern(tmp_path: Path) -> None:
    tformer.save_pretrained(randomize(GPT(_config())), tmp_path)
    with pytest.raises(ValueError, match=r"^from_pretrained override attention_pattern='LLLLL' changes the weights"):
        tformer.from_pretrained(tmp_path, attention_pattern="LLLLL")
    assert tformer.from_pretrained(tmp_path, attention="explicit").config.attention == "explicit"
