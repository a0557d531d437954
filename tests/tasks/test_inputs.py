"""Fine-tuning input layouts, token by token: BERT's [CLS] A [SEP] B [SEP] with token types, GPT-1's start /
delimiter / extract transformations (similarity in both orders), and growing a model for the added tokens."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.config import ModelConfig
from tformer.tasks.inputs import (
    GPT_SPECIAL_TOKENS,
    BertInputs,
    GPTInputs,
    add_gpt_special_tokens,
    input_layout,
    resize_token_embeddings,
)

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "is it raining", "yes it is", "no"]


@pytest.fixture
def words() -> tformer.Tokenizer:
    return tformer.Tokenizer.train(iter(TEXTS), kind="word")


def _tokens(tokenizer: tformer.Tokenizer, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [tokenizer.id_to_token(int(i)) for i, m in zip(ids, mask, strict=True) if m]


# ---- GPT-1 ------------------------------------------------------------------------------------------------------

def test_gpt_classification_and_entailment_layouts(words: tformer.Tokenizer) -> None:
    special = add_gpt_special_tokens(words)
    layout = GPTInputs(words)
    assert layout.special == special
    single = layout.classification(["the cat sat", "no"])
    assert single.keys() == {"input_ids", "attention_mask"}
    assert _tokens(words, single["input_ids"][0], single["attention_mask"][0]) == [
        "<start>", "the", "cat", "sat", "<extract>"]
    assert _tokens(words, single["input_ids"][1], single["attention_mask"][1]) == ["<start>", "no", "<extract>"]
    assert single["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    assert single["input_ids"][1, 3:].tolist() == [words.pad_token_id] * 2
    pair = layout.entailment(["is it raining"], ["yes"])
    assert _tokens(words, pair["input_ids"][0], pair["attention_mask"][0]) == [
        "<start>", "is", "it", "raining", "<delim>", "yes", "<extract>"]
    assert torch.equal(layout.classification(["is it raining"], ["yes"])["input_ids"], pair["input_ids"])


def test_gpt_similarity_has_both_orders(words: tformer.Tokenizer) -> None:
    add_gpt_special_tokens(words)
    batch = GPTInputs(words).similarity(["the cat", "a dog ran"], ["sat", "no"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 2, 7)
    rows = [[_tokens(words, batch["input_ids"][i, k], batch["attention_mask"][i, k]) for k in range(2)]
            for i in range(2)]
    assert rows[0] == [["<start>", "the", "cat", "<delim>", "sat", "<extract>"],
                       ["<start>", "sat", "<delim>", "the", "cat", "<extract>"]]
    assert rows[1] == [["<start>", "a", "dog", "ran", "<delim>", "no", "<extract>"],
                       ["<start>", "no", "<delim>", "a", "dog", "ran", "<extract>"]]
    assert batch["attention_mask"][0].tolist() == [[1, 1, 1, 1, 1, 1, 0]] * 2


def test_gpt_multiple_choice_runs_the_context_with_each_answer(words: tformer.Tokenizer) -> None:
    add_gpt_special_tokens(words)
    batch = GPTInputs(words).multiple_choice(["is it raining", "the cat"], [["yes", "no"], ["sat", "ran in the park"]])
    assert batch["input_ids"].shape == (2, 2, 9)
    seen = [[_tokens(words, batch["input_ids"][i, k], batch["attention_mask"][i, k]) for k in range(2)]
            for i in range(2)]
    assert seen == [
        [["<start>", "is", "it", "raining", "<delim>", "yes", "<extract>"],
         ["<start>", "is", "it", "raining", "<delim>", "no", "<extract>"]],
        [["<start>", "the", "cat", "<delim>", "sat", "<extract>"],
         ["<start>", "the", "cat", "<delim>", "ran", "in", "the", "park", "<extract>"]],
    ]


def test_gpt_truncation_cuts_the_longest_text_and_keeps_the_special_tokens(words: tformer.Tokenizer) -> None:
    add_gpt_special_tokens(words)
    batch = GPTInputs(words, max_length=8).entailment(["the cat sat on the mat"], ["yes it is"])
    assert _tokens(words, batch["input_ids"][0], batch["attention_mask"][0]) == [
        "<start>", "the", "cat", "sat", "<delim>", "yes", "it", "<extract>"]


def test_gpt_layout_feeds_the_task_models(words: tformer.Tokenizer) -> None:
    torch.manual_seed(0)
    config = ModelConfig.preset("gpt1-tiny", vocab_size=words.vocab_size, task="multiple-choice")
    model = tformer.build_model(config).eval()
    special = add_gpt_special_tokens(words, model)
    assert model.config.extract_token_id == special.extract == model.backbone.config.extract_token_id
    layout = input_layout(model, words)
    assert isinstance(layout, GPTInputs) and layout.max_length == 64
    batch = layout.multiple_choice(["is it raining", "the cat"], [["yes", "no", "is"], ["sat", "ran in the park", "a"]])
    assert model(**batch, labels=torch.tensor([0, 1])).logits.shape == (2, 3)
    similar = tformer.models.with_task_head(model, "sequence-classification").eval()
    pairs = layout.similarity(["the cat"], ["a dog ran"])
    swapped = {key: value.flip(1) for key, value in pairs.items()}
    torch.testing.assert_close(similar(**pairs).logits, similar(**swapped).logits)


def test_adding_the_gpt_tokens_grows_the_embedding_and_the_tied_head(words: tformer.Tokenizer) -> None:
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=words.vocab_size, bos_token_id=None,
                                                   eos_token_id=None))
    old = model.decoder.embeddings.token.weight.detach().clone()
    special = add_gpt_special_tokens(words, model)
    assert words.vocab_size == old.size(0) + 3 == model.config.vocab_size
    assert (special.start, special.delimiter, special.extract) == tuple(range(old.size(0), old.size(0) + 3))
    assert [words.id_to_token(i) for i in range(old.size(0), words.vocab_size)] == list(GPT_SPECIAL_TOKENS)
    weight = model.decoder.embeddings.token.weight
    assert torch.equal(weight[:-3], old) and model.lm_head.weight is weight
    assert 0.005 < float(weight[-3:].detach().std()) < 0.05  # drawn like the rest: Normal(0, init_std=0.02)
    out = model(torch.tensor([[special.start, 5, special.extract]]))
    assert out.logits.shape == (1, 3, words.vocab_size)
    again = add_gpt_special_tokens(words, model)  # idempotent
    assert again == special and model.config.vocab_size == words.vocab_size


def test_resize_bert_grows_the_masked_lm_bias_too() -> None:
    torch.manual_seed(0)
    bert = tformer.build_model(ModelConfig.preset("bert-tiny"))
    bias = bert.mlm_head.bias.detach().clone()
    resize_token_embeddings(bert, 105)
    assert bert.config.vocab_size == 105 and bert.mlm_head.decoder.weight is bert.encoder.embeddings.token.weight
    assert torch.equal(bert.mlm_head.bias[:99], bias) and not bert.mlm_head.bias[99:].any()
    assert bert(torch.tensor([[2, 104, 3]])).logits.shape == (1, 3, 105)


# ---- BERT -------------------------------------------------------------------------------------------------------

def _bert_tokenizers() -> list[tformer.Tokenizer]:
    wordpiece = tformer.Tokenizer.train(iter(TEXTS), kind="wordpiece")  # [CLS]/[SEP] from its post-processor
    by_hand = tformer.Tokenizer.train(iter(TEXTS), kind="word", special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    return [wordpiece, by_hand]


@pytest.mark.parametrize("tokenizer", _bert_tokenizers(), ids=["post-processor", "by-hand"])
def test_bert_layouts(tokenizer: tformer.Tokenizer) -> None:
    layout = BertInputs(tokenizer)
    pair = layout.entailment(["is it raining", "no"], ["yes", "the cat sat"])
    assert _tokens(tokenizer, pair["input_ids"][0], pair["attention_mask"][0]) == [
        "[CLS]", "is", "it", "raining", "[SEP]", "yes", "[SEP]"]
    assert pair["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert pair["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 1, 1]
    single = layout.classification(["the cat", "no"])
    assert _tokens(tokenizer, single["input_ids"][0], single["attention_mask"][0]) == ["[CLS]", "the", "cat", "[SEP]"]
    assert single["attention_mask"][1].tolist() == [1, 1, 1, 0] and not single["token_type_ids"].any()
    assert torch.equal(layout.similarity(["is it raining", "no"], ["yes", "the cat sat"])["input_ids"],
                       pair["input_ids"])  # BERT reads a pair once, in the order given
    choices = layout.multiple_choice(["the cat"], [["sat", "ran in the park"]])
    assert choices["input_ids"].shape == choices["token_type_ids"].shape == (1, 2, 9)
    assert _tokens(tokenizer, choices["input_ids"][0, 1], choices["attention_mask"][0, 1]) == [
        "[CLS]", "the", "cat", "[SEP]", "ran", "in", "the", "park", "[SEP]"]
    assert choices["token_type_ids"][0, 0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]
    cut = BertInputs(tokenizer, max_length=8).entailment(["the cat sat on the mat"], ["yes it"])
    assert _tokens(tokenizer, cut["input_ids"][0], cut["attention_mask"][0]) == [
        "[CLS]", "the", "cat", "sat", "[SEP]", "yes", "it", "[SEP]"]


def test_bert_layout_feeds_the_task_model() -> None:
    tokenizer = _bert_tokenizers()[0]
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset("bert-tiny", vocab_size=tokenizer.vocab_size,
                                                   task="multiple-choice")).eval()
    layout = input_layout(model, tokenizer, max_length=16)
    assert isinstance(layout, BertInputs)
    batch = layout.multiple_choice(["is it raining"], [["yes", "no", "the cat sat"]])
    assert model(**batch).logits.shape == (1, 3)


# ---- errors -----------------------------------------------------------------------------------------------------

def test_bad_layout_input_is_named(words: tformer.Tokenizer) -> None:
    with pytest.raises(ValueError, match=r"'<start>' is not in the tokenizer; call tformer.tasks.add_gpt_special"):
        GPTInputs(words)
    add_gpt_special_tokens(words)
    layout = GPTInputs(words)
    with pytest.raises(ValueError, match=r"2 vs 1 texts for premises and hypotheses; give one of each per example"):
        layout.entailment(["a", "b"], ["c"])
    with pytest.raises(ValueError, match=r"example 1 has 3 choices but example 0 has 2; give every example"):
        layout.multiple_choice(["a", "b"], [["x", "y"], ["x", "y", "z"]])
    with pytest.raises(ValueError, match=r"take lists of texts, got a single string; wrap it in a list"):
        layout.classification("the cat")
    with pytest.raises(ValueError, match=r"max_length=3 leaves no room"):
        GPTInputs(words, max_length=3)
    bpe = tformer.Tokenizer.train(iter(TEXTS), kind="bpe", vocab_size=300)
    with pytest.raises(ValueError, match=r"BERT's layout needs \[CLS\] and \[SEP\] tokens"):
        BertInputs(bpe)
    with pytest.raises(ValueError, match=r"tokens=\('<a>', '<a>', '<b>'\) must be three different strings"):
        add_gpt_special_tokens(words, tokens=("<a>", "<a>", "<b>"))
    encdec = tformer.build_model(ModelConfig.preset("transformer-tiny"))
    with pytest.raises(ValueError, match=r"fine-tuning layouts exist for gpt and bert models, not family="):
        input_layout(encdec, words)
