"""`tformer evaluate TASK --zero-shot` as a user types it: the accuracy line with chance and examples, the prompt
line, and one-line errors with a non-zero exit for an encoder, a fine-tuned model, a missing split or a bad option."""

from __future__ import annotations

from pathlib import Path

import pytest

import tformer
from tformer.cli import main
from tformer.config import ModelConfig

from .evaluation.zero_shot_models import SST2_DEV, preferring, rig, save, tiny_gpt, word_tokenizer, write_zero_shot_data
from .tasks.finetune_data import write_model


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-zero-shot")
    tokenizer = word_tokenizer()
    positive = save(rig(tiny_gpt(tokenizer), preferring(tokenizer, "positive")), tokenizer, root / "positive")
    config = ModelConfig.preset("gpt1-tiny", vocab_size=tokenizer.vocab_size, task="sequence-classification",
                                num_labels=2)
    tformer.save_pretrained(tformer.build_model(config), root / "classifier", tokenizer=tokenizer)
    return {"data": write_zero_shot_data(root / "data"), "positive": positive, "bert": write_model(root / "bert"),
            "classifier": root / "classifier", "root": root}


def test_zero_shot_prints_accuracy_chance_examples_and_the_prompt(folders, capsys):
    assert main(["evaluate", "sst2", "--zero-shot", "--model", str(folders["positive"]), "--data",
                 str(folders["data"]), "--limit", "4", "--batch_size", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    share = sum(label for _, label in SST2_DEV[:4]) / 4
    assert lines == [f"sst2 zero-shot: accuracy {share:.4f}  (chance 0.5000; the first 4 of 7 dev examples (--limit))",
                     "prompt '{sentence} very', verbalizer negative/positive: each label's word after the prompt, "
                     "scored by the sum of its tokens' log-probabilities"]
    assert main(["evaluate", "sst2", "--zero-shot", "--model", str(folders["positive"]), "--data",
                 str(folders["data"]), "--verbalizer", "positive,negative", "--template", "{sentence} , so"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sst2 zero-shot: accuracy 0.2857  (chance 0.5000; all 7 dev examples)"
    assert lines[1].startswith("prompt '{sentence} , so', verbalizer positive/negative: ")


def test_multiple_choice_reports_the_summed_score_beside_the_normalised_one(folders, capsys):
    assert main(["evaluate", "copa", "--zero-shot", "--model", str(folders["positive"]), "--data",
                 str(folders["data"])]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("copa zero-shot: accuracy ") and first.endswith("(chance 0.5000; all 2 dev examples)")
    assert second.startswith("prompt '{premise} {connective}': {connective} is 'because' for a cause, 'so' for an "
                             "effect;") and "mean of its tokens' log-probabilities; by the sum instead: accuracy" \
        in second


@pytest.mark.parametrize(("words", "message"), [
    (["sst2", "--zero-shot", "--model", "{bert}"], "holds a bert model, not a causal language model"),
    (["sst2", "--zero-shot", "--model", "{classifier}"], "holds a gpt model with a sequence-classification head"),
    (["sst2", "--zero-shot", "--model", "{positive}", "--data", "{root}"], "glue/SST-2 has no dev.tsv"),
    (["rte", "--zero-shot", "--model", "{positive}"], "rte has no zero-shot scoring"),
    (["sst2", "--model", "{positive}", "--template", "{sentence} very"], "--template sets the zero-shot prompt"),
    (["sst2", "--zero-shot", "--model", "{positive}", "--template", "{text}"], "has the field {text}"),
    (["sst2", "--zero-shot", "--model", "{positive}", "--verbalizer", "good"], "must be 2 different non-empty"),
    (["sst2", "--zero-shot", "--model", "{root}/missing"], "missing' does not exist"),
    (["sst2", "--zero-shot", "--model", "{positive}", "--batch_size", "0"], "batch_size=0 must be at least 1"),
])
def test_mistakes_are_one_line_errors(folders, capsys, words, message):
    argv = ["evaluate", *words]
    for name, path in folders.items():  # str.replace, not format: the templates have braces of their own
        argv = [word.replace(f"{{{name}}}", str(path)) for word in argv]
    if "--data" not in argv:
        argv += ["--data", str(folders["data"])]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert "\n" not in error and error.startswith("tformer evaluate: error: ") and message in error
    assert captured.out == ""


def test_zero_shot_on_the_shared_sst2_dev_split(folders, data_dir, capsys):
    assert main(["evaluate", "sst2", "--zero-shot", "--model", str(folders["positive"]), "--data", str(data_dir),
                 "--limit", "10"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("sst2 zero-shot: accuracy ") and "(chance 0.5000; the first 10 of 872 dev examples" in first
