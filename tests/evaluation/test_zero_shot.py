"""Zero-shot scoring (GPT-1's heuristics): a continuation's log-probability equals the log-softmax chain of the
model's logits computed by hand, batched or not, on plain and patterned GPTs; a head rigged to prefer one verbaliser
scores that label's share; length normalisation flips an answer where it should; the prompts are the documented
ones; a model or option that cannot work is a one-line error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tformer.evaluation.continuation_scores import continuation_ids, score_continuations
from tformer.evaluation.zero_shot import candidate_scores, evaluate_zero_shot, load_causal_lm, predictions
from tformer.evaluation.zero_shot_prompts import zero_shot_prompts
from tformer.tasks.readers import ChoiceExample, read_copa

from .zero_shot_models import (
    SST2_DEV,
    distribution,
    preferring,
    rig,
    save,
    tiny_gpt,
    word_tokenizer,
    write_zero_shot_data,
)

PAIRS = [("the film was", " great"), ("it rained", " the man was sad"), ("he was", " very happy ."),
         ("the sun came out so", " he smiled")]


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zero_shot_data(tmp_path_factory.mktemp("zero-shot-data"))


def _by_hand(model, tokenizer, prompt: str, continuation: str) -> float:
    """log p(continuation | prompt): one forward per continuation token, log-softmax written out."""
    context = tokenizer.encode(prompt, add_special_tokens=False)
    answer = tokenizer.encode(continuation, add_special_tokens=False)
    total = 0.0
    for k, token in enumerate(answer):
        with torch.no_grad():
            logits = model(torch.tensor([context + answer[:k]])).logits[0, -1].double()
        top = logits.max()
        total += float(logits[token] - top - torch.log(torch.exp(logits - top).sum()))
    return total


@pytest.mark.parametrize("pattern", [None, "LMLML"])
def test_a_continuation_scores_the_log_softmax_chain_of_its_tokens_batched_or_not(tokenizer, pattern):
    extra = dict(n_layers=5, attention_pattern="LMLML", local_block_size=2, local_look_back=0, compression=2) \
        if pattern else {}
    model = tiny_gpt(tokenizer, **extra)
    expected = [_by_hand(model, tokenizer, prompt, continuation) for prompt, continuation in PAIRS]
    assert len({len(continuation_ids(tokenizer, p, c, 1024)[0]) for p, c in PAIRS}) > 1  # padding is exercised
    for batch_size in (1, 3, 16):
        scores = score_continuations(model, tokenizer, PAIRS, batch_size=batch_size)
        assert [s.tokens for s in scores] == [1, 4, 3, 2]
        for score, want in zip(scores, expected, strict=True):
            assert score.logprob == pytest.approx(want, abs=1e-4)
            assert score.mean == pytest.approx(want / score.tokens, abs=1e-4)


def test_a_pair_shorter_than_a_compression_group_is_padded_to_one(tokenizer):
    model = tiny_gpt(tokenizer, n_layers=2, attention_pattern="MF", compression=3)
    alone = score_continuations(model, tokenizer, [("the", " film")], batch_size=1)
    beside = score_continuations(model, tokenizer, [("the", " film"), *PAIRS], batch_size=8)
    assert alone[0].logprob == pytest.approx(beside[0].logprob, abs=1e-5)
    with torch.no_grad():  # the model alone refuses 2 tokens; one more after them changes nothing before them
        logits = model(torch.tensor([tokenizer.encode("the film was", add_special_tokens=False)])).logits[0, 0]
    film = tokenizer.token_to_id("film")
    assert alone[0].logprob == pytest.approx(float(logits.double().log_softmax(-1)[film]), abs=1e-5)


def test_a_prompt_too_long_for_the_positions_keeps_its_last_tokens(tokenizer):
    ids, answer = continuation_ids(tokenizer, "the film was great", " very good", max_positions=4)
    assert answer == 2 and ids == tokenizer.encode("was great very good", add_special_tokens=False)
    with pytest.raises(ValueError, match="is 2 tokens, and the model reads at most 2"):
        continuation_ids(tokenizer, "the film", " very good", max_positions=2)


@pytest.mark.parametrize(("word", "verbalizer", "share"), [("positive", None, 5 / 7), ("negative", None, 2 / 7),
                                                            ("positive", ["positive", "negative"], 2 / 7),
                                                            ("good", ["bad", "good"], 5 / 7)])
def test_a_head_rigged_to_one_verbaliser_scores_that_labels_share(tokenizer, data, tmp_path, word, verbalizer, share):
    folder = save(rig(tiny_gpt(tokenizer), preferring(tokenizer, word)), tokenizer, tmp_path / "rigged")
    result = evaluate_zero_shot("sst2", folder, data, verbalizer=verbalizer, batch_size=3)
    assert result.accuracy == pytest.approx(share) and result.chance == 0.5
    assert (result.examples, result.available, result.template) == (len(SST2_DEV), len(SST2_DEV), "{sentence} very")
    assert result.verbalizer == tuple(verbalizer or ("negative", "positive"))
    limited = evaluate_zero_shot("sst2", folder, data, max_examples=2, verbalizer=verbalizer)
    assert (limited.examples, limited.available) == (2, len(SST2_DEV))


def test_length_normalisation_flips_the_answer_where_the_sum_prefers_the_short_one(tokenizer, data, tmp_path):
    # every position: p(good) = 0.25, p(great) = 0.5; "good" sums to log 0.25 > 3 log 0.5 ("great great great"),
    # but its mean, log 0.25, is below the mean log 0.5 of the longer answer
    model = rig(tiny_gpt(tokenizer), distribution(tokenizer, {"good": 0.25, "great": 0.5}))
    example = ChoiceExample("the film was", ["good", "great great great"], 1)
    [[short, long]] = candidate_scores(model, tokenizer, zero_shot_prompts("commonsenseqa"), [example],
                                       "Question: {question}\nAnswer:")
    assert short.logprob == pytest.approx(math.log(0.25), abs=1e-5)
    assert long.logprob == pytest.approx(3 * math.log(0.5), abs=1e-5) and long.tokens == 3
    assert predictions([[short, long]], normalized=False) == [0]
    assert predictions([[short, long]], normalized=True) == [1]
    result = evaluate_zero_shot("commonsenseqa", save(model, tokenizer, tmp_path / "m"), data)
    # both dev answers are C ("great great great"): the mean picks it, the sum picks A ("good")
    assert (result.accuracy, result.accuracy_by_mean, result.accuracy_by_sum, result.chance) == (1.0, 1.0, 0.0, 0.2)
    assert result.normalized and result.examples == 2


def test_copa_is_asked_with_because_for_a_cause_and_so_for_an_effect(data):
    prompts = zero_shot_prompts("copa")
    effect, cause = read_copa(data / "copa/val.jsonl")
    assert prompts.prompt(effect, prompts.template) == "The sun came out so"
    assert prompts.prompt(cause, prompts.template) == "The man smiled because"
    assert prompts.continuations(cause, ()) == [" it rained.", " he was happy."]
    assert prompts.prompt(cause, "{premise}. What was the {question}?") == "The man smiled. What was the cause?"
    assert zero_shot_prompts("sst2").continuations(None, ("bad", "good")) == [" bad", " good"]


def test_a_run_folder_means_its_final_model(tokenizer, tmp_path):
    save(tiny_gpt(tokenizer), tokenizer, tmp_path / "run" / "final")
    (tmp_path / "run" / "recipe.yaml").write_text("name: x\n")
    model, _, folder = load_causal_lm(tmp_path / "run")
    assert folder == tmp_path / "run" / "final" and model.config.family == "gpt"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"template": "{sentence} {mood}"}, "has the field {mood}; sst2 templates may use {sentence}"),
    ({"template": "this film is"}, "leaves out {sentence}"),
    ({"template": "{sentence"}, "is not a format string"),
    ({"verbalizer": ["good"]}, "must be 2 different non-empty words"),
    ({"verbalizer": ["good", "good"]}, "must be 2 different non-empty words"),
    ({"max_examples": 0}, "max_eval_examples=0 must be at least 1"),
    ({"split": "test"}, "has no split 'test'"),
])
def test_bad_options_are_one_line_errors(tokenizer, data, tmp_path, kwargs, message):
    folder = save(tiny_gpt(tokenizer), tokenizer, tmp_path / "m")
    with pytest.raises(ValueError, match=None) as error:
        evaluate_zero_shot("sst2", folder, data, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_tasks_without_zero_shot_scoring_and_verbalisers_for_choices_are_refused(tokenizer, data, tmp_path):
    folder = save(tiny_gpt(tokenizer), tokenizer, tmp_path / "m")
    with pytest.raises(ValueError, match="rte has no zero-shot scoring; --zero-shot knows sst2, copa, commonsenseqa"):
        evaluate_zero_shot("rte", folder, data)
    with pytest.raises(ValueError, match="--verbalizer is for a classification task"):
        evaluate_zero_shot("copa", folder, data, verbalizer=["a", "b"])
    with pytest.raises(FileNotFoundError, match="has no dev_rand_split.jsonl"):
        evaluate_zero_shot("commonsenseqa", folder, tmp_path)


def test_an_answer_word_the_tokenizer_does_not_know_is_refused_and_the_mode_is_kept(tokenizer):
    from tformer.evaluation.continuation_scores import continuation_ids, score_continuations

    with pytest.raises(ValueError, match="' zzzunknown' has a piece this tokenizer does not know"):
        continuation_ids(tokenizer, "the film was", " zzzunknown", 64)
    model = tiny_gpt(tokenizer).train()
    score_continuations(model, tokenizer, PAIRS[:1])
    assert model.training  # scored with dropout off, handed back in the mode it came in
