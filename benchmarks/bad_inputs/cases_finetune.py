"""Bad inputs of `tformer finetune`, `tformer evaluate`, `tformer viz positions` and `tformer models`: one line each,
and the user's folders (the pre-trained model, a previous fine-tune, their own files) untouched.

The fixtures are built here: a toy SST-2 and SQuAD data folder (one SQuAD dev question too long for the window), a
tiny BERT with a WordPiece tokenizer, a tiny char-level GPT, and a fine-tune of the BERT on the toy SST-2.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from run import Case

WORDS = ["the", "film", "story", "was", "great", "lovely", "dull", "boring", "where", "does", "anna", "live", "in",
         "paris", "london", "?", "."]


def _data(root: Path) -> Path:
    rng = random.Random(0)
    for split, n in (("train", 48), ("dev", 16)):
        words = (["dull", "boring"], ["great", "lovely"])
        rows = [f"the {rng.choice(['film', 'story'])} was {rng.choice(words[i % 2])}\t{i % 2}" for i in range(n)]
        path = root / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    articles = []
    for i in range(48):
        city = ["paris", "london"][i % 2]
        context = f"anna lives in {city} . the film was great ."
        question = "where does anna live ? " * (8 if i == 47 else 1)  # the last (dev) one: no room in 64 tokens
        articles.append({"title": f"a{i}", "paragraphs": [{"context": context, "qas": [{
            "id": f"q{i}", "question": question, "answers": [{"text": city, "answer_start": context.index(city)}]}]}]})
    squad = root / "squad-v1.1" / "dev-v1.1.json"
    squad.parent.mkdir(parents=True, exist_ok=True)
    squad.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return root


def _models(work: Path) -> tuple[Path, Path]:
    import torch

    import tformer
    from tformer.config import ModelConfig

    text = [" ".join(WORDS)] * 4
    bert, gpt = work / "bert", work / "char-gpt"
    wordpiece = tformer.Tokenizer.train(iter(text), kind="wordpiece", vocab_size=120)
    torch.manual_seed(0)
    config = ModelConfig.preset("bert-tiny", vocab_size=wordpiece.vocab_size, pad_token_id=wordpiece.pad_token_id)
    tformer.save_pretrained(tformer.build_model(config), bert, tokenizer=wordpiece)
    chars = tformer.Tokenizer.train(iter(["the film was "]), kind="char")  # no [UNK]: SST-2 has other letters
    gpt1 = tformer.build_model(ModelConfig.preset("gpt1-tiny", vocab_size=chars.vocab_size))
    tformer.save_pretrained(gpt1, gpt, tokenizer=chars)
    return bert, gpt


def _finetuned(bert: Path, data: Path, out: Path) -> Path:
    from tformer.tasks.finetune import FinetuneOptions, finetune

    finetune("sst2", bert, data, out, FinetuneOptions(max_steps=1, batch_size=8, max_eval_examples=4),
             stream=io.StringIO())
    return out


def cases(work: Path) -> list[Case]:
    data = _data(work / "data")
    bert, gpt = _models(work)
    previous = _finetuned(bert, data, work / "previous")
    mine = work / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n", encoding="utf-8")
    a_file = work / "a-file"
    a_file.write_text("x", encoding="utf-8")
    base = ["--data", str(data), "--max_steps=1", "--batch_size=8"]
    ft = ["finetune", "sst2", "--model", str(bert), *base]
    fresh = str(work / "fresh")

    def finetune(name: str, *extra: str, expect: str, unchanged: list[Path] | None = None, **kw) -> Case:
        return Case(f"finetune: {name}", [*ft, *extra], expect=expect, unchanged=unchanged or [bert], **kw)

    def evaluate(name: str, *extra: str, expect: str) -> Case:
        return Case(f"evaluate: {name}", ["evaluate", "sst2", "--data", str(data), *extra], expect=expect,
                    unchanged=[previous])

    return [
        finetune("--out is the model folder", "--out", str(bert), expect="would overwrite the pre-trained weights"),
        finetune("--out inside the model folder", "--out", str(bert / "sst2"), expect="is inside the model folder"),
        finetune("--out holds another model", "--out", str(gpt), expect="holds a model that tformer finetune did not",
                 unchanged=[bert, gpt]),
        finetune("--out holds the user's files, --overwrite", "--out", str(mine), "--overwrite", expect="notes.txt",
                 unchanged=[bert, mine]),
        finetune("--out holds a previous fine-tune", "--out", str(previous), expect="pass --overwrite to replace it",
                 unchanged=[bert, previous]),
        finetune("--out is a file", "--out", str(a_file), expect="is a file, not a folder", unchanged=[bert, a_file]),
        finetune("--lr 1e-3 misspelled, space form", "--out", fresh, "--lrr", "1e-3",
                 expect="unknown option 'lrr'; did you mean 'lr'?", unchanged=[bert, work / "fresh"]),
        finetune("a stray word", "--out", fresh, "stray", expect="finetune options are written --key=value or --key "
                 "value", unchanged=[bert, work / "fresh"]),
        finetune("--lr=abc", "--out", fresh, "--lr=abc", expect="lr='abc' is not a float",
                 unchanged=[bert, work / "fresh"]),
        finetune("--group_by_length=maybe", "--out", fresh, "--group_by_length=maybe", expect="group_by_length",
                 unchanged=[bert, work / "fresh"]),
        finetune("--epochs 0", "--out", fresh, "--epochs", "0", expect="epochs=0 must be at least 1",
                 unchanged=[bert, work / "fresh"]),
        finetune("--init scratch", "--out", fresh, "--init", "scratch", expect="pass --init=pretrained or",
                 unchanged=[bert, work / "fresh"]),
        finetune("--max_length beyond the positions", "--out", fresh, "--max_length=512",
                 expect="longer than the model's 64 positions", unchanged=[bert, work / "fresh"]),
        Case("finetune: a char-level GPT on SST-2", ["finetune", "sst2", "--model", str(gpt), *base, "--out", fresh],
             expect="(char-level, without [UNK]) cannot encode", unchanged=[gpt, work / "fresh"]),
        Case("finetune: a SQuAD dev question too long", ["finetune", "squad", "--model", str(bert), *base, "--out",
                                                          fresh], expect="squad dev cannot be encoded",
             unchanged=[bert, work / "fresh"]),
        Case("finetune: Ctrl-C during training", ["finetune", "sst2", "--model", str(bert), "--data", str(data),
                                                  "--epochs=100000", "--batch_size=8", "--log_every=1", "--out",
                                                  str(work / "stopped")],
             expect_rc=130, expect="continue with --resume", interrupt_when="step 1:", unchanged=[bert]),
        Case("finetune: an unknown task", ["finetune", "sst-22", "--model", str(bert), *base, "--out", fresh],
             expect="did you mean 'sst2'?", unchanged=[bert, work / "fresh"]),
        Case("finetune: a missing --model", ["finetune", "sst2", "--model", str(work / "nope"), *base, "--out", fresh],
             expect="does not exist", unchanged=[work / "fresh"]),
        evaluate("--max_eval_examples 0", "--model", str(previous), "--max_eval_examples", "0",
                 expect="max_eval_examples=0 must be at least 1"),
        evaluate("--batch_size 0", "--model", str(previous), "--batch_size", "0", expect="batch_size=0 must be at"),
        evaluate("--threads 0", "--model", str(previous), "--threads", "0", expect="threads=0 must be at least 1"),
        evaluate("--threads abc", "--model", str(previous), "--threads", "abc", expect="invalid int value: 'abc'"),
        evaluate("a model without a task head", "--model", str(bert), expect="needs a sequence-classification head"),
        evaluate("a missing --model", "--model", str(work / "nope"), expect="does not exist"),
        Case("viz positions: --layout spiral", ["viz", "positions", "--out", str(work / "pe.png"), "--layout",
                                                "spiral"], expect="invalid choice: 'spiral'",
             unchanged=[work / "pe.png"]),
        Case("viz positions: --d-model 7", ["viz", "positions", "--out", str(work / "pe.png"), "--d-model", "7"],
             expect="d_model=7 must be a positive even number", unchanged=[work / "pe.png"]),
        Case("viz positions: --length 1", ["viz", "positions", "--out", str(work / "pe.png"), "--length", "1"],
             expect="length=1 must be at least 2", unchanged=[work / "pe.png"]),
        Case("viz positions: --out x.pdf", ["viz", "positions", "--out", str(work / "pe.pdf")],
             expect="unknown extension '.pdf'", unchanged=[work / "pe.pdf"]),
        Case("models: an unknown option", ["models", "--tiny"], expect="unrecognized arguments: --tiny"),
    ]
