"""Next-sentence prediction: blank-line documents, honest negatives from other documents, BERT's pair layout."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tformer.data.nsp import (
    PretrainingCollator,
    encode_documents,
    make_nsp_examples,
    split_documents,
    truncate_pair_lengths,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


def sentence(doc: int, index: int) -> list[int]:
    """Every token of sentence `index` of document `doc` is 1000 + 100 * doc + index: provenance survives cuts."""
    return [1000 + 100 * doc + index] * (1 + (3 * doc + index) % 5)


def provenance(token: int) -> tuple[int, int]:
    return divmod(token - 1000, 100)


def corpus(docs: int = 40, sentences: int = 50) -> list[list[list[int]]]:
    return [[sentence(d, s) for s in range(sentences - d % 3)] for d in range(docs)]


def test_split_documents_on_blank_lines() -> None:
    text = "\n\nFirst doc, one.\r\nFirst doc, two.\n   \n\n\nSecond doc.\t\n \nThird\u2028still third.\nlast"
    assert split_documents(text) == [["First doc, one.", "First doc, two."], ["Second doc."],
                                     ["Third\u2028still third.", "last"]]
    assert split_documents("\n \n") == []


def test_encode_documents_drops_empty_sentences_and_documents() -> None:
    encode = lambda text: [ord(c) for c in text if c != "#"]  # noqa: E731
    assert encode_documents([["ab", "#"], ["#"], ["c"]], encode) == [[[97, 98]], [[99]]]


def test_negatives_come_from_other_documents_and_positives_are_true_successors() -> None:
    examples = make_nsp_examples(corpus(), cls_id=CLS, sep_id=SEP, max_length=64, seed=0)
    assert len(examples) == sum(len(d) - 1 for d in corpus())
    labels = [e["next_sentence_label"] for e in examples]
    assert abs(sum(labels) / len(labels) - 0.5) < 0.04
    sources_of_negatives = set()
    for example in examples:
        ids = example["input_ids"]
        first_sep = ids.index(SEP)
        doc_a, index_a = provenance(ids[1])
        doc_b, index_b = provenance(ids[first_sep + 1])
        if example["next_sentence_label"] == 0:
            assert (doc_b, index_b) == (doc_a, index_a + 1)
        else:
            assert doc_b != doc_a
            sources_of_negatives.add(doc_b)
    assert len(sources_of_negatives) == 40  # negatives are drawn from all the other documents


def test_every_sentence_but_the_last_of_a_document_is_an_a_once() -> None:
    examples = make_nsp_examples(corpus(5, 7), cls_id=CLS, sep_id=SEP, max_length=64, seed=1)
    firsts = [provenance(e["input_ids"][1]) for e in examples]
    assert firsts == [(d, s) for d in range(5) for s in range(7 - d % 3 - 1)]


def test_layout_and_token_types_are_exact() -> None:
    docs = [[[10, 11, 12], [20, 21]], [[30], [40, 41, 42, 43]]]
    examples = make_nsp_examples(docs, cls_id=CLS, sep_id=SEP, max_length=32, seed=0,
                                 random_next_probability=0.0)
    assert examples[0] == {"input_ids": [CLS, 10, 11, 12, SEP, 20, 21, SEP],
                           "token_type_ids": [0, 0, 0, 0, 0, 1, 1, 1], "next_sentence_label": 0}
    assert examples[1]["input_ids"] == [CLS, 30, SEP, 40, 41, 42, 43, SEP]
    assert examples[1]["token_type_ids"] == [0, 0, 0, 1, 1, 1, 1, 1]
    negatives = make_nsp_examples(docs, cls_id=CLS, sep_id=SEP, max_length=32, seed=0, random_next_probability=1)
    assert all(e["next_sentence_label"] == 1 for e in negatives)
    assert negatives[0]["input_ids"][5:-1] in ([30], [40, 41, 42, 43])


def test_max_length_is_respected_by_trimming_the_longer_side_from_the_end() -> None:
    docs = [[list(range(100, 130)), list(range(200, 205))], [[7, 7], [8, 8]]]
    example = make_nsp_examples(docs, cls_id=CLS, sep_id=SEP, max_length=16, random_next_probability=0)[0]
    assert example["input_ids"] == [CLS, *range(100, 108), SEP, *range(200, 205), SEP]
    assert len(example["input_ids"]) == len(example["token_type_ids"]) == 16
    for e in make_nsp_examples(corpus(), cls_id=CLS, sep_id=SEP, max_length=7, seed=2):
        assert len(e["input_ids"]) <= 7 and len(e["token_type_ids"]) == len(e["input_ids"])
        assert e["input_ids"][0] == CLS and e["input_ids"][-1] == SEP and e["input_ids"].count(SEP) == 2


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 80))
def test_truncate_pair_lengths_matches_bert_token_by_token_loop(a: int, b: int, budget: int) -> None:
    ref_a, ref_b = a, b
    while ref_a + ref_b > budget:  # google-research/bert truncate_seq_pair
        if ref_a > ref_b:
            ref_a -= 1
        else:
            ref_b -= 1
    assert truncate_pair_lengths(a, b, budget) == (ref_a, ref_b)


def test_same_seed_same_examples() -> None:
    run = lambda seed: make_nsp_examples(corpus(10, 10), cls_id=CLS, sep_id=SEP, max_length=32, seed=seed)  # noqa: E731
    assert run(3) == run(3) and run(3) != run(4)


def test_corpora_that_cannot_give_honest_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 non-empty documents.* got 1"):
        make_nsp_examples([[[5], [6], [7]], []], cls_id=CLS, sep_id=SEP, max_length=16)
    with pytest.raises(ValueError, match="no document among 2 has two sentences"):
        make_nsp_examples([[[5]], [[6]]], cls_id=CLS, sep_id=SEP, max_length=16)
    with pytest.raises(ValueError, match="max_length=4"):
        make_nsp_examples(corpus(2, 2), cls_id=CLS, sep_id=SEP, max_length=4)


def test_pretraining_collator_feeds_bert() -> None:
    from tformer import build_model
    from tformer.config import ModelConfig

    vocab = 99
    docs = [[[(7 * d + 3 * s + k) % 90 + 5 for k in range(3 + (d + s) % 9)] for s in range(6)] for d in range(4)]
    examples = make_nsp_examples(docs, cls_id=CLS, sep_id=SEP, max_length=24, seed=0)
    collate = PretrainingCollator(pad_token_id=PAD, mask_token_id=MASK, cls_id=CLS, sep_id=SEP, vocab_size=vocab,
                                  special_ids=(UNK,), mlm_probability=0.3, seed=0)
    batch = collate(examples)
    n, longest = len(examples), max(len(e["input_ids"]) for e in examples)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        assert batch[key].shape == (n, longest) and batch[key].dtype == torch.long
    assert batch["next_sentence_label"].tolist() == [e["next_sentence_label"] for e in examples]
    for row, e in enumerate(examples):
        length = len(e["input_ids"])
        assert batch["token_type_ids"][row].tolist() == e["token_type_ids"] + [0] * (longest - length)
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (longest - length)
        original = torch.tensor(e["input_ids"])
        chosen = batch["labels"][row, :length] != -100
        assert not chosen[(original == CLS) | (original == SEP)].any()
        assert torch.equal(batch["labels"][row, :length][chosen], original[chosen])
        assert (batch["labels"][row, length:] == -100).all() and (batch["input_ids"][row, length:] == PAD).all()
    assert (batch["labels"] != -100).sum() > 0

    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("bert-tiny", vocab_size=vocab))
    output = model(**batch)
    assert output.logits.shape == (n, longest, vocab) and output.nsp_logits.shape == (n, 2)
    assert torch.isfinite(output.loss)
