"""Attention weights of one input, as named views (queries x keys with their token strings) for any family.

BERT reads [CLS] A [SEP] (B [SEP]): one "self-attention" view, and for a pair also "A -> B" (A's tokens asking,
B's answering: a sub-block of the same weights) and "B -> A". GPT: one causal "self-attention" view; with a
T-DMCA pattern (`attention_pattern="LMLML"`) a local layer's weights are N x N (banded), a memory-compressed layer's
N x (first + N // c), its keys labelled by the tokens each slot summarises ("tokens 0–2: the cat sat"). The
encoder-decoder reads `text` as the source and `target` (or its own greedy translation) in the decoder:
"encoder self-attention", "decoder self-attention" and "cross-attention" (decoder tokens ask, source tokens answer).
RNNsearch (family rnn) has no self-attention: its one view is "cross-attention", the alignment (1 layer, 1 head).
"""

from __future__ import annotations

import functools

import numpy as np
import tokenizers
import torch
from torch import Tensor

from tformer.generation import generate
from tformer.generation.state import is_encoder_decoder
from tformer.layers.compressed_attention import compressed_key_labels
from tformer.models import BERT, GPT, TransformerModel
from tformer.models.base import check_encoded_text
from tformer.models.heads import TaskModel
from tformer.tokenization import Tokenizer
from tformer.viz.page import AttentionView


def capture_attention(model: TransformerModel, tokenizer: Tokenizer, text: str, pair: str | None = None, *,
                      target: str | None = None) -> list[AttentionView]:
    """The model's attention weights on `text` (and `pair`, BERT; `target`, encoder-decoder) as views whose
    weights are (layers, heads, queries, keys) numpy arrays (one (heads, queries, keys) array per layer where the
    layers' keys differ: a T-DMCA's compressed layers), each row a softmax that sums to 1 (sub-blocks of a pair
    excepted)."""
    backbone = model.backbone if isinstance(model, TaskModel) else model
    if pair is not None and not isinstance(backbone, BERT):
        raise ValueError(f"a sentence pair is for BERT models; this model is {backbone.config.family}")
    if target is not None and not is_encoder_decoder(backbone):
        raise ValueError(f"a target text is for encoder-decoder models; this model is {backbone.config.family}")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            if isinstance(backbone, BERT):
                return _bert_views(backbone, tokenizer, text, pair)
            if isinstance(backbone, GPT):
                return [_gpt_view(backbone, tokenizer, text)]
            if is_encoder_decoder(backbone):  # EncoderDecoder, RNNSearch
                return _encoder_decoder_views(backbone, tokenizer, text, target)
    finally:
        backbone.train(was_training)
    raise ValueError(f"cannot capture attention of a {type(model).__name__}: expected a BERT, GPT, EncoderDecoder "
                     "or RNNSearch")


def encode_checked(tokenizer: Tokenizer, model: TransformerModel, text: str, what: str,
                   pair: str | None = None) -> tokenizers.Encoding:
    """The tokenizer's encoding of a text (or pair) that this model can read: not empty, within its positions."""
    for part, name in ((text, what), (pair, f"second {what}")):
        if part is not None and not part.strip():
            raise ValueError(f"the {name} is empty: give some text")
    try:
        encoding = tokenizer.backend.encode(text, pair)
    except Exception as error:  # the Rust side raises a bare Exception
        raise ValueError(f"cannot encode {text[:40]!r}: {error}") from None
    check_encoded_text(encoding.ids, model.config, what, text)
    return encoding


def readable_tokens(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Token strings to show: byte-level 'Ġ' and SentencePiece '▁' become a leading space, WordPiece keeps '##',
    special tokens stay as they are, and a token of only spaces or newlines shows them as '␣' and '↵'."""
    decoder = type(tokenizer.backend.decoder).__name__
    specials = set(tokenizer.special_tokens)
    shown = []
    for token_id in ids:
        token = tokenizer.id_to_token(token_id) or f"<{token_id}>"
        if token not in specials:
            if decoder == "ByteLevel":
                raw = bytes(_byte_of_char().get(char, ord("?")) for char in token)
                token = raw.decode("utf-8", errors="replace")
            elif decoder == "Metaspace":
                token = token.replace("▁", " ")
            if not token.strip():
                token = token.replace(" ", "␣").replace("\n", "↵") or "∅"
        shown.append(token)
    return shown


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the printable stand-in of each byte ('Ġ' is the space) -> the byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [byte for byte in range(256) if byte not in kept]  # control bytes and space: shifted past 255
    stand_ins = {byte: byte for byte in kept} | {byte: 256 + n for n, byte in enumerate(moved)}
    return {chr(code): byte for byte, code in stand_ins.items()}


def _ids(ids: list[int], model: TransformerModel) -> Tensor:
    return torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)


def _stack(attentions: tuple[Tensor, ...] | None) -> np.ndarray:
    """Per-layer (1, heads, queries, keys) weights -> one (layers, heads, queries, keys) float32 array."""
    assert attentions is not None
    return torch.stack([a[0] for a in attentions]).float().cpu().numpy()


def _gpt_view(model: GPT, tokenizer: Tokenizer, text: str) -> AttentionView:
    """GPT's causal view. With a T-DMCA pattern each layer is named by its kind, and a memory-compressed layer's
    keys are its slots (`compressed_key_labels`: "first (token 0: the)", "tokens 0–2: the cat sat", ...), so where
    the layers' key counts differ the weights are one (heads, N, keys) array per layer."""
    encoding = encode_checked(tokenizer, model, text, "text")
    attentions = [block.self_attention for block in model.decoder.blocks]
    compressions = {layer: attention.compress.compression for layer, attention in enumerate(attentions)
                    if attention.kind == "compressed"}
    needed = max(compressions.values(), default=1)
    if len(encoding.ids) < needed:
        raise ValueError(f"the text is {len(encoding.ids)} tokens long but this model's compressed layers read groups "
                         f"of {needed} (compression={needed}): give a text of at least {needed} tokens")
    out = model(_ids(encoding.ids, model), output_attentions=True)
    tokens = readable_tokens(tokenizer, encoding.ids)
    if all(attention.kind == "full" for attention in attentions):
        return AttentionView("self-attention", tokens, tokens, _stack(out.attentions))
    # byte-level, SentencePiece and character pieces carry their own spaces: a slot's text is them joined as they are
    separator = "" if type(tokenizer.backend.decoder).__name__ in ("ByteLevel", "Metaspace", "Fuse") else " "
    layer_keys = {layer: compressed_key_labels(tokens, c, separator=separator) for layer, c in compressions.items()}
    assert out.attentions is not None
    weights = [a[0].float().cpu().numpy() for a in out.attentions]
    same_keys = len({w.shape for w in weights}) == 1
    return AttentionView("self-attention", tokens, tokens, np.stack(weights) if same_keys else weights, layer_keys,
                         {layer: attention.kind for layer, attention in enumerate(attentions)})


def _bert_views(model: BERT, tokenizer: Tokenizer, text: str, pair: str | None) -> list[AttentionView]:
    encoding = encode_checked(tokenizer, model, text, "text", pair)
    types = torch.tensor([encoding.type_ids], dtype=torch.long, device=next(model.parameters()).device)
    if pair is None or model.config.type_vocab_size < 2:
        types = None  # one sentence, or a model without a sentence-B embedding
    out = model(_ids(encoding.ids, model), token_type_ids=types, output_attentions=True)
    weights, tokens = _stack(out.attentions), readable_tokens(tokenizer, encoding.ids)
    views = [AttentionView("self-attention", tokens, tokens, weights)]
    if pair is not None:
        # sequence_ids: 0 for A's own tokens, 1 for B's, None for [CLS] and [SEP]
        a = [i for i, s in enumerate(encoding.sequence_ids) if s == 0]
        b = [i for i, s in enumerate(encoding.sequence_ids) if s == 1]
        for name, rows, cols in (("A -> B", a, b), ("B -> A", b, a)):
            block = weights[:, :, rows][:, :, :, cols]
            views.append(AttentionView(name, [tokens[i] for i in rows], [tokens[i] for i in cols], block))
    return views


def _encoder_decoder_views(model: TransformerModel, tokenizer: Tokenizer, text: str,
                           target: str | None) -> list[AttentionView]:
    source = encode_checked(tokenizer, model, text, "source").ids
    config = model.config
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start is None:
        raise ValueError("the model's config has no decoder_start_token_id (nor bos_token_id) to start the decoder")
    if target is None:  # the model's own greedy translation, as `tformer translate` prints it
        budget = min(2 * len(source) + 10, config.max_positions)
        decoder = generate(model, _ids(source, model), max_new_tokens=budget)[0].tolist()
    else:
        if not target.strip():
            raise ValueError("the target is empty: give the translation to read, or leave --target out")
        end = [] if config.eos_token_id is None else [config.eos_token_id]
        decoder = [start, *tokenizer.encode(target, add_special_tokens=False), *end]
        if len(decoder) > config.max_positions:
            raise ValueError(f"the target is {len(decoder)} tokens long (with start and end) but the model's "
                             f"position table holds {config.max_positions}: shorten it")
    out = model(_ids(source, model), decoder_input_ids=_ids(decoder, model), output_attentions=True)
    source_tokens, target_tokens = readable_tokens(tokenizer, source), readable_tokens(tokenizer, decoder)
    kinds = (("encoder self-attention", source_tokens, source_tokens, out.encoder_attentions),
             ("decoder self-attention", target_tokens, target_tokens, out.decoder_attentions),
             ("cross-attention", target_tokens, source_tokens, out.cross_attentions))
    # an RNN has no self-attention layers: only the views the model returns weights for
    return [AttentionView(name, queries, keys, _stack(weights)) for name, queries, keys, weights in kinds if weights]
