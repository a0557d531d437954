"""capture_attention: views of every family with the right tokens, shapes, softmax rows and pair sub-blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tformer
from tformer.viz import capture_attention
from tformer.viz.capture import readable_tokens


def _rows_sum_to_one(weights: np.ndarray) -> None:
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_bert_self_attention_is_the_models_own_weights_over_cls_text_sep(bert: tuple) -> None:
    model, tok = bert
    (view,) = capture_attention(model, tok, "the cat sat on the mat")
    assert view.name == "self-attention"
    assert view.query_tokens == view.key_tokens == tok.tokenize("the cat sat on the mat")
    assert view.query_tokens[0] == "[CLS]" and view.query_tokens[-1] == "[SEP]"
    n = len(view.query_tokens)
    assert view.weights.shape == (model.config.n_layers, model.config.n_heads, n, n)
    _rows_sum_to_one(view.weights)
    out = model(torch.tensor([tok.encode("the cat sat on the mat")]), output_attentions=True)
    np.testing.assert_allclose(view.weights, torch.stack([a[0] for a in out.attentions]).detach().numpy(), atol=1e-6)


def test_bert_pair_views_are_the_a_to_b_and_b_to_a_sub_blocks(bert: tuple) -> None:
    model, tok = bert
    a_text, b_text = "the cat sat", "it was tired of it"
    views = capture_attention(model, tok, a_text, b_text)
    assert [v.name for v in views] == ["self-attention", "A -> B", "B -> A"]
    full, a_to_b, b_to_a = views
    n_a = len(tok.tokenize(a_text, add_special_tokens=False))
    n_b = len(tok.tokenize(b_text, add_special_tokens=False))
    assert len(full.query_tokens) == n_a + n_b + 3  # [CLS] A [SEP] B [SEP]
    _rows_sum_to_one(full.weights)
    a, b = list(range(1, 1 + n_a)), list(range(n_a + 2, n_a + 2 + n_b))
    assert a_to_b.query_tokens == [full.query_tokens[i] for i in a] == tok.tokenize(a_text, add_special_tokens=False)
    assert a_to_b.key_tokens == b_to_a.query_tokens == tok.tokenize(b_text, add_special_tokens=False)
    np.testing.assert_array_equal(a_to_b.weights, full.weights[:, :, a][:, :, :, b])
    np.testing.assert_array_equal(b_to_a.weights, full.weights[:, :, b][:, :, :, a])
    # sentence B is read with token type 1, as in pre-training
    ids = torch.tensor([tok.encode(a_text, b_text)])
    types = torch.tensor([[0] * (n_a + 2) + [1] * (n_b + 1)])
    out = model(ids, token_type_ids=types, output_attentions=True)
    np.testing.assert_allclose(full.weights[-1], out.attentions[-1][0].detach().numpy(), atol=1e-6)


def test_gpt_self_attention_is_causal_with_readable_byte_level_tokens(gpt: tuple) -> None:
    model, tok = gpt
    (view,) = capture_attention(model, tok, "the river bank was muddy")
    assert view.name == "self-attention"
    assert "".join(view.query_tokens) == "the river bank was muddy"  # 'Ġ' shown as the space it stands for
    assert not any("Ġ" in token for token in view.key_tokens)
    n = len(view.query_tokens)
    assert view.weights.shape == (2, 4, n, n)
    _rows_sum_to_one(view.weights)
    assert np.all(np.triu(view.weights, k=1) == 0)  # no token looks ahead


def test_encoder_decoder_views_with_a_given_target(translator: tuple) -> None:
    model, tok = translator
    views = capture_attention(model, tok, "one two three", target="eins zwei drei")
    assert [v.name for v in views] == ["encoder self-attention", "decoder self-attention", "cross-attention"]
    encoder, decoder, cross = views
    assert encoder.query_tokens == encoder.key_tokens == ["one", "two", "three"]
    assert decoder.query_tokens == decoder.key_tokens == ["[BOS]", "eins", "zwei", "drei", "[EOS]"]
    assert cross.query_tokens == decoder.query_tokens and cross.key_tokens == encoder.key_tokens
    config = model.config
    assert encoder.weights.shape == (config.n_layers, config.n_heads, 3, 3)
    assert decoder.weights.shape == (config.decoder_layers, config.n_heads, 5, 5)
    assert cross.weights.shape == (config.decoder_layers, config.n_heads, 5, 3)
    for view in views:
        _rows_sum_to_one(view.weights)
        assert np.ptp(view.weights, axis=-1).max() > 0.05  # not uniform rows: a wrong weight would show
    assert np.all(np.triu(decoder.weights, k=1) == 0)
    source, target = torch.tensor([tok.encode("one two three")]), torch.tensor([[tok.bos_token_id, *tok.encode(
        "eins zwei drei", add_special_tokens=False), tok.eos_token_id]])
    encoder_expected, decoder_expected, cross_expected = _encoder_decoder_weights(model, source, target)
    np.testing.assert_allclose(encoder.weights, encoder_expected, atol=1e-5)
    np.testing.assert_allclose(decoder.weights, decoder_expected, atol=1e-5)
    np.testing.assert_allclose(cross.weights, cross_expected, atol=1e-5)


def _softmax_of_scores(attention: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor,
                       causal: bool = False) -> np.ndarray:
    """softmax(q k^T / sqrt(d_head)) per head, from the layer's projections: (heads, queries, keys)."""
    if attention.cross:
        q, k = attention.q_proj(queries), attention.kv_proj(keys).chunk(2, dim=-1)[0]
    else:
        q, k, _ = attention.qkv_proj(queries).chunk(3, dim=-1)
    heads = attention.n_heads
    q, k = (t[0].view(t.shape[1], heads, -1).transpose(0, 1) for t in (q, k))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1).numpy()


def _encoder_decoder_weights(model, source: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Each layer's attention recomputed from its input hidden state (normed first in a pre-norm block)."""
    model.eval()
    with torch.no_grad():
        out = model(source, decoder_input_ids=target, output_hidden_states=True)
        encoder, decoder, cross = [], [], []
        for block, h in zip(model.encoder.blocks, out.encoder_hidden_states, strict=False):
            residual = block.self_attention_residual
            normed = residual.norm(h) if residual.pre_norm else h
            encoder.append(_softmax_of_scores(block.self_attention, normed, normed))
        for block, h in zip(model.decoder.blocks, out.decoder_hidden_states, strict=False):
            residual = block.self_attention_residual
            normed = residual.norm(h) if residual.pre_norm else h
            decoder.append(_softmax_of_scores(block.self_attention, normed, normed, causal=True))
            after_self, _ = residual(h, lambda x, block=block: block.self_attention(x, is_causal=True))
            residual = block.cross_attention_residual
            queries = residual.norm(after_self) if residual.pre_norm else after_self
            cross.append(_softmax_of_scores(block.cross_attention, queries, out.encoder_last_hidden_state))
    return np.stack(encoder), np.stack(decoder), np.stack(cross)


def test_encoder_decoder_without_a_target_reads_its_greedy_translation(translator: tuple) -> None:
    model, tok = translator
    source = torch.tensor([tok.encode("four five six")])
    greedy = tformer.generate(model, source, max_new_tokens=2 * source.shape[1] + 10)[0].tolist()
    views = capture_attention(model, tok, "four five six")
    assert views[1].query_tokens == readable_tokens(tok, greedy)
    assert views[2].weights.shape[2:] == (len(greedy), source.shape[1])
    _rows_sum_to_one(views[2].weights)


def _rnn_alignment(model, tok, source: str, target: list[int]) -> np.ndarray:
    """The RNN's own output_attentions for (source, decoder ids): (1 layer, 1 head, target, source)."""
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([tok.encode(source)]), decoder_input_ids=torch.tensor([target]),
                    output_attentions=True)
    (cross,) = out.cross_attentions
    return cross[0][None].numpy()


def test_rnn_has_one_view_its_cross_attention_equal_to_its_output_attentions(rnn: tuple) -> None:
    model, tok = rnn
    views = capture_attention(model, tok, "one two three", target="eins zwei drei")
    assert [v.name for v in views] == ["cross-attention"]  # no self-attention layers: no empty views
    (cross,) = views
    assert cross.query_tokens == ["[BOS]", "eins", "zwei", "drei", "[EOS]"]
    assert cross.key_tokens == ["one", "two", "three"]
    assert cross.weights.shape == (1, 1, 5, 3)
    _rows_sum_to_one(cross.weights)
    assert np.ptp(cross.weights, axis=-1).max() > 0.05  # not uniform rows
    target = [tok.bos_token_id, *tok.encode("eins zwei drei", add_special_tokens=False), tok.eos_token_id]
    np.testing.assert_array_equal(cross.weights, _rnn_alignment(model, tok, "one two three", target))


def test_rnn_without_a_target_reads_its_greedy_translation(rnn: tuple) -> None:
    model, tok = rnn
    source = torch.tensor([tok.encode("four five six")])
    greedy = tformer.generate(model, source, max_new_tokens=2 * source.shape[1] + 10)[0].tolist()
    (cross,) = capture_attention(model, tok, "four five six")
    assert cross.query_tokens == readable_tokens(tok, greedy)
    np.testing.assert_array_equal(cross.weights, _rnn_alignment(model, tok, "four five six", greedy))


def test_readable_tokens_keep_special_tokens_and_show_whitespace(gpt: tuple) -> None:
    _, tok = gpt
    ids = [tok.eos_token_id, *tok.encode("a\n cat")]
    shown = readable_tokens(tok, ids)
    assert shown[0] == "<|endoftext|>"
    assert all(token.strip() for token in shown)  # nothing invisible: a bare space or newline gets a symbol
    assert "↵" in "".join(shown)


@pytest.mark.parametrize("family, kwargs, message", [
    ("gpt", dict(pair="b"), "a sentence pair is for BERT models"),
    ("bert", dict(target="b"), "a target text is for encoder-decoder models"),
    ("rnn", dict(pair="b"), "a sentence pair is for BERT models; this model is rnn"),
    ("gpt", dict(text="   "), "the text is empty"),
    ("gpt", dict(text="the cat sat " * 200), r"the text is \d+ tokens long but the model's position table holds"),
    ("translator", dict(text="one two three " * 100), r"the source is \d+ tokens long"),
])
def test_wrong_inputs_are_one_line_errors(request: pytest.FixtureRequest, family: str, kwargs: dict,
                                          message: str) -> None:
    model, tok = request.getfixturevalue(family)
    text = kwargs.pop("text", "the cat")
    with pytest.raises(ValueError, match=message) as error:
        capture_attention(model, tok, text, **kwargs)
    assert "\n" not in str(error.value)
