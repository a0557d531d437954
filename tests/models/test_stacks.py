"""The shared stacks: GPT, BERT and the encoder-decoder all run embeddings -> blocks -> final norm through
models/stacks.py, and what they return (hidden states, attentions) is what their stack returns."""

from __future__ import annotations

import torch

from tformer.config import ModelConfig
from tformer.models import BERT, GPT, EncoderDecoder
from tformer.models.stacks import DecoderStack, EncoderStack


def _ids(length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 99, (2, length), generator=torch.Generator().manual_seed(seed))


def _equal(ours: tuple[torch.Tensor, ...] | None, stack: tuple[torch.Tensor, ...] | None, count: int) -> None:
    assert ours is not None and stack is not None and len(ours) == len(stack) == count
    assert all(torch.equal(a, b) for a, b in zip(ours, stack, strict=True))


def test_gpt_is_a_decoder_stack_and_its_lm_head() -> None:
    model = GPT(ModelConfig.preset("gpt2-tiny")).eval()
    ids = _ids(6, 1)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    with torch.no_grad():
        out = model(ids, mask, output_hidden_states=True, output_attentions=True)
        stack = model.decoder(ids, mask, output_hidden_states=True, output_attentions=True)
    assert isinstance(model.decoder, DecoderStack) and stack.cross_attentions is None
    _equal(out.hidden_states, stack.hidden_states, model.config.n_layers + 1)
    _equal(out.attentions, stack.attentions, model.config.n_layers)
    assert stack.hidden_states is not None and torch.equal(stack.hidden_states[-1], stack.last_hidden_state)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model.lm_head(stack.last_hidden_state), rtol=0, atol=1e-6)


def test_bert_is_an_encoder_stack_with_pooler_and_heads() -> None:
    model = BERT(ModelConfig.preset("bert-tiny", pooler=True, pretraining_heads=True)).eval()
    ids, types = _ids(6, 2), torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.no_grad():
        out = model(ids, token_type_ids=types, output_hidden_states=True, output_attentions=True)
        stack = model.encoder(ids, token_type_ids=types, output_hidden_states=True, output_attentions=True)
    assert isinstance(model.encoder, EncoderStack)
    _equal(out.hidden_states, stack.hidden_states, model.config.n_layers + 1)
    _equal(out.attentions, stack.attentions, model.config.n_layers)
    assert torch.equal(out.last_hidden_state, stack.last_hidden_state)
    assert model.mlm_head is not None and out.logits is not None
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model.mlm_head(stack.last_hidden_state), rtol=0, atol=1e-6)


def test_encoder_decoder_is_both_stacks_and_its_lm_head() -> None:
    model = EncoderDecoder(ModelConfig.preset("transformer-tiny", final_logits_bias=True)).eval()
    source, target = _ids(7, 3), _ids(5, 4)
    source_mask = torch.ones_like(source)
    source_mask[1, 4:] = 0
    with torch.no_grad():
        model.final_logits_bias.normal_()
        out = model(source, source_mask, decoder_input_ids=target, output_hidden_states=True,
                    output_attentions=True)
        encoded = model.encoder(source, source_mask, output_hidden_states=True, output_attentions=True)
        decoded = model.decoder(target, memory=encoded.last_hidden_state,
                                memory_mask=source_mask.bool()[:, None, None], output_hidden_states=True,
                                output_attentions=True)
        expected = model.lm_head(decoded.last_hidden_state) + model.final_logits_bias
    assert isinstance(model.encoder, EncoderStack) and isinstance(model.decoder, DecoderStack)
    layers = model.config.n_layers
    _equal(out.encoder_hidden_states, encoded.hidden_states, layers + 1)
    _equal(out.encoder_attentions, encoded.attentions, layers)
    _equal(out.decoder_hidden_states, decoded.hidden_states, model.config.decoder_layers + 1)
    _equal(out.decoder_attentions, decoded.attentions, model.config.decoder_layers)
    _equal(out.cross_attentions, decoded.cross_attentions, model.config.decoder_layers)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6)
