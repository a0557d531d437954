"""The readers give the row counts and labels the data README documents, and one-line errors for bad folders."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import pytest

from tformer.tasks import TASKS, ChoiceExample, DataFormatError, NERSentence, QAExample, TextExample, get_task
from tformer.tasks.readers import read_swag


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("task", "split", "rows", "label_counts"), [
    ("sst2", "dev", 872, {1: 444, 0: 428}),
    ("sst2", "train", 67_349, {1: 37_569, 0: 29_780}),
    ("cola", "dev", 1_043, {1: 721, 0: 322}),
    ("cola", "train", 8_551, {1: 6_023, 0: 2_528}),
    ("mrpc", "dev", 408, {1: 279, 0: 129}),
    ("mrpc", "train", 3_668, {1: 2_474, 0: 1_194}),
    ("rte", "dev", 277, {0: 146, 1: 131}),  # 0 = entailment
    ("rte", "train", 2_490, {0: 1_249, 1: 1_241}),
    ("wnli", "dev", 71, {1: 31, 0: 40}),
    ("wnli", "train", 635, {1: 312, 0: 323}),
])
def test_glue_classification_counts(data_dir, task, split, rows, label_counts):
    examples = get_task(task).read(split, data_dir)
    assert len(examples) == rows
    assert Counter(e.label for e in examples) == label_counts
    assert all(isinstance(e, TextExample) and isinstance(e.text_a, str) and e.text_a for e in examples)
    assert all((e.text_b is None) == (task in ("sst2", "cola")) for e in examples)


def test_glue_rows_keep_their_columns(data_dir):
    cola = TASKS["cola"].read("dev", data_dir)
    assert cola[0].text_a == "The sailors rode the breeze clear of the rocks."
    mrpc = TASKS["mrpc"].read("dev", data_dir)[0]  # the header's BOM does not hide the "Quality" column
    assert mrpc.label == 1 and mrpc.text_a.startswith("He said the foodservice pie business")
    assert mrpc.text_b.startswith('" The foodservice pie business does not fit')  # a bare quote, kept
    rte = TASKS["rte"].read("dev", data_dir)[0]
    assert rte.text_b == "Christopher Reeve had an accident." and TASKS["rte"].labels[rte.label] == "not_entailment"


def test_stsb_is_regression_on_the_0_to_5_score(data_dir):
    task = TASKS["stsb"]
    examples = task.read("dev", data_dir)
    assert len(examples) == 1_500 and len(task.read("train", data_dir)) == 5_749
    assert task.kind == "regression" and task.num_labels == 1
    assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in examples)
    assert sum(e.label for e in examples) / len(examples) == pytest.approx(2.364, abs=5e-4)
    assert examples[0] == TextExample("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0)


def test_qnli_dev_file_is_split_by_question_into_train_and_dev(data_dir):
    train, dev = TASKS["qnli"].read("train", data_dir), TASKS["qnli"].read("dev", data_dir)
    assert len(train) + len(dev) == 5_463
    assert 0.15 < len(dev) / 5_463 < 0.25
    assert not {e.text_a for e in train} & {e.text_a for e in dev}
    assert TASKS["qnli"].read("dev", data_dir) == dev  # the same split every time
    assert Counter(e.label for e in train + dev) == {0: 2_702, 1: 2_761}


def test_multiple_choice_readers(data_dir):
    csqa = TASKS["commonsenseqa"].read("dev", data_dir)
    assert len(csqa) == 1_221 and len(TASKS["commonsenseqa"].read("train", data_dir)) == 9_741
    first = csqa[0]
    assert isinstance(first, ChoiceExample) and first.label == 0
    assert first.choices == ["bank", "library", "department store", "mall", "new york"]
    assert first.context.startswith("A revolving door is convenient for two direction travel")
    assert Counter(e.label for e in csqa) == {0: 239, 1: 255, 2: 241, 3: 251, 4: 235}

    copa_train, copa_dev = TASKS["copa"].read("train", data_dir), TASKS["copa"].read("dev", data_dir)
    assert len(copa_train) == 400 and len(copa_dev) == 100  # train.jsonl + the 32 labelled "unlabeled" rows
    assert copa_dev[0] == ChoiceExample("The man turned on the faucet. What happened as a result?",
                                        ["The toilet filled with water.", "Water flowed from the spout."], 1, "0")
    assert Counter(e.label for e in copa_dev) == {0: 55, 1: 45}
    assert [len(e.choices) for e in copa_dev + csqa] == [2] * 100 + [5] * 1_221


def test_squad_is_split_by_article(data_dir):
    train, dev = TASKS["squad"].read("train", data_dir), TASKS["squad"].read("dev", data_dir)
    assert len(train) + len(dev) == 10_570
    assert len({e.title for e in train}) == 40 and len({e.title for e in dev}) == 8
    assert not {e.title for e in train} & {e.title for e in dev}
    assert train[0].title == "Super_Bowl_50"
    assert sum(len(e.answers) for e in train + dev) == 34_726
    example = train[0]
    assert isinstance(example, QAExample) and example.id and example.question
    for text, start in example.answers:
        assert example.context[start:start + len(text)] == text


def test_conll_sentences_and_tags(data_dir):
    task = TASKS["conll2003"]
    valid = task.read("dev", data_dir)
    assert len(valid) == 3_250 and sum(len(s.tokens) for s in valid) == 51_362
    assert len(task.read("train", data_dir)) == 14_041 and len(task.read("test", data_dir)) == 3_453
    tags = Counter(tag for s in valid for tag in s.tags)
    assert (tags["B-PER"], tags["B-ORG"], tags["B-LOC"], tags["B-MISC"]) == (1_842, 1_341, 1_837, 922)
    assert valid[0] == NERSentence(["CRICKET", "-", "LEICESTERSHIRE", "TAKE", "OVER", "AT", "TOP", "AFTER", "INNINGS",
                                    "VICTORY", "."], ["O", "O", "B-ORG", "O", "O", "O", "O", "O", "O", "O", "O"])
    assert task.kind == "token_classification" and task.num_labels == 9


def test_every_task_names_its_kind_labels_and_metrics():
    assert set(TASKS) == {"sst2", "cola", "mrpc", "stsb", "rte", "wnli", "qnli", "commonsenseqa", "copa", "swag",
                          "squad", "conll2003"}
    assert TASKS["cola"].metrics == ("matthews_correlation",)
    assert TASKS["stsb"].metrics == ("pearson", "spearman")
    assert TASKS["mrpc"].metrics == ("accuracy", "f1")
    assert TASKS["squad"].kind == "qa" and TASKS["squad"].metrics == ("exact_match", "squad_f1")
    assert TASKS["swag"].num_labels == 1 and len(TASKS["swag"].labels) == 4
    assert get_task("SST-2") is TASKS["sst2"] and get_task("STS-B") is TASKS["stsb"]
    with pytest.raises(ValueError, match="did you mean 'squad'") as error:
        get_task("sqad")
    _one_line(error)


def test_missing_data_folder_is_a_one_line_error_naming_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        TASKS["sst2"].read("dev", tmp_path)
    message = _one_line(error)
    assert str(tmp_path / "glue" / "SST-2") in message and "dev.tsv.gz" in message
    assert "--data DIR" in message and "TFORMER_DATA" in message
    with pytest.raises(ValueError, match="no split 'test'; choose one of train, dev"):
        TASKS["sst2"].read("test", tmp_path)


def _write(path: Path, text: str, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_uncompressed_files_are_read_too(tmp_path):
    _write(tmp_path / "glue" / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n"
           '0\tA "quoted" premise.\tA hypothesis.\tentailment\n1\tP.\tH.\tnot_entailment\n')
    examples = TASKS["rte"].read("dev", tmp_path)
    assert examples == [TextExample('A "quoted" premise.', "A hypothesis.", 0), TextExample("P.", "H.", 1)]


def test_a_label_outside_the_label_list_is_a_one_line_error(tmp_path):
    _write(tmp_path / "glue" / "SST-2" / "dev.tsv.gz", "sentence\tlabel\ngood film \t1\nodd row \t2\n", compress=True)
    with pytest.raises(DataFormatError, match=r"dev.tsv.gz:3: label '2' is not one of \['0', '1'\]") as error:
        TASKS["sst2"].read("dev", tmp_path)
    _one_line(error)
    _write(tmp_path / "conll2003" / "valid.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORGANISATION\n")
    with pytest.raises(DataFormatError, match="valid.txt:3: tag 'B-ORGANISATION' is not one of"):
        TASKS["conll2003"].read("dev", tmp_path)
    _write(tmp_path / "copa" / "val.jsonl", '{"premise": "P.", "choice1": "a", "choice2": "b", '
           '"question": "effect", "label": 2, "idx": 0}\n')
    with pytest.raises(DataFormatError, match="val.jsonl:1: label 2 is not 0 or 1"):
        TASKS["copa"].read("dev", tmp_path)


SWAG_HEADER = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
               "ending0", "ending1", "ending2", "ending3", "label"]  # rowanz/swagaf data/train.csv, with its index
SWAG_ROWS = [
    ["0", "lsmdc1052_Harry_Potter_and_the_order_of_phoenix-94857", "18313",
     "Students lower their eyes nervously. She", "Students lower their eyes nervously.", "She", "gold",
     "pats her shoulder, then saunters toward someone.", "turns with two students.", "walks slowly towards someone.",
     "wheels around as her dog thunders out.", "2"],
    ["1", "anetv_dm5WXFiQZUQ", "18419", "He rides the motorcycle down the hall. He",
     "He rides the motorcycle down the hall.", "He", "gen", "rides back.", "stops, \"suddenly\".", "falls off.",
     "waves.", "0"],
]


def _swag_csv(path: Path, rows: list[list[str]], compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SWAG_HEADER)
        writer.writerows(rows)
    return path


def test_swag_csv_reads_context_and_four_endings(tmp_path):
    _swag_csv(tmp_path / "swag" / "train.csv", SWAG_ROWS)
    examples = TASKS["swag"].read("train", tmp_path)
    assert len(examples) == 2
    first, second = examples
    assert first.context == "Students lower their eyes nervously."
    assert first.choices == ["She pats her shoulder, then saunters toward someone.", "She turns with two students.",
                             "She walks slowly towards someone.", "She wheels around as her dog thunders out."]
    assert first.label == 2 and first.id == "lsmdc1052_Harry_Potter_and_the_order_of_phoenix-94857/18313"
    assert second.choices[1] == 'He stops, "suddenly".' and second.label == 0
    _swag_csv(tmp_path / "swag" / "val.csv.gz", SWAG_ROWS[:1], compress=True)
    assert TASKS["swag"].read("dev", tmp_path) == [first]


def test_swag_errors(tmp_path):
    bad = [row[:] for row in SWAG_ROWS]
    bad[1][-1] = "4"
    with pytest.raises(DataFormatError, match=r"bad.csv:3: label '4' is not 0-3") as error:
        read_swag(_swag_csv(tmp_path / "bad.csv", bad))
    _one_line(error)
    (tmp_path / "test.csv").write_text(",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,"
                                       "ending2,ending3\n")
    with pytest.raises(DataFormatError, match=r"lacks SWAG columns \['label'\]"):
        read_swag(tmp_path / "test.csv")
    with pytest.raises(FileNotFoundError, match=r"has no val.csv \(or val.csv.gz\); point --data DIR"):
        TASKS["swag"].read("dev", tmp_path)


def test_a_head_of_the_wrong_size_is_a_one_line_error():
    TASKS["rte"].check_head(2)
    TASKS["stsb"].check_head(1)
    with pytest.raises(ValueError, match=r"num_labels=2 but conll2003 needs 9 \(labels \['O', 'B-PER'") as error:
        TASKS["conll2003"].check_head(2)
    _one_line(error)
    with pytest.raises(ValueError, match=r"num_labels=3 but squad needs 2 \(a qa head of 2\)"):
        TASKS["squad"].check_head(3)
