"""Task heads on BERT and GPT: they learn (loss falls on a handful of examples), GPT-1's extract-token and
both-orders rules hold, the auxiliary LM loss is added with its weight, and bad input gets one clear error."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.config import ModelConfig
from tformer.models import (
    MultipleChoice,
    QuestionAnswering,
    SequenceClassification,
    TaskOutput,
    TokenClassification,
    with_task_head,
)
from tformer.models.heads import extract_positions

EXAMPLES, LENGTH, CHOICES = 8, 10, 3
FAMILIES = ("bert", "gpt")
# (task, the config fields it needs)
HEADS = {
    "classification": ("sequence-classification", {"num_labels": 3}),
    "regression": ("sequence-classification", {"num_labels": 1}),
    "multi-label": ("sequence-classification", {"num_labels": 4, "problem_type": "multi_label_classification"}),
    "multiple-choice": ("multiple-choice", {}),
    "token-classification": ("token-classification", {"num_labels": 5}),
    "question-answering": ("question-answering", {}),
}


def _config(family: str, task: str, **fields: object) -> ModelConfig:
    preset = "bert-tiny" if family == "bert" else "gpt1-tiny"
    return ModelConfig.preset(preset, task=task, dropout=0.0, attention_dropout=0.0, **fields)


def _model(family: str, task: str, seed: int = 0, **fields: object) -> tformer.TransformerModel:
    torch.manual_seed(seed)
    return tformer.build_model(_config(family, task, **fields))


def _inputs(head: str, family: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    shape = (EXAMPLES, CHOICES, LENGTH) if head == "multiple-choice" else (EXAMPLES, LENGTH)
    ids = torch.randint(5, 99, shape, generator=generator)
    mask = torch.ones_like(ids)  # two padded examples
    mask[1, ..., 6:] = 0
    mask[2, ..., 8:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if family == "bert":
        types = torch.zeros_like(ids)
        types[..., LENGTH // 2:] = 1
        batch["token_type_ids"] = types
    if head == "classification":
        batch["labels"] = torch.randint(0, 3, (EXAMPLES,), generator=generator)
    elif head == "regression":
        batch["labels"] = torch.randn(EXAMPLES, generator=generator)
    elif head == "multi-label":
        batch["labels"] = torch.randint(0, 2, (EXAMPLES, 4), generator=generator).float()
    elif head == "multiple-choice":
        batch["labels"] = torch.randint(0, CHOICES, (EXAMPLES,), generator=generator)
    elif head == "token-classification":
        batch["labels"] = torch.randint(0, 5, shape, generator=generator).masked_fill(mask == 0, -100)
    else:
        batch["start_positions"] = torch.randint(0, 6, (EXAMPLES,), generator=generator)
        batch["end_positions"] = batch["start_positions"] + torch.randint(0, 3, (EXAMPLES,), generator=generator)
    return batch


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", list(HEADS))
def test_loss_falls_when_overfitting_a_handful_of_examples(family: str, head: str) -> None:
    task, fields = HEADS[head]
    model = _model(family, task, **fields).train()
    batch = _inputs(head, family, torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def task_loss(out: TaskOutput) -> torch.Tensor:  # GPT adds 0.5 * the auxiliary LM loss
        return out.loss - (0.5 * out.lm_loss if out.lm_loss is not None else 0)

    with torch.no_grad():
        first = model(**batch)
    assert (first.lm_loss is not None) == (family == "gpt")
    start, start_total = float(task_loss(first)), float(first.loss)
    for _ in range(40):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = model(**batch)
    assert float(task_loss(last)) < 0.5 * start, (start, float(task_loss(last)))
    assert float(last.loss) < start_total


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shapes(family: str) -> None:
    ids = torch.randint(5, 99, (2, 7))
    assert _model(family, "sequence-classification", num_labels=3)(ids).logits.shape == (2, 3)
    assert _model(family, "token-classification", num_labels=5)(ids).logits.shape == (2, 7, 5)
    assert _model(family, "multiple-choice")(ids.view(2, 1, 7).expand(2, 4, 7)).logits.shape == (2, 4)
    out = _model(family, "question-answering")(ids)
    assert out.start_logits.shape == out.end_logits.shape == (2, 7) and out.logits is None


def test_build_model_picks_the_task_class_and_bert_drops_pretraining_heads() -> None:
    classes = {"sequence-classification": SequenceClassification, "multiple-choice": MultipleChoice,
               "token-classification": TokenClassification, "question-answering": QuestionAnswering}
    for task, cls in classes.items():
        model = _model("bert", task)
        assert type(model) is cls
        assert model.backbone.mlm_head is None and model.backbone.nsp_head is None
        # transformers' BertForTokenClassification / ...QuestionAnswering have no pooler; the [CLS] heads do
        assert (model.backbone.pooler is not None) == (task in ("sequence-classification", "multiple-choice"))
    assert _model("bert", "sequence-classification", num_labels=1).config.problem_type == "regression"


def test_gpt_similarity_sums_both_orders_so_swapping_them_changes_nothing() -> None:
    model = _model("gpt", "sequence-classification", num_labels=2).eval()
    generator = torch.Generator().manual_seed(3)
    both = torch.randint(5, 99, (3, 2, 8), generator=generator)
    swapped = both.flip(1)
    torch.testing.assert_close(model(both).logits, model(swapped).logits)
    # and it is the head on the sum of the two extract-token states
    hidden = model.backbone(both.view(6, 8), output_hidden_states=True).hidden_states[-1][:, -1]
    expected = model.classifier(hidden.view(3, 2, -1).sum(1))
    torch.testing.assert_close(model(both).logits, expected)


def test_gpt_head_reads_the_extract_token_not_the_padding_after_it() -> None:
    model = _model("gpt", "sequence-classification", extract_token_id=98).eval()
    ids = torch.tensor([[5, 6, 7, 98, 0, 0], [5, 6, 7, 8, 9, 98]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    other_padding = ids.clone()
    other_padding[0, 4:] = 42
    torch.testing.assert_close(model(ids, mask).logits, model(other_padding, mask).logits)
    # without the mask the padding comes after the extract token, which a causal model never lets it see
    torch.testing.assert_close(model(ids).logits, model(other_padding).logits)
    single = model(ids[:1, :4]).logits
    torch.testing.assert_close(model(ids, mask).logits[:1], single, atol=1e-5, rtol=1e-5)


def test_extract_positions() -> None:
    ids = torch.tensor([[1, 9, 2, 9, 0], [9, 1, 1, 1, 1]])
    assert extract_positions(ids, None, 9).tolist() == [3, 0]
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    assert extract_positions(ids, mask, None).tolist() == [2, 4]
    assert extract_positions(ids, None, None).tolist() == [4, 4]
    with pytest.raises(ValueError, match=r"row 1 of input_ids has no extract token \(id 9\)"):
        extract_positions(ids, mask, 9)


def test_gpt_auxiliary_lm_loss_is_weighted_and_ignores_padding() -> None:
    ids = torch.randint(5, 99, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = torch.tensor([0, 1])
    model = _model("gpt", "sequence-classification", lm_weight=0.25).eval()
    out = model(ids, mask, labels=labels)
    lm_targets = ids.masked_fill(mask == 0, -100)
    expected_lm = model.backbone(ids, mask, labels=lm_targets).loss
    torch.testing.assert_close(out.lm_loss, expected_lm)
    task = torch.nn.functional.cross_entropy(out.logits, labels)
    torch.testing.assert_close(out.loss, task + 0.25 * expected_lm)
    off = _model("gpt", "sequence-classification", lm_weight=0.0).eval()
    off_out = off(ids, mask, labels=labels)
    assert off_out.lm_loss is None
    torch.testing.assert_close(off_out.loss, torch.nn.functional.cross_entropy(off_out.logits, labels))
    assert model(ids, mask).lm_loss is None  # inference: no labels, no LM loss


def test_question_answering_ignores_positions_outside_the_input_as_transformers_does() -> None:
    model = _model("bert", "question-answering").eval()
    ids = torch.randint(5, 99, (2, 6))
    inside = model(ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3]))
    one_outside = model(ids, start_positions=torch.tensor([1, 50]), end_positions=torch.tensor([2, 60]))
    f = torch.nn.functional.cross_entropy
    expected = (f(inside.start_logits[:1], torch.tensor([1])) + f(inside.end_logits[:1], torch.tensor([2]))) / 2
    torch.testing.assert_close(one_outside.loss, expected)


def test_with_task_head_keeps_the_backbone_weights() -> None:
    torch.manual_seed(0)
    bert = tformer.build_model(ModelConfig.preset("bert-tiny")).eval()
    model = with_task_head(bert, "sequence-classification", num_labels=3).eval()
    ids = torch.randint(5, 99, (2, 7))
    torch.testing.assert_close(model.backbone(ids).last_hidden_state, bert(ids).last_hidden_state)
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    no_pooler = tformer.build_model(ModelConfig.preset("bert-tiny", pooler=False, pretraining_heads=False))
    with pytest.warns(UserWarning, match=r"newly initialised, e.g. 'pooler.dense.weight'"):
        with_task_head(no_pooler, "multiple-choice")
    gpt = tformer.build_model(ModelConfig.preset("gpt2-tiny")).eval()
    tagger = with_task_head(gpt, "token-classification", num_labels=4).eval()
    torch.testing.assert_close(tagger.backbone(ids).logits, gpt(ids).logits)
    with pytest.raises(ValueError, match=r"unknown task 'ner'; choose one of: sequence-classification"):
        with_task_head(gpt, "ner")
    # from one task model to another: the old head's label names and loss do not carry over
    sentiment = with_task_head(bert, "sequence-classification", num_labels=1, id2label={0: "score"})
    assert sentiment.config.problem_type == "regression"
    topics = with_task_head(sentiment, "sequence-classification", num_labels=4)
    assert topics.config.id2label is None and topics.config.problem_type is None
    assert with_task_head(topics, "question-answering").config.num_labels == 2


# ---- bad input: one clear error naming the value and the fix -------------------------------------------------

def test_label_outside_the_classes_is_named_with_the_fix() -> None:
    model = _model("bert", "sequence-classification", num_labels=3)
    ids = torch.randint(5, 99, (2, 5))
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\) \(num_labels=3\); set num_labels=4"):
        model(ids, labels=torch.tensor([0, 3]))
    model(ids, labels=torch.tensor([0, -100]))  # -100 is ignored, as in transformers
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 5\)"):
        _model("gpt", "token-classification", num_labels=5)(ids, labels=torch.full((2, 5), 7))
    with pytest.raises(ValueError, match=r"labels has shape \(2, 4\) but input_ids has \(2, 5\)"):
        _model("bert", "token-classification")(ids, labels=torch.zeros(2, 4, dtype=torch.long))


def test_multiple_choice_needs_a_choices_dimension_and_labels_among_the_choices() -> None:
    model = _model("bert", "multiple-choice")
    with pytest.raises(ValueError, match=r"input_ids has shape \(2, 5\) but multiple choice needs \(batch, choices"):
        model(torch.randint(5, 99, (2, 5)))
    ids = torch.randint(5, 99, (2, 4, 5))
    with pytest.raises(ValueError, match=r"label 4 is outside \[0, 4\) \(choices=4\); give the index of the right"):
        model(ids, labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\) but input_ids has \(2, 4, 5\)"):
        model(ids, attention_mask=torch.ones(2, 5, dtype=torch.long))


def test_other_bad_inputs_are_named() -> None:
    bert = _model("bert", "sequence-classification")
    with pytest.raises(ValueError, match=r"input_ids has shape \(2, 2, 5\); sequence classification takes"):
        bert(torch.randint(5, 99, (2, 2, 5)))
    gpt = _model("gpt", "sequence-classification")
    with pytest.raises(ValueError, match=r"token_type_ids has non-zero types, but GPT has no token types"):
        gpt(torch.randint(5, 99, (2, 5)), token_type_ids=torch.ones(2, 5, dtype=torch.long))
    gpt(torch.randint(5, 99, (2, 5)), token_type_ids=torch.zeros(2, 5, dtype=torch.long))  # all 0: nothing to lose
    with pytest.raises(ValueError, match=r"labels have dtype torch.float32 but this loss needs integer class ids"):
        _model("bert", "multiple-choice")(torch.randint(5, 99, (2, 3, 5)), labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"give start_positions and end_positions together"):
        _model("gpt", "question-answering")(torch.randint(5, 99, (2, 5)), start_positions=torch.tensor([1, 2]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "ner"}, r"task='ner' is not one of: sequence-classification"),
        ({"task": "question-answering", "num_labels": 3}, r"num_labels=3 but a question-answering head has 2"),
        ({"num_labels": 0}, r"num_labels=0 must be a positive integer"),
        ({"num_labels": 2, "id2label": {0: "a", 1: "b", 2: "c"}}, r"pass num_labels=3 with it"),
        ({"problem_type": "ranking"}, r"problem_type='ranking' is not one of"),
        ({"lm_weight": -1.0}, r"lm_weight=-1.0 must be >= 0"),
        ({"extract_token_id": 500}, r"extract_token_id=500 is outside the vocabulary"),
    ],
)
def test_bad_task_config_names_the_field(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.preset("bert-tiny", **fields)


def test_task_on_an_encoder_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"task='multiple-choice' needs family 'gpt' or 'bert'"):
        ModelConfig.preset("transformer-tiny", task="multiple-choice")


def test_id2label_keys_from_json_become_ints() -> None:
    config = ModelConfig.preset("bert-tiny", num_labels=2, id2label={"0": "neg", "1": "pos"})
    assert config.id2label == {0: "neg", 1: "pos"} and config.labels == {0: "neg", 1: "pos"}
    assert ModelConfig.preset("bert-tiny", num_labels=3).labels == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
