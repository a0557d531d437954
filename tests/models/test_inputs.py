"""Bad input to the models raises one clear error that names the value; good input gives the documented shapes."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.config import ModelConfig


@pytest.fixture(params=["gpt2-tiny", "gpt1-tiny", "bert-tiny", "transformer-tiny"])
def model(request: pytest.FixtureRequest) -> tformer.TransformerModel:
    torch.manual_seed(0)
    return tformer.build_model(ModelConfig.preset(request.param)).eval()


def _call(model: tformer.TransformerModel, ids: torch.Tensor, **kwargs):
    if model.config.family == "encoder-decoder":
        return model(ids, decoder_input_ids=ids, **kwargs)
    return model(ids, **kwargs)


def test_token_id_outside_vocabulary_is_named(model: tformer.TransformerModel) -> None:
    ids = torch.tensor([[1, 2, 99, 3]])
    with pytest.raises(ValueError, match=r"token id 99 in input_ids is outside the vocabulary \[0, 99\)"):
        _call(model, ids)


def test_negative_token_id_is_named(model: tformer.TransformerModel) -> None:
    with pytest.raises(ValueError, match=r"token id -1 in input_ids"):
        _call(model, torch.tensor([[1, -1]]))


def test_sequence_longer_than_position_table_is_named(model: tformer.TransformerModel) -> None:
    ids = torch.ones(1, 65, dtype=torch.long)
    with pytest.raises(ValueError, match=r"sequence length 65 is longer than the position table \(max_positions=64\)"):
        _call(model, ids)


def test_wrong_mask_shape_is_named(model: tformer.TransformerModel) -> None:
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\) but the input needs \(2, 5\)"):
        _call(model, ids, attention_mask=torch.ones(2, 4, dtype=torch.long))


def test_float_ids_are_rejected(model: tformer.TransformerModel) -> None:
    with pytest.raises(ValueError, match=r"must hold integer token ids, got dtype torch.float32"):
        _call(model, torch.ones(1, 3))


def test_decoder_input_ids_are_checked_too() -> None:
    model = tformer.build_model(ModelConfig.preset("transformer-tiny")).eval()
    with pytest.raises(ValueError, match=r"token id 120 in decoder_input_ids"):
        model(torch.ones(1, 3, dtype=torch.long), decoder_input_ids=torch.tensor([[1, 120]]))


def test_bert_token_type_outside_range_is_named() -> None:
    model = tformer.build_model(ModelConfig.preset("bert-tiny")).eval()
    with pytest.raises(ValueError, match=r"token type id 2 is outside \[0, 2\)"):
        model(torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.tensor([[0, 1, 2]]))


def test_family_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match=r"GPT needs a config with family='gpt', got family='bert'"):
        tformer.GPT(ModelConfig.preset("bert-tiny"))


def test_output_shapes_and_optional_fields(model: tformer.TransformerModel) -> None:
    ids = torch.randint(0, 99, (2, 6))
    out = _call(model, ids, output_attentions=True, output_hidden_states=True)
    config = model.config
    assert out.logits.shape == (2, 6, 99)
    if config.family == "encoder-decoder":
        assert len(out.encoder_attentions) == config.n_layers
        assert len(out.decoder_attentions) == len(out.cross_attentions) == config.decoder_layers
        assert out.cross_attentions[0].shape == (2, config.n_heads, 6, 6)
        assert len(out.encoder_hidden_states) == config.n_layers + 1
    else:
        assert len(out.attentions) == config.n_layers
        assert out.attentions[0].shape == (2, config.n_heads, 6, 6)
        assert len(out.hidden_states) == config.n_layers + 1
    if config.family == "bert":
        assert out.last_hidden_state.shape == (2, 6, config.d_model)
        assert out.pooled_output.shape == (2, config.d_model)
        assert out.nsp_logits.shape == (2, 2)
    plain = _call(model, ids)
    assert getattr(plain, "attentions", None) is None and getattr(plain, "cross_attentions", None) is None


def test_lm_labels_are_shifted_and_minus_100_ignored() -> None:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny")).eval()
    ids = torch.randint(0, 99, (2, 8))
    labels = ids.clone()
    labels[0, 5:] = -100
    out = model(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 99)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_encoder_decoder_labels_build_shifted_decoder_inputs() -> None:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("transformer-tiny")).eval()
    source = torch.randint(3, 99, (2, 5))
    labels = torch.randint(3, 99, (2, 4))
    start = model.config.decoder_start_token_id
    decoder_input_ids = torch.cat([torch.full((2, 1), start), labels[:, :-1]], dim=1)
    with_labels = model(source, labels=labels)
    explicit = model(source, decoder_input_ids=decoder_input_ids)
    assert torch.allclose(with_labels.logits, explicit.logits)
    expected = torch.nn.functional.cross_entropy(explicit.logits.reshape(-1, 99), labels.reshape(-1))
    assert torch.allclose(with_labels.loss, expected, atol=1e-6)


def test_tied_embeddings_share_one_tensor() -> None:
    gpt = tformer.build_model(ModelConfig.preset("gpt2-tiny"))
    assert gpt.lm_head.weight is gpt.decoder.embeddings.token.weight
    encdec = tformer.build_model(ModelConfig.preset("transformer-tiny"))
    assert encdec.lm_head.weight is encdec.decoder.embeddings.token.weight is encdec.encoder.embeddings.token.weight
    bert = tformer.build_model(ModelConfig.preset("bert-tiny"))
    assert bert.mlm_head.decoder.weight is bert.encoder.embeddings.token.weight
    untied = tformer.build_model(ModelConfig.preset("gpt2-tiny", tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.decoder.embeddings.token.weight


def test_embedding_scale_is_sqrt_d_model() -> None:
    model = tformer.build_model(ModelConfig.preset("transformer-tiny", dropout=0.0)).eval()
    ids = torch.tensor([[5, 6]])
    positions = torch.arange(2)[None]
    expected = model.encoder.embeddings.token(ids) * 32**0.5 + model.encoder.embeddings.positions(positions)
    assert torch.allclose(model.encoder.embeddings(ids, positions), expected)


@pytest.mark.parametrize("preset", ["gpt2-tiny", "transformer-tiny"])
def test_logits_to_keep_computes_only_the_last_positions(preset: str) -> None:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset(preset)).eval()
    ids = torch.randint(3, 99, (2, 6))
    full = _call(model, ids).logits
    last = _call(model, ids, logits_to_keep=1).logits
    assert last.shape == (2, 1, 99) and torch.allclose(last, full[:, -1:], atol=1e-6)
    with pytest.raises(ValueError, match="logits_to_keep needs labels=None"):
        _call(model, ids, logits_to_keep=1, labels=ids)
