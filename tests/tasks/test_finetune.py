"""Fine-tuning end to end on tiny models and a tiny data folder in the real formats: the written folder loads and
scores what the run reported, the loss falls when overfitting, GPT gets GPT-1's tokens and auxiliary LM loss, and
user mistakes are one-line errors."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import pytest
import torch

import tformer
from tformer.models import MultipleChoice, QuestionAnswering, SequenceClassification, TokenClassification
from tformer.tasks.encoding import task_encoder
from tformer.tasks.finetune import FinetuneOptions, evaluate, evaluate_dev, finetune, length_grouped_order, score
from tformer.tasks.readers import NERSentence, QAExample
from tformer.tasks.registry import get_task
from tformer.tokenization import Tokenizer
from tformer.training.options import OptionError

from ..weights import randomize
from .finetune_data import write_data, write_model

FAST = ["--epochs=2", "--lr=1e-3", "--batch_size=8", "--log_every=1"]
HEADS = {"sst2": SequenceClassification, "stsb": SequenceClassification, "rte": SequenceClassification,
         "copa": MultipleChoice, "squad": QuestionAnswering, "conll2003": TokenClassification}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    return {"data": write_data(root / "data"), "bert": write_model(root / "bert", "bert"),
            "gpt": write_model(root / "gpt", "gpt")}


def _run(folders: dict[str, Path], task: str, family: str, out: Path, *overrides: str) -> tuple:
    stream = io.StringIO()
    options = FinetuneOptions.from_overrides([*FAST, *overrides])
    result = finetune(task, folders[family], folders["data"], out, options, command="test", stream=stream)
    return result, stream.getvalue()


def _train_rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["split"] == "train"]


def test_finetune_writes_a_loadable_model_folder_and_metrics_json(folders, tmp_path):
    out = tmp_path / "sst2"
    result, shown = _run(folders, "sst2", "bert", out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    model = tformer.from_pretrained(out)
    assert isinstance(model, SequenceClassification)
    assert model.config.labels == {0: "negative", 1: "positive"}
    record = json.loads((out / "metrics.json").read_text())
    assert record["task"] == "sst2" and record["metrics"] == result.metrics and set(result.metrics) == {"accuracy"}
    assert record["train_examples"] == record["train_examples_available"] == 64 and record["subset"] is False
    assert record["steps"] == result.steps == 2 * math.ceil(64 / 8) and record["dev_examples"] == 24
    assert record["command"] == "test" and record["wall_seconds"] > 0 and record["options"]["lr"] == 1e-3
    assert "all 64 training examples" in shown and "examples/s" in shown and "eval at step 16: accuracy" in shown
    assert evaluate("sst2", out, folders["data"]) == pytest.approx(result.metrics)


@pytest.mark.parametrize("family", ["bert", "gpt"])
@pytest.mark.parametrize("task", ["stsb", "rte", "copa", "squad", "conll2003"])
def test_every_task_kind_trains_saves_and_evaluates_the_same(folders, tmp_path, family, task):
    result, _ = _run(folders, task, family, tmp_path / task)
    model = tformer.from_pretrained(tmp_path / task)
    assert type(model) is HEADS[task] and model.config.family == family
    assert result.steps > 0 and all(math.isfinite(v) for v in result.metrics.values())
    assert evaluate(task, tmp_path / task, folders["data"]) == pytest.approx(result.metrics, rel=1e-5, abs=1e-6)


def test_overfitting_a_small_set_lowers_the_loss_and_learns_the_task(folders, tmp_path):
    result, _ = _run(folders, "sst2", "bert", tmp_path / "fit", "--epochs=15", "--lr=3e-3", "--batch_size=16")
    losses = [row["loss"] for row in _train_rows(tmp_path / "fit")]
    assert losses[-1] < 0.5 * losses[0]
    assert result.metrics["accuracy"] >= 0.9


def test_gpt_learns_the_task_next_to_its_auxiliary_lm_loss(folders, tmp_path):
    # The tiny GPT first brings its LM loss down (~50 steps here), then the task loss follows.
    result, _ = _run(folders, "sst2", "gpt", tmp_path / "gpt", "--epochs=120", "--lr=3e-3", "--batch_size=64",
                     "--max_grad_norm=0", "--weight_decay=0", "--log_every=20")
    rows = _train_rows(tmp_path / "gpt")
    assert rows[-1]["lm_loss"] < 0.6 * rows[0]["lm_loss"] and rows[-1]["task_loss"] < 0.1
    assert result.metrics["accuracy"] >= 0.9


def test_learning_rate_warms_up_then_decays_linearly_to_zero(folders, tmp_path):
    _run(folders, "sst2", "bert", tmp_path / "lr", "--warmup_fraction=0.25")
    lrs = [row["lr"] for row in _train_rows(tmp_path / "lr")]  # after each of 16 steps; 4 of warmup
    assert lrs[:4] == sorted(lrs[:4]) and lrs[3] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:], strict=False)) and lrs[-1] == 0


def test_max_train_examples_trains_on_a_seeded_subset_and_says_so(folders, tmp_path):
    result, shown = _run(folders, "sst2", "bert", tmp_path / "sub", "--max_train_examples=10", "--max_eval_examples=5")
    record = json.loads((tmp_path / "sub" / "metrics.json").read_text())
    assert result.train_examples == record["train_examples"] == 10 and record["subset"] is True
    assert record["train_examples_available"] == 64 and record["dev_examples"] == 5
    assert record["steps"] == 2 * math.ceil(10 / 8)
    assert "a seeded random subset of 10 of the 64 training examples" in shown
    assert evaluate("sst2", tmp_path / "sub", folders["data"], max_examples=5) == pytest.approx(result.metrics)
    whole = evaluate_dev("sst2", tmp_path / "sub", folders["data"])  # the whole dev split, not the run's subset
    assert (whole.examples, whole.available) == (24, 24)


def test_gpt_gets_gpt1_tokens_and_the_auxiliary_lm_loss(folders, tmp_path):
    _, shown = _run(folders, "sst2", "gpt", tmp_path / "gpt")
    model = tformer.from_pretrained(tmp_path / "gpt")
    tokenizer = tformer.Tokenizer.from_file(tmp_path / "gpt")
    assert model.config.extract_token_id == tokenizer.token_to_id("<extract>") is not None
    assert model.config.lm_weight == 0.5 and model.config.vocab_size == tokenizer.vocab_size
    first = _train_rows(tmp_path / "gpt")[0]
    assert first["loss"] == pytest.approx(first["task_loss"] + 0.5 * first["lm_loss"])
    assert "lm_loss" in shown
    _run(folders, "sst2", "gpt", tmp_path / "no-lm", "--lm_weight=0")
    assert "lm_loss" not in _train_rows(tmp_path / "no-lm")[0]


def test_same_seed_same_model(folders, tmp_path):
    first, _ = _run(folders, "rte", "bert", tmp_path / "a", "--max_steps=3")
    again, _ = _run(folders, "rte", "bert", tmp_path / "b", "--max_steps=3")
    assert first.steps == 3 and first.metrics == again.metrics
    one, two = tformer.from_pretrained(tmp_path / "a"), tformer.from_pretrained(tmp_path / "b")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_random_init_starts_from_fresh_weights_of_the_same_architecture(folders, tmp_path):
    original = tformer.from_pretrained(folders["bert"]).state_dict()
    tiny_steps = ("--max_steps=1", "--lr=1e-12", "--weight_decay=0")
    _, kept_shown = _run(folders, "sst2", "bert", tmp_path / "kept", *tiny_steps)
    _, fresh_shown = _run(folders, "sst2", "bert", tmp_path / "fresh", *tiny_steps, "--init=random")
    kept, fresh = tformer.from_pretrained(tmp_path / "kept"), tformer.from_pretrained(tmp_path / "fresh")
    assert kept.config == fresh.config
    shared = [key for key in original if f"backbone.{key}" in kept.state_dict()]  # the MLM/NSP heads are dropped
    assert len(shared) > 10
    for key in shared:
        assert torch.allclose(kept.state_dict()[f"backbone.{key}"], original[key], atol=1e-6), key
    fresh_weights = fresh.state_dict()["backbone.encoder.embeddings.token.weight"]
    assert not torch.allclose(fresh_weights, original["encoder.embeddings.token.weight"], atol=1e-2)
    assert "freshly initialised (--init=random)" in fresh_shown and "freshly" not in kept_shown
    with pytest.raises(OptionError, match=r"init='scratch' is not an initialisation; pass --init=pretrained or"):
        FinetuneOptions.from_overrides(["--init=scratch"])


def test_length_grouped_order_keeps_every_item_and_batches_similar_lengths():
    generator = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 200, (1000,), generator=generator).tolist()
    order = torch.randperm(1000, generator=generator).tolist()
    grouped = length_grouped_order(order, sizes, batch_size=8, group_batches=10)
    assert sorted(grouped) == list(range(1000))
    assert sizes[grouped[0]] == max(sizes)  # the longest batch first: out-of-memory shows at once
    for start in range(0, 1000, 80):  # each group of 10 batches is sorted longest first
        group = [sizes[i] for i in grouped[start:start + 80]]
        assert group == sorted(group, reverse=True)

    def padded(indices: list[int]) -> int:  # tokens in batches padded to their longest row
        return sum(8 * max(sizes[i] for i in indices[k:k + 8]) for k in range(0, len(indices), 8))

    assert padded(grouped) < 0.7 * padded(order)
    assert length_grouped_order([], [], batch_size=8) == []


@pytest.mark.parametrize("task", ["sst2", "copa", "squad", "conll2003"])  # each encoder's size()
def test_group_by_length_runs_every_task_kind_and_is_recorded(folders, tmp_path, task):
    result, shown = _run(folders, task, "bert", tmp_path / task, "--group_by_length=true")
    record = json.loads((tmp_path / task / "metrics.json").read_text())
    assert record["options"]["group_by_length"] is True and result.steps == record["steps"]
    losses = [row["loss"] for row in _train_rows(tmp_path / task)]
    assert all(math.isfinite(loss) for loss in losses) and len(losses) == result.steps


def _varied_lengths(examples: list) -> list:
    """The tiny data's QA and NER examples all have one length; vary them (questions longer, sentences shorter)."""
    varied = []
    for k, example in enumerate(examples):
        if isinstance(example, QAExample):
            example = dataclasses.replace(example, question=example.question + " and why" * (k % 4))
        elif isinstance(example, NERSentence):
            keep = max(1, len(example.tokens) - k % 4)
            example = dataclasses.replace(example, tokens=example.tokens[:keep], tags=example.tags[:keep])
        varied.append(example)
    return varied


# stsb stands for every text task (one restore loop for classes and scores): its scores differ per example, where
# the class of a tiny random model is often the same for all.
@pytest.mark.parametrize("task", ["stsb", "copa", "squad", "conll2003"])
def test_scoring_in_size_order_keeps_each_prediction_with_its_example(folders, tmp_path, task):
    """Batches are scored longest first (less padding); predictions must come back in the examples' order."""
    _run(folders, task, "bert", tmp_path / task, "--max_steps=1")
    model = randomize(tformer.from_pretrained(tmp_path / task), seed=0, scale=0.1)  # predictions differ by example
    encoder = task_encoder(get_task(task), model, Tokenizer.from_file(tmp_path / task), 64, 16)
    examples = _varied_lengths(get_task(task).read("dev", folders["data"]))
    one_by_one = [encoder.predict([example], batch_size=1)[0][0] for example in examples]  # order cannot move
    batched, _ = encoder.predict(examples, batch_size=5)
    assert len({str(p) for p in one_by_one}) > 1
    if task == "stsb":
        assert batched == pytest.approx(one_by_one, abs=1e-4)
    else:
        assert batched == one_by_one
    sizes = [encoder.size(item) for item in encoder.items(examples)]
    assert len(set(sizes)) > 1  # the examples differ in length, so size order is not file order


def test_a_head_of_the_wrong_size_or_kind_is_a_one_line_error(folders, tmp_path):
    _run(folders, "sst2", "bert", tmp_path / "sst2", "--max_steps=1")
    with pytest.raises(ValueError, match=r"num_labels=2 but stsb needs 1") as error:
        finetune("stsb", tmp_path / "sst2", folders["data"], tmp_path / "x", FinetuneOptions(max_steps=1))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"sequence-classification model but conll2003 needs a token-classification"):
        evaluate("conll2003", tmp_path / "sst2", folders["data"])
    with pytest.raises(ValueError, match=r"without a task head"):
        evaluate("sst2", folders["bert"], folders["data"])


def test_option_mistakes_are_one_line_errors(folders, tmp_path):
    with pytest.raises(OptionError, match=r"unknown option 'learning_rate'; known keys: lr, "):
        FinetuneOptions.from_overrides(["--learning_rate=1e-3"])
    with pytest.raises(OptionError, match=r"epochs=0 must be at least 1"):
        FinetuneOptions.from_overrides(["--epochs=0"])
    with pytest.raises(OptionError, match=r"max_length=512 is longer than the model's 64 positions"):
        finetune("sst2", folders["bert"], folders["data"], tmp_path / "x", FinetuneOptions(max_length=512))


def test_device_is_chosen_recorded_and_checked(folders, tmp_path):
    _run(folders, "sst2", "bert", tmp_path / "cpu", "--device=cpu", "--max_steps=1")
    assert json.loads((tmp_path / "cpu" / "metrics.json").read_text())["device"] == "cpu"
    with pytest.raises(OptionError, match=r"--device='gpu0' is not a device; use auto, cpu, cuda or cuda:N"):
        finetune("sst2", folders["bert"], folders["data"], tmp_path / "x", FinetuneOptions(device="gpu0"))
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match=r"--device='cuda' but this machine has no CUDA device; use --device=cpu"):
            evaluate("sst2", tmp_path / "cpu", folders["data"], device="cuda")


def _forward_one_by_one(source: Path | tuple, rows: list[list[str]]) -> list[torch.Tensor]:
    """Logits of each (text,) or (text_a, text_b) row, encoded alone as [CLS] A [SEP] (B [SEP]), no batching;
    `source` is a model folder or (model, tokenizer)."""
    if isinstance(source, Path):
        source = tformer.from_pretrained(source).eval(), Tokenizer.from_file(source)
    model, tok = source
    logits = []
    with torch.no_grad():
        for row in rows:
            encoding = tok.backend.encode(*row)
            out = model(torch.tensor([encoding.ids]), token_type_ids=torch.tensor([encoding.type_ids]))
            logits.append(out.logits[0])
    return logits


def _dev_rows(folders: dict[str, Path], name: str) -> list[dict[str, str]]:
    import csv

    with open(folders["data"] / f"glue/{name}/dev.tsv", encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def test_reported_metrics_equal_an_independent_computation(folders, tmp_path):
    """Accuracy and Pearson recomputed from the dev files, one example at a time, with numpy's own formulas."""
    import numpy as np

    result, _ = _run(folders, "sst2", "bert", tmp_path / "sst2", "--epochs=15", "--lr=3e-3", "--batch_size=16")
    rows = _dev_rows(folders, "SST-2")
    logits = _forward_one_by_one(tmp_path / "sst2", [[r["sentence"]] for r in rows])
    predicted = [int(t.argmax()) for t in logits]
    right = sum(p == int(r["label"]) for p, r in zip(predicted, rows, strict=True))
    assert 0.5 < right / len(rows) < 1.0 or len(set(predicted)) == 2  # a score that can tell a class swap
    assert result.metrics["accuracy"] == pytest.approx(right / len(rows))

    # STS-B's toy scores cannot be learnt in a few steps (the model predicts their mean), so score a model with
    # random weights whose outputs differ by example, through the function that reports the fine-tuning metrics
    _run(folders, "stsb", "bert", tmp_path / "stsb", "--max_steps=1")
    model = randomize(tformer.from_pretrained(tmp_path / "stsb"), seed=0, scale=1.0)
    tok = Tokenizer.from_file(tmp_path / "stsb")
    reported = score(task_encoder(get_task("stsb"), model, tok, 64, 16), get_task("stsb"),
                     get_task("stsb").read("dev", folders["data"]), batch_size=5)
    rows = _dev_rows(folders, "STS-B")
    scores = [float(t[0]) for t in _forward_one_by_one((model, tok), [[r["sentence1"], r["sentence2"]]
                                                                      for r in rows])]
    wanted = [float(r["score"]) for r in rows]
    assert np.std(scores) > 0.01 and np.std(wanted) > 0.1  # scores that vary: batching noise cannot move r
    assert reported["pearson"] == pytest.approx(float(np.corrcoef(scores, wanted)[0, 1]), abs=1e-4)
