"""Bad inputs of recipes, `tformer prepare` and `Tokenizer.train`: each is one line naming the value and the fix,
found before any data is prepared, with nothing the user had changed."""

from __future__ import annotations

import json
from pathlib import Path

from run import Case

# (what, overrides): refused when the recipe loads, so `--print-config` shows the same refusal a run would
PRINT_CONFIG = [
    ("train.lr=.inf", ["--train.lr=.inf"], "train.lr=inf must be a finite number above 0"),
    ("train.lr=nan", ["--train.lr=nan"], "train.lr=nan must be a finite number above 0"),
    ("train.lr negative", ["--train.lr=-1e-3"], "train.lr=-0.001 must be a finite number above 0"),
    ("train.min_lr above lr", ["--train.min_lr=1"], "train.min_lr=1.0 is above train.lr"),
    ("train.weight_decay=.nan", ["--train.weight_decay=.nan"], "train.weight_decay=nan"),
    ("train.betas=[0.9,1]", ["--train.betas=[0.9,1]"], "train.betas[1]=1.0 must be in [0, 1)"),
    ("train.eps=0", ["--train.eps=0"], "train.eps=0.0 must be a finite number above 0"),
    ("train.clip_grad_norm=.inf", ["--train.clip_grad_norm=.inf"], "train.clip_grad_norm=inf"),
    ("train.threads=0", ["--train.threads=0"], "train.threads=0 must be at least 1"),
    ("train.warmup_steps=-1", ["--train.warmup_steps=-1"], "train.warmup_steps=-1 must be at least 0"),
    ("train.seed=-1", ["--train.seed=-1"], "train.seed=-1 must be in [0, 2**32)"),
    ("eval.every=-1", ["--eval.every=-1"], "eval.every=-1 must be at least 0"),
    ("eval.batches=0", ["--eval.batches=0"], "eval.batches=0 must be at least 1"),
    ("eval.num_beams=0", ["--eval.num_beams=0"], "eval.num_beams=0 must be at least 1"),
    ("eval.length_penalty=.nan", ["--eval.length_penalty=.nan"], "eval.length_penalty=nan"),
    ("out.keep_checkpoints=0", ["--out.keep_checkpoints=0"], "out.keep_checkpoints=0 must be at least 1"),
    ("train.keep_checkpoints=0 (wrong section)", ["--train.keep_checkpoints=0"],
     "keep_checkpoints is an option of out"),
    ("out.checkpoint_every=-1", ["--out.checkpoint_every=-1"], "out.checkpoint_every=-1 must be at least 0"),
    ("out.log_every=0", ["--out.log_every=0"], "out.log_every=0 must be at least 1"),
    ("out.dir empty", ["--out.dir="], "out.dir is empty"),
    ("data.vocab_size=0", ["--data.vocab_size=0"], "data.vocab_size=0 must be at least 1"),
    ("data.mlm_probability=1.5", ["--data.mlm_probability=1.5"], "data.mlm_probability=1.5 must be in (0, 1]"),
    ("data.random_next_probability=-1", ["--data.random_next_probability=-1"], "must be in [0, 1]"),
    ("data.tokenizer=sentencepiece", ["--data.tokenizer=sentencepiece"], "is neither a kind"),
    ("data.text=[]", ["--data.text=[]"], "data.text is empty"),
    ("data.corpus=numbers for causal_lm", ["--data.corpus=numbers"], "data.corpus=numbers gives translation pairs"),
    ("data.block_size over max_positions", ["--data.block_size=1000"], "is longer than the model's position table"),
    ("bpe vocab_size below the bytes", ["--data.tokenizer=bpe", "--data.vocab_size=100"], "needs at least 257"),
    ("model.config.n_heads=5 (d_model 128)", ["--model.config.n_heads=5"], "is not divisible by n_heads=5"),
    ("model.preset of another family", ["--model.preset=bert-base"], "trains a gpt model but model.preset"),
    ("train.objective=mlm_nsp on a GPT", ["--train.objective=mlm_nsp"], "trains a bert model but model.preset=gpt2"),
    ("eval.bleu on a causal LM", ["--eval.bleu=true"], "eval.bleu=true scores translations"),
]


def cases(work: Path) -> list[Case]:
    shakespeare = "gpt-shakespeare-char"
    found = [Case(f"train --print-config: {what}", ["train", shakespeare, *overrides, "--print-config"],
                  expect=expect) for what, overrides, expect in PRINT_CONFIG]
    found += [
        Case("train --print-config: BERT NSP on one text file", ["train", "bert-gutenberg-mlm-nsp",
                                                                 "--data.text=[one.txt]", "--print-config"],
             expect="needs 2 or more files"),
        Case("train --print-config: BERT NSP max_length=4", ["train", "bert-gutenberg-mlm-nsp", "--data.max_length=4",
                                                             "--print-config"], expect="use at least 5"),
        Case("train --print-config: translation without valid files", ["train", "transformer-multi30k",
                                                                        "--data.valid_source=null", "--print-config"],
             expect="needs data.valid_source"),
    ]
    return found + _run_cases(work) + _prepare_cases(work) + _tokenizer_cases(work)


def _run_cases(work: Path) -> list[Case]:
    """Real `tformer train` starts, refused before any data is read (the run folder is not named in `unchanged`:
    the Trainer may take its lock first)."""
    book = work / "one" / "book.txt"
    book.parent.mkdir()
    book.write_text("".join(f"Line {i} of the only book, with some words.\n" + ("\n" if i % 4 == 3 else "")
                            for i in range(200)), encoding="utf-8")
    bert = work / "bert-model"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (bert / "model.safetensors").write_bytes(b"")
    run = work / "old-run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (run / "final" / "model.safetensors").write_bytes(b"")
    folder = work / "tok.json"
    folder.mkdir()
    base = ["train", "gpt-shakespeare-char", "--train.threads=1", "--train.device=cpu"]
    return [
        Case("train: data.tokenizer file missing", [*base, f"--data.tokenizer={work / 'missing.json'}",
                                                    f"--out.dir={work / 'r1'}"],
             expect="missing.json does not exist"),
        Case("train: data.tokenizer is a folder", [*base, f"--data.tokenizer={folder}", f"--out.dir={work / 'r1'}"],
             expect="is a folder, not a file"),
        Case("train: model.from_pretrained of another family", [*base, f"--model.from_pretrained={bert}",
                                                                f"--out.dir={work / 'r2'}"],
             expect="holds a bert model", unchanged=[bert]),
        Case("train: model.from_pretrained is a run folder", [*base, f"--model.from_pretrained={run}",
                                                              f"--out.dir={work / 'r3'}"],
             expect="did you mean", unchanged=[run]),
        Case("train: model.from_pretrained missing", [*base, f"--model.from_pretrained={work / 'nowhere'}",
                                                      f"--out.dir={work / 'r4'}"], expect="does not exist"),
        Case("train: fp16 on the CPU", [*base, "--train.precision=fp16", f"--out.dir={work / 'r7'}"],
             expect="train.precision=fp16 needs a CUDA device"),
        Case("train: a data file missing", [*base, f"--data.text=[{book},{work / 'missing.txt'}]",
                                            f"--out.dir={work / 'r5'}"], expect="data.text[1]"),
        Case("train: BERT NSP on one file (a glob)", ["train", "bert-gutenberg-mlm-nsp", "--train.threads=1",
                                                      f"--data.text=[{book.parent}/*.txt]",
                                                      f"--out.dir={work / 'r6'}"],
             expect="needs 2 or more files, got 1", unchanged=[book]),
    ]


def _prepare_cases(work: Path) -> list[Case]:
    text = work / "in.txt"
    text.write_text("To be, or not to be: that is the question.\n" * 40, encoding="utf-8")
    model = work / "model"
    model.mkdir()
    for name, data in (("config.json", '{"model_type": "gpt2"}'), ("model.safetensors", "weights"),
                       ("tokenizer.json", '{"the model": "its own tokenizer"}')):
        (model / name).write_text(data)
    run = work / "a-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: a-run\n")
    a_file = work / "a-file"
    a_file.write_text("not a folder\n")
    prepared = work / "prepared"
    from tformer.data.prepare import prepare  # an earlier prepare, done here once

    prepare([text], prepared, tokenizer="char", progress=False, log=lambda _: None)
    head = ["prepare", str(text), "--tokenizer", "char", "--out"]
    return [
        Case("prepare --out a model folder", [*head, str(model)], expect="is a model folder", unchanged=[model]),
        Case("prepare --out a model folder --overwrite", [*head, str(model), "--overwrite"],
             expect="would replace its tokenizer.json", unchanged=[model]),
        Case("prepare --out a run folder", [*head, str(run)], expect="is a training run folder", unchanged=[run]),
        Case("prepare --out a file", [*head, str(a_file)], expect="is a file, not a folder", unchanged=[a_file]),
        Case("prepare --out below a file", [*head, str(a_file / "sub")], expect="is a file, not a folder",
             unchanged=[a_file]),
        Case("prepare --out an earlier prepare", [*head, str(prepared)], expect="pass --overwrite",
             unchanged=[prepared]),
        Case("prepare --vocab-size 0", ["prepare", str(text), "--tokenizer", "bpe", "--vocab-size", "0", "--out",
                                        str(work / "p0")], expect="vocab_size=0"),
        Case("python: prepare(out=model folder)",
             python=f"from tformer.data.prepare import prepare\nprepare([{str(text)!r}], {str(model)!r})",
             expect="is a model folder", unchanged=[model]),
    ]


def _tokenizer_cases(work: Path) -> list[Case]:
    empty = work / "empty.txt"
    empty.write_text("\n \n\n")
    train = "from tformer import Tokenizer\nTokenizer.train"
    return [
        Case("python: Tokenizer.train([])", python=f"{train}([], kind='bpe')", expect="an empty list of files"),
        Case("python: Tokenizer.train(iter([]))", python=f"{train}(iter([]), kind='word')",
             expect="an empty iterator of texts"),
        Case("python: Tokenizer.train of empty texts", python=f"{train}(iter(['', '  ']), kind='wordpiece')",
             expect="all empty or blank"),
        Case("python: Tokenizer.train of an empty file", python=f"{train}([{str(empty)!r}], kind='char')",
             expect="no text in them"),
    ]
