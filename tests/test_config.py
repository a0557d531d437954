"""ModelConfig: validation, presets, and the published parameter counts."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.config import PRESETS, PUBLISHED_PARAMETERS, ModelConfig

# Exact counts where the Hugging Face model of that size is known, or the arithmetic of the published shapes.
EXACT_PARAMETERS = {
    "gpt2": 124_439_808,  # GPT2LMHeadModel (tied lm_head counted once)
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "gpt1": 116_534_784,
    "transformer-base": 63_082_496,
    "transformer-big": 214_245_376,
    "bert-base": 110_106_428,  # BertForPreTraining: MLM + NSP heads
}


def _count(config: ModelConfig) -> int:
    with torch.device("meta"):
        return tformer.build_model(config).num_parameters()


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMETERS))
def test_preset_parameter_count_within_3_percent_of_published(name: str) -> None:
    count = _count(ModelConfig.preset(name))
    published = PUBLISHED_PARAMETERS[name]
    assert abs(count - published) / published < 0.03, (name, count, published)


@pytest.mark.parametrize("name", list(EXACT_PARAMETERS))
def test_preset_parameter_count_exact(name: str) -> None:
    assert _count(ModelConfig.preset(name)) == EXACT_PARAMETERS[name]


def test_bert_base_backbone_with_pooler_equals_hugging_face_bert_model() -> None:
    assert _count(ModelConfig.preset("bert-base", pretraining_heads=False)) == 109_482_240


@pytest.mark.parametrize("name", list(PRESETS))
def test_build_model_returns_the_family_class(name: str) -> None:
    config = ModelConfig.preset(name)
    with torch.device("meta"):
        model = tformer.build_model(config)
    expected = {"gpt": tformer.GPT, "bert": tformer.BERT, "encoder-decoder": tformer.EncoderDecoder,
                "rnn": tformer.RNNSearch}[config.family]
    assert type(model) is expected


def test_preset_overrides_apply() -> None:
    config = ModelConfig.preset("gpt2", n_layers=2, dropout=0.0)
    assert (config.n_layers, config.dropout, config.d_model) == (2, 0.0, 768)


def test_unknown_preset_names_it_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'gpt5'.*gpt2"):
        ModelConfig.preset("gpt5")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 100, "n_heads": 12}, r"d_model=100 is not divisible by n_heads=12"),
        ({"activation": "tanh"}, r"activation='tanh' is not one of"),
        ({"n_layers": 0}, r"n_layers=0 must be a positive integer"),
        ({"vocab_size": -5}, r"vocab_size=-5 must be a positive integer"),
        ({"norm": "middle"}, r"norm='middle'"),
        ({"dropout": 1.5}, r"dropout=1.5 must be in \[0, 1\)"),
        ({"family": "lstm"}, r"family='lstm' is not one of: gpt, bert, encoder-decoder, rnn"),
        ({"positions": "rotary"}, r"positions='rotary'"),
        ({"pad_token_id": 50257}, r"pad_token_id=50257 is outside the vocabulary"),
        ({"d_model": 33, "n_heads": 3, "positions": "sinusoidal"}, r"d_model=33 must be even"),
    ],
)
def test_bad_config_field_names_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.preset("gpt2", **overrides)


def test_unknown_field_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown ModelConfig field 'n_layer'"):
        ModelConfig.from_dict({"n_layer": 3})


def test_config_round_trips_through_a_dict() -> None:
    config = ModelConfig.preset("transformer-base", dropout=0.2)
    assert ModelConfig.from_dict(config.to_dict()) == config
