"""RNNSearch (Bahdanau et al. 2014): padding, the loss, the outputs, save and load, configs and parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tformer
from tformer import ModelConfig
from tformer.data.seq2seq import shift_right
from tformer.losses import token_cross_entropy
from tformer.models.rnn import RNNSearch
from tformer.training.recipe import load_recipe, model_config

from ..weights import randomize

CELLS = ["gru", "lstm"]


def _model(cell: str, **overrides: object) -> RNNSearch:
    config = ModelConfig.preset("rnnsearch-tiny", cell=cell, **overrides)
    model = tformer.build_model(config)
    return randomize(model, seed=1, scale=0.3)


def _count(config: ModelConfig) -> int:
    with torch.device("meta"):
        return tformer.build_model(config).num_parameters()


def _sources() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sources, the second 3 tokens long and right-padded with junk ids (not the pad id: the mask must do it)."""
    ids = torch.randint(3, 99, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("cell", CELLS)
def test_build_model_gives_rnnsearch_with_the_cell(cell: str) -> None:
    model = _model(cell)
    assert type(model) is RNNSearch
    assert isinstance(model.encoder, torch.nn.GRU if cell == "gru" else torch.nn.LSTM)
    assert model.encoder.bidirectional


@pytest.mark.parametrize("cell", CELLS)
def test_source_padding_changes_no_encoder_state_and_no_logit(cell: str) -> None:
    model = _model(cell)
    ids, mask = _sources()
    decoder = torch.tensor([[1, 5, 7, 9], [1, 4, 4, 8]])
    with torch.no_grad():
        padded = model(ids, attention_mask=mask, decoder_input_ids=decoder, output_attentions=True)
        alone = model(ids[1:, :3], decoder_input_ids=decoder[1:], output_attentions=True)
    states = padded.encoder_last_hidden_state
    torch.testing.assert_close(states[1, :3], alone.encoder_last_hidden_state[0], rtol=0, atol=1e-6)
    assert torch.equal(states[1, 3:], torch.zeros_like(states[1, 3:]))  # pads hold no state
    torch.testing.assert_close(padded.logits[1], alone.logits[0], rtol=0, atol=1e-5)
    weights = padded.cross_attentions[0]
    assert torch.equal(weights[1, :, :, 3:], torch.zeros_like(weights[1, :, :, 3:]))


@pytest.mark.parametrize("cell", CELLS)
def test_the_backward_direction_starts_at_the_last_real_token(cell: str) -> None:
    """<-h_1 of a padded row is that of the unpadded source: so is s_0 = tanh(W_s <-h_1)."""
    model = _model(cell)
    ids, mask = _sources()
    with torch.no_grad():
        padded = model.initial_state(model.encode(ids, mask).last_hidden_state)
        alone = model.initial_state(model.encode(ids[1:, :3]).last_hidden_state)
    torch.testing.assert_close(padded[0][:, 1], alone[0][:, 0], rtol=0, atol=1e-6)


def test_logits_follow_the_paper_equations_step_by_step() -> None:
    """Appendix A.2.2 by hand with the model's weights: s_0 = tanh(W_s <-h_1); e_j = v^T tanh(W_a s_{i-1} + U_a h_j);
    c_i; t~_i = [U_o V_o C_o] [s_{i-1}; E y_{i-1}; c_i] + b; t_i = max over adjacent pairs; logits W_o t_i;
    s_i = GRU([E y_{i-1}; c_i], s_{i-1})."""
    model = _model("gru")
    ids, mask = _sources()
    decoder = torch.tensor([[1, 5, 7, 9], [1, 4, 4, 8]])
    hidden = model.config.hidden_size
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, decoder_input_ids=decoder).logits
        h = model.encode(ids, mask).last_hidden_state
        s = torch.tanh(h[:, 0, hidden:] @ model.init_state.weight.T + model.init_state.bias)
        a = model.attention
        for i in range(decoder.size(1)):
            e = torch.tanh((s @ a.query_proj.weight.T)[:, None] + h @ a.key_proj.weight.T) @ a.score.weight[0]
            alpha = e.masked_fill(mask == 0, float("-inf")).softmax(-1)
            c = (alpha[:, :, None] * h).sum(1)
            y = model.target_embeddings.weight[decoder[:, i]]
            t_tilde = torch.cat([s, y, c], -1) @ model.deep_output.weight.T + model.deep_output.bias
            t = torch.maximum(t_tilde[:, 0::2], t_tilde[:, 1::2])
            torch.testing.assert_close(logits[:, i], t @ model.lm_head.weight.T, rtol=0, atol=1e-5)
            s = model.decoder_cells[0](torch.cat([y, c], -1), s)


@pytest.mark.parametrize("cell", CELLS)
def test_a_source_of_only_padding_gives_finite_logits_and_gradients(cell: str) -> None:
    model = _model(cell).train()
    ids, mask = _sources()
    mask[1] = 0
    out = model(ids, attention_mask=mask, labels=torch.tensor([[5, 6, 2], [7, 2, -100]]), output_attentions=True)
    assert torch.isfinite(out.logits).all()
    assert torch.equal(out.cross_attentions[0][1], torch.zeros_like(out.cross_attentions[0][1]))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_left_padded_decoder_inputs_are_refused_in_one_line() -> None:
    ids, mask = _sources()
    decoder = torch.tensor([[1, 5, 7], [0, 1, 4]])
    with pytest.raises(ValueError, match=r"decoder_attention_mask has a 0 before a 1: the RNN decoder reads "
                                         r"right-padded targets"):
        _model("gru")(ids, attention_mask=mask, decoder_input_ids=decoder,
                      decoder_attention_mask=torch.tensor([[1, 1, 1], [0, 1, 1]]))


def test_left_padded_source_is_refused_in_one_line() -> None:
    ids, _ = _sources()
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    with pytest.raises(ValueError, match=r"a 0 before a 1: the RNN encoder reads right-padded") as error:
        _model("gru").encode(ids, mask)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cell", CELLS)
def test_labels_give_the_teacher_forced_token_cross_entropy(cell: str) -> None:
    model = _model(cell)
    ids, mask = _sources()
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
        decoder = shift_right(labels, model.config.pad_token_id, model.config.decoder_start_token_id)
        expected = token_cross_entropy(model(ids, attention_mask=mask, decoder_input_ids=decoder).logits, labels)
    assert decoder[0, 0] == model.config.decoder_start_token_id
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("cell", CELLS)
def test_outputs_have_the_encoder_decoder_shapes(cell: str) -> None:
    model = _model(cell)
    ids, mask = _sources()
    decoder = torch.tensor([[1, 5, 7], [1, 4, 4]])
    with torch.no_grad():
        out = model(ids, attention_mask=mask, decoder_input_ids=decoder, output_attentions=True)
        last = model(ids, attention_mask=mask, decoder_input_ids=decoder, logits_to_keep=1)
    assert out.logits.shape == (2, 3, 99)
    assert out.encoder_last_hidden_state.shape == (2, 6, 2 * model.config.hidden_size)
    (weights,) = out.cross_attentions
    assert weights.shape == (2, 1, 3, 6)  # one head
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, 3))
    torch.testing.assert_close(last.logits, out.logits[:, -1:])


def test_tied_embeddings_are_one_tensor_and_untied_ones_are_not() -> None:
    tied = _model("gru")
    assert tied.lm_head.weight is tied.target_embeddings.weight is tied.source_embeddings.weight
    untied = _model("gru", tie_word_embeddings=False, share_encoder_decoder_embeddings=False, maxout_size=12)
    assert untied.lm_head.weight.shape == (99, 12)
    assert untied.target_embeddings.weight is not untied.source_embeddings.weight


def test_the_paper_initialisation() -> None:
    model = tformer.build_model(ModelConfig.preset("rnnsearch-tiny", init_std=0.01))
    assert torch.equal(model.attention.score.weight, torch.zeros_like(model.attention.score.weight))
    gate = model.encoder.weight_hh_l0[:24]  # the reset gate's block
    torch.testing.assert_close(gate @ gate.T, torch.eye(24), rtol=0, atol=1e-5)
    assert model.attention.key_proj.weight.std() < 0.002 < model.deep_output.weight.std()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shared", [True, False])
def test_save_then_load_gives_the_same_logits(tmp_path: Path, cell: str, shared: bool) -> None:
    overrides = {} if shared else dict(share_encoder_decoder_embeddings=False, tie_word_embeddings=False)
    model = _model(cell, **overrides)
    tformer.save_pretrained(model, tmp_path)
    loaded = tformer.from_pretrained(tmp_path)
    assert type(loaded) is RNNSearch and loaded.config == model.config
    ids, mask = _sources()
    decoder = torch.tensor([[1, 5, 7], [1, 4, 4]])
    with torch.no_grad():
        assert torch.equal(loaded(ids, attention_mask=mask, decoder_input_ids=decoder).logits,
                           model(ids, attention_mask=mask, decoder_input_ids=decoder).logits)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "tformer-rnnsearch" and config["tformer_config"]["family"] == "rnn"
    stored = load_file(tmp_path / "model.safetensors")
    assert ("lm_head.weight" in stored) is not shared  # a tied or shared table is written once
    assert ("target_embeddings.weight" in stored) is not shared
    assert sum(t.numel() for t in stored.values()) == model.num_parameters()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"hidden_size": 0}, r"hidden_size=0 must be a positive integer"),
    ({"cell": "rnn"}, r"cell='rnn' is not one of: gru, lstm"),
    ({"alignment_size": -3}, r"alignment_size=-3 must be a positive integer"),
    ({"maxout_size": -1}, r"maxout_size=-1 must be 0 \(no maxout\) or a positive integer"),
    ({"maxout_size": 10}, r"tie_word_embeddings=True .* set maxout_size=16 \(or 0\), or tie_word_embeddings=False"),
    ({"n_layers": 0}, r"n_layers=0 must be a positive integer"),
    ({"family": "rnnsearch"}, r"family='rnnsearch' is not one of"),
])
def test_bad_rnn_config_is_a_one_line_value_error(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        ModelConfig.preset("rnnsearch-tiny", **overrides)
    assert "\n" not in str(error.value)


def test_rnn_fields_leave_other_families_and_old_configs_alone() -> None:
    config = ModelConfig.preset("rnnsearch", n_heads=12)  # 620 is not a multiple of 12: heads mean nothing here
    assert ModelConfig.from_dict(config.to_dict()) == config
    old = ModelConfig.preset("transformer-base").to_dict()
    for name in ("cell", "hidden_size", "alignment_size", "maxout_size"):
        del old[name]  # a config.json written before the RNN family
    assert ModelConfig.from_dict(old) == ModelConfig.preset("transformer-base")
    assert ModelConfig.preset("gpt2", maxout_size=7).family == "gpt"  # tying is checked for the RNN only


def test_the_paper_preset_has_the_paper_arithmetic() -> None:
    """Embeddings (2 x 30,000 x 620), bi-GRU encoder, W_s, alignment (W_a, U_a, v_a), decoder GRU over
    [E y; c], deep output [U_o V_o C_o] into 2 x 500 maxout pieces, W_o (30,000 x 500, no bias)."""
    vocab, emb, hidden, align, maxout = 30000, 620, 1000, 1000, 500
    gru = lambda inputs: 3 * (hidden * inputs + hidden * hidden + 2 * hidden)
    expected = (2 * vocab * emb + 2 * gru(emb) + hidden * hidden + hidden + hidden * align + 2 * hidden * align
                + align + gru(emb + 2 * hidden) + 2 * maxout * (3 * hidden + emb) + 2 * maxout + vocab * maxout)
    assert expected == 80_421_000
    assert _count(ModelConfig.preset("rnnsearch")) == expected


@pytest.mark.parametrize(("preset", "recipe", "vocab", "transformer"), [
    ("rnnsearch-demo", "demo-numbers", 400, 976_896),
    ("rnnsearch-multi30k", "transformer-multi30k", 8000, 7_577_600),
])
def test_matched_presets_are_within_5_percent_of_their_transformer(preset: str, recipe: str, vocab: int,
                                                                    transformer: int) -> None:
    theirs = _count(model_config(load_recipe(recipe), vocab_size=vocab))
    assert theirs == transformer
    ours = _count(ModelConfig.preset(preset, vocab_size=vocab))
    assert abs(ours - theirs) / theirs < 0.05, (preset, ours, theirs)
