"""Parity with the `transformers` library: same weights, same logits and attention weights (float32, 1e-5)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import tformer
from tests.conftest import randomize

from ..dev_dependency import import_dev

transformers = import_dev("transformers")

VOCAB = 99
TOLERANCE = 1e-5


@dataclass
class Case:
    name: str
    make: Callable[[], Any]  # a random-init transformers model
    hf_inputs: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]]
    attention_names: tuple[str, ...]


def _gpt2() -> Any:
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48,
                                     bos_token_id=98, eos_token_id=98)
    return transformers.GPT2LMHeadModel(config)


def _gpt1() -> Any:
    config = transformers.OpenAIGPTConfig(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    return transformers.OpenAIGPTLMHeadModel(config)


def _bert() -> Any:
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=64, type_vocab_size=2)
    return transformers.BertForPreTraining(config)


def _marian() -> Any:
    config = transformers.MarianConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
        activation_function="swish", scale_embedding=True, pad_token_id=1, eos_token_id=0,
        decoder_start_token_id=1, forced_eos_token_id=None)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5)
    return model


def _decoder_only_inputs(ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    return {"input_ids": ids, "attention_mask": mask}


def _bert_inputs(ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    token_types = torch.zeros_like(ids)
    token_types[:, ids.size(1) // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}


def _seq2seq_inputs(ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    decoder_ids = torch.roll(ids, 3, dims=1)[:, :6]
    decoder_mask = torch.ones_like(decoder_ids)
    decoder_mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids,
            "decoder_attention_mask": decoder_mask}


CASES = [
    Case("gpt2", _gpt2, _decoder_only_inputs, ("attentions",)),
    Case("openai-gpt", _gpt1, _decoder_only_inputs, ("attentions",)),
    Case("bert", _bert, _bert_inputs, ("attentions",)),
    Case("marian", _marian, _seq2seq_inputs, ("encoder_attentions", "decoder_attentions", "cross_attentions")),
]


def _batch(padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    if padding == "right":
        mask[1, 6:] = 0
        mask[2, 3:] = 0
    elif padding == "left":
        mask[1, :2] = 0
        mask[2, :5] = 0
    return ids, mask


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def saved_reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, Path]:
    case: Case = request.param
    torch.manual_seed(0)
    model = randomize(case.make().eval(), seed=0)
    folder = tmp_path_factory.mktemp(case.name)
    model.save_pretrained(folder)
    return case, folder


def _reference(folder: Path, attention: str | None = None) -> Any:
    config = json.loads((folder / "config.json").read_text())
    auto = {"marian": transformers.MarianMTModel, "bert": transformers.BertForPreTraining}.get(
        config["model_type"], transformers.AutoModelForCausalLM)
    return auto.from_pretrained(folder, attn_implementation=attention).eval()


def _logits(output: Any) -> torch.Tensor:
    return output.prediction_logits if hasattr(output, "prediction_logits") else output.logits


def _real_positions(case: Case, inputs: dict[str, Any]) -> torch.Tensor:
    key = "decoder_attention_mask" if case.name == "marian" else "attention_mask"
    return inputs[key].bool()


@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_match_transformers(saved_reference: tuple[Case, Path], padding: str) -> None:
    case, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    theirs = _reference(folder)
    inputs = case.hf_inputs(*_batch(padding))
    with torch.no_grad():
        expected = _logits(theirs(**inputs))
        got = ours(**inputs).logits
    real = _real_positions(case, inputs)
    assert got.shape == expected.shape
    assert (got - expected)[real].abs().max() < TOLERANCE
    if case.name == "bert":
        with torch.no_grad():
            expected_nsp = theirs(**inputs).seq_relationship_logits
            got_nsp = ours(**inputs).nsp_logits
        assert (got_nsp - expected_nsp).abs().max() < TOLERANCE


def test_attention_weights_match_transformers(saved_reference: tuple[Case, Path]) -> None:
    case, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    theirs = _reference(folder, attention="eager")
    inputs = case.hf_inputs(*_batch("right"))
    with torch.no_grad():
        expected = theirs(**inputs, output_attentions=True)
        got = ours(**inputs, output_attentions=True)
    for name in case.attention_names:
        ours_layers, their_layers = getattr(got, name), getattr(expected, name)
        assert len(ours_layers) == len(their_layers) > 0
        for layer, (a, b) in enumerate(zip(ours_layers, their_layers, strict=True)):
            assert a.shape == b.shape, (name, layer)
            # Compare the rows of real queries: both libraries agree on which keys each may see.
            real = _real_positions(case, inputs) if name != "encoder_attentions" else inputs["attention_mask"].bool()
            assert (a - b).abs().amax(dim=(1, 3))[real].max() < TOLERANCE, (name, layer)


def test_hidden_states_match_transformers(saved_reference: tuple[Case, Path]) -> None:
    case, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    theirs = _reference(folder)
    inputs = case.hf_inputs(*_batch("none"))
    with torch.no_grad():
        expected = theirs(**inputs, output_hidden_states=True)
        got = ours(**inputs, output_hidden_states=True)
    pairs = ([("encoder_hidden_states", "encoder_hidden_states"), ("decoder_hidden_states", "decoder_hidden_states")]
             if case.name == "marian" else [("hidden_states", "hidden_states")])
    for ours_name, their_name in pairs:
        ours_states, their_states = getattr(got, ours_name), getattr(expected, their_name)
        assert len(ours_states) == len(their_states)
        for a, b in zip(ours_states, their_states, strict=True):
            assert (a - b).abs().max() < TOLERANCE


def test_loss_matches_transformers(saved_reference: tuple[Case, Path]) -> None:
    case, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    theirs = _reference(folder)
    ids, mask = _batch("right")
    inputs = case.hf_inputs(ids, mask)
    labels = ids.masked_fill(mask == 0, -100)
    if case.name == "marian":
        inputs.pop("decoder_input_ids")
        inputs.pop("decoder_attention_mask")
    extra = {"next_sentence_label": torch.tensor([0, 1, 0])} if case.name == "bert" else {}
    with torch.no_grad():
        expected = theirs(**inputs, labels=labels, **extra).loss
        got = ours(**inputs, labels=labels, **extra).loss
    assert torch.allclose(got, expected, atol=TOLERANCE)


def test_saved_by_tformer_loads_in_transformers(saved_reference: tuple[Case, Path], tmp_path: Path) -> None:
    case, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a faithful round trip has nothing to warn about
        tformer.save_pretrained(ours, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    auto = {"marian": transformers.MarianMTModel, "bert": transformers.BertForPreTraining}.get(
        config["model_type"], transformers.AutoModelForCausalLM)
    theirs, info = auto.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] or info["missing_keys"] == set()
    assert info["unexpected_keys"] == [] or info["unexpected_keys"] == set()
    inputs = case.hf_inputs(*_batch("right"))
    with torch.no_grad():
        expected = ours(**inputs).logits
        got = _logits(theirs.eval()(**inputs))
    assert (got - expected)[_real_positions(case, inputs)].abs().max() < TOLERANCE


def test_saved_by_tformer_reloads_identically(saved_reference: tuple[Case, Path], tmp_path: Path) -> None:
    _, folder = saved_reference
    ours = tformer.from_pretrained(folder)
    tformer.save_pretrained(ours, tmp_path)
    again = tformer.from_pretrained(tmp_path)
    assert again.config == ours.config
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
