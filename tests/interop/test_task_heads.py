"""Saved task models: BERT ones load in `transformers`' BertFor... classes (and theirs in tformer) with the same
logits and losses (float32, 1e-5); GPT ones round-trip through tformer; a backbone folder takes a new head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tformer
from tests.conftest import randomize
from tformer.config import ModelConfig
from tformer.tasks.inputs import add_gpt_special_tokens

from ..dev_dependency import import_dev

transformers = import_dev("transformers")

TOLERANCE = 1e-5
HF_CLASSES = {
    "sequence-classification": "BertForSequenceClassification", "multiple-choice": "BertForMultipleChoice",
    "token-classification": "BertForTokenClassification", "question-answering": "BertForQuestionAnswering",
}
NUM_LABELS = {"sequence-classification": 3, "multiple-choice": 2, "token-classification": 5,
              "question-answering": 2}


def _hf_model(task: str, **config: Any) -> Any:
    hf_config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, type_vocab_size=2, num_labels=NUM_LABELS[task], **config)
    torch.manual_seed(0)
    return randomize(getattr(transformers, HF_CLASSES[task])(hf_config).eval(), seed=0)


def _batch(task: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (3, 4, 9) if task == "multiple-choice" else (3, 9)
    ids = torch.randint(2, 99, shape, generator=generator)
    mask = torch.ones_like(ids)
    mask[1, ..., 6:] = 0
    mask[2, ..., 3:] = 0
    types = torch.zeros_like(ids)
    types[..., 4:] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if task == "sequence-classification":
        batch["labels"] = torch.tensor([0, 2, 1])
    elif task == "multiple-choice":
        batch["labels"] = torch.tensor([3, 0, 1])
    elif task == "token-classification":
        batch["labels"] = torch.randint(0, 5, shape, generator=generator).masked_fill(mask == 0, -100)
    else:  # one answer outside the input: both libraries ignore it
        batch["start_positions"] = torch.tensor([1, 4, 20])
        batch["end_positions"] = torch.tensor([3, 5, 21])
    return batch


def _assert_same(ours: Any, theirs: Any, task: str) -> None:
    names = ("start_logits", "end_logits", "loss") if task == "question-answering" else ("logits", "loss")
    for name in names:
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("task", list(HF_CLASSES))
def test_transformers_task_folder_loads_in_tformer_with_the_same_logits(task: str, tmp_path: Path) -> None:
    reference = _hf_model(task)
    reference.save_pretrained(tmp_path)
    model = tformer.from_pretrained(tmp_path)
    assert model.config.task == task and type(model) is tformer.models.TASK_MODELS[task]
    batch = _batch(task)
    with torch.no_grad():
        _assert_same(model(**batch), reference(**batch), task)


@pytest.mark.parametrize("task", list(HF_CLASSES))
def test_tformer_task_model_loads_in_transformers_with_the_same_logits(task: str, tmp_path: Path) -> None:
    config = ModelConfig.preset("bert-tiny", d_ff=48, task=task, num_labels=NUM_LABELS[task])
    torch.manual_seed(0)
    model = randomize(tformer.build_model(config), seed=2).eval()
    tformer.save_pretrained(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [HF_CLASSES[task]]
    reference, info = getattr(transformers, HF_CLASSES[task]).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reference.eval()
    batch = _batch(task)
    with torch.no_grad():
        _assert_same(model(**batch), reference(**batch), task)
    again = tformer.from_pretrained(tmp_path)
    with torch.no_grad():
        _assert_same(again(**batch), model(**batch), task)


def test_regression_and_label_names_survive_both_libraries(tmp_path: Path) -> None:
    names = {0: "negative", 1: "neutral", 2: "positive"}
    classifier = tformer.build_model(ModelConfig.preset("bert-tiny", task="sequence-classification", num_labels=3,
                                                        id2label=names, classifier_dropout=0.2))
    tformer.save_pretrained(classifier, tmp_path / "cls")
    reference = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert reference.config.id2label == names and reference.config.label2id["neutral"] == 1
    assert reference.config.classifier_dropout == 0.2
    assert tformer.from_pretrained(tmp_path / "cls").config.id2label == names

    torch.manual_seed(0)
    regressor = randomize(tformer.build_model(ModelConfig.preset(
        "bert-tiny", d_ff=48, task="sequence-classification", num_labels=1)), seed=3).eval()
    tformer.save_pretrained(regressor, tmp_path / "reg")
    assert json.loads((tmp_path / "reg" / "config.json").read_text())["problem_type"] == "regression"
    reference = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "reg").eval()
    batch = {**_batch("sequence-classification"), "labels": torch.tensor([0.5, -1.0, 2.0])}
    with torch.no_grad():
        _assert_same(regressor(**batch), reference(**batch), "sequence-classification")


@pytest.mark.parametrize("preset", ["gpt1-tiny", "gpt2-tiny"])
@pytest.mark.parametrize("task", list(HF_CLASSES))
def test_gpt_task_model_round_trips_through_tformer(preset: str, task: str, tmp_path: Path) -> None:
    tokenizer = tformer.Tokenizer.train(iter(["the cat sat on the mat", "a dog ran"]), kind="word")
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset(preset, task=task, num_labels=NUM_LABELS[task]))
    special = add_gpt_special_tokens(tokenizer, model)
    randomize(model, seed=4).eval()
    tformer.save_pretrained(model, tmp_path, tokenizer=tokenizer)
    loaded = tformer.from_pretrained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.config.extract_token_id == special.extract
    assert tformer.Tokenizer.from_file(tmp_path).token_to_id("<extract>") == special.extract
    batch = _batch(task)
    batch.pop("token_type_ids")
    ids = batch["input_ids"].masked_fill(batch["input_ids"] == special.extract, 1)
    ids[..., 2] = special.extract  # every row (and choice) has one extract token before its padding
    batch["input_ids"] = ids
    with torch.no_grad():
        ours, again = model(**batch), loaded(**batch)
    _assert_same(again, ours, task)
    torch.testing.assert_close(again.lm_loss, ours.lm_loss)


def test_backbone_folder_with_a_task_override_gets_a_new_head(tmp_path: Path) -> None:
    pretrained = randomize(transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64)).eval(), seed=5)
    pretrained.save_pretrained(tmp_path)
    names = {0: "a", 1: "b", 2: "c", 3: "d"}
    model = tformer.from_pretrained(tmp_path, task="sequence-classification", num_labels=4, id2label=names)
    assert isinstance(model, tformer.models.SequenceClassification) and model.classifier.out_features == 4
    assert model.config.id2label == names
    batch = _batch("sequence-classification")
    batch.pop("labels")
    with torch.no_grad():
        theirs = pretrained.bert(**batch)
        ours = model.backbone(**batch)
    torch.testing.assert_close(ours.last_hidden_state, theirs.last_hidden_state, atol=TOLERANCE, rtol=TOLERANCE)
    torch.testing.assert_close(ours.pooled_output, theirs.pooler_output, atol=TOLERANCE, rtol=TOLERANCE)


def test_task_folder_loads_as_the_plain_backbone_without_its_head(tmp_path: Path) -> None:
    _hf_model("token-classification").save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"2 checkpoint tensors were not used, e.g. 'classifier\.(weight|bias)'"):
        backbone = tformer.from_pretrained(tmp_path, task=None)
    assert type(backbone) is tformer.BERT and backbone.pooler is None
