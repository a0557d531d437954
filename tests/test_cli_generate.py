"""`tformer generate` and `tformer translate`: streamed text, N-best lists with scores, one-line errors."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch

import tformer
from tformer import ModelConfig, Tokenizer
from tformer.cli import main

from .weights import randomize

ENGLISH = ["one two three", "four five six", "seven eight nine", "ten eleven twelve"]
GERMAN = ["eins zwei drei", "vier fünf sechs", "sieben acht neun", "zehn elf zwölf"]
TRANSLATOR_STEPS = 80
N_BEST_LINE = re.compile(r"^(\d+)\. (.*)  \(score (-?\d+\.\d+)\)$")



@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with a byte-level BPE tokenizer (so characters split across tokens), saved as a folder."""
    tok = Tokenizer.train(iter(["the quick brown fox jumps over the lazy dog", "Café? 🎉 naïve résumé"] * 5),
                          kind="bpe", vocab_size=300)
    eos = tok.eos_token_id  # <|endoftext|>
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos)
    folder = tmp_path_factory.mktemp("gpt")
    tformer.save_pretrained(randomize(tformer.build_model(config), seed=0), folder)
    tok.save(folder)
    return folder


@pytest.fixture(scope="module")
def translator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder-decoder with a word tokenizer ([PAD] 0, [UNK] 1, [BOS] 2 = decoder start, [EOS] 3), taught
    the four ENGLISH -> GERMAN pairs (a few seconds): a random one writes one word over and over whatever the
    source, so a command that translated the wrong text would print the same thing."""
    tok = Tokenizer.train(iter(ENGLISH + GERMAN), kind="word")
    config = ModelConfig.preset("transformer-tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.bos_token_id, sinusoidal_layout="halves", dropout=0.0,
                                attention_dropout=0.0)
    torch.manual_seed(0)
    model = tformer.build_model(config)
    sources = torch.tensor([tok.encode(text) for text in ENGLISH])
    targets = torch.tensor([[*tok.encode(text, add_special_tokens=False), tok.eos_token_id] for text in GERMAN])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(TRANSLATOR_STEPS):
        optimizer.zero_grad()
        model(input_ids=sources, labels=targets).loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("translator")
    tformer.save_pretrained(model.eval(), folder)
    tok.save(folder)
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _library(folder: Path, text: str, **kwargs: object) -> tuple[Tokenizer, tformer.generation.GenerateOutput]:
    tok = Tokenizer.from_file(folder)
    model = tformer.from_pretrained(folder)
    out = tformer.generate(model, torch.tensor([tok.encode(text)]), return_scores=True, **kwargs)
    return tok, out


# ----------------------------------------------------------------------------- generate


@pytest.mark.parametrize("flags, kwargs", [
    ([], {}),
    (["--do-sample", "--seed", "3", "--temperature", "1.5", "--top-k", "50"],
     dict(do_sample=True, seed=3, temperature=1.5, top_k=50)),
    (["--no-cache"], dict(use_cache=False)),
], ids=["greedy", "sampling", "no-cache"])
def test_generate_streams_the_prompt_and_its_continuation(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                                          flags: list[str], kwargs: dict[str, object]) -> None:
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "Café? The", "--max-new-tokens", "12", *flags)
    assert code == 0 and err == ""
    tok, expected = _library(gpt_dir, "Café? The", max_new_tokens=12, **kwargs)
    assert out == tok.decode(expected.sequences[0]) + "\n"  # the streamed pieces are the whole decode
    assert out.startswith("Café? The") and len(out) > len("Café? The\n")


def test_generate_compile_flag_reaches_generate(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tformer.generation as generation  # cli/generate.py imports generate when the command runs (a fast --help)

    seen: list[object] = []
    original = generation.generate

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["compile"])
        return original(*args, **{k: v for k, v in kwargs.items() if k != "compile"})

    monkeypatch.setattr(generation, "generate", recording)
    _, plain, _ = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "5")
    code, compiled, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "5", "--compile")
    assert code == 0 and err == "" and compiled == plain
    assert seen == [False, True]


def test_generate_default_length_fits_the_position_table(capsys: pytest.CaptureFixture[str], gpt_dir: Path) -> None:
    prompt = " ".join(["the quick brown fox"] * 6)  # 24 tokens: 50 new ones would not fit in 64 positions
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, prompt)
    assert code == 0 and err == ""
    tok, expected = _library(gpt_dir, prompt, max_new_tokens=64 - len(Tokenizer.from_file(gpt_dir).encode(prompt)) + 1)
    assert out == tok.decode(expected.sequences[0]) + "\n"


def test_generate_with_beams_prints_ranked_sequences(capsys: pytest.CaptureFixture[str], gpt_dir: Path) -> None:
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "6",
                          "--num-beams", "4", "--num-return-sequences", "3", "--length-penalty", "0.8")
    assert code == 0 and err == ""
    tok, expected = _library(gpt_dir, "the lazy", max_new_tokens=6, num_beams=4, num_return_sequences=3,
                             length_penalty=0.8)
    lines = out.splitlines()
    assert len(lines) == 3
    matches = [N_BEST_LINE.match(line) for line in lines]
    assert all(matches)
    assert [m.group(2) for m in matches] == tok.decode_batch(expected.sequences)
    scores = [float(m.group(3)) for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx(expected.scores.tolist(), abs=1e-3)


@pytest.mark.parametrize("flags, kwargs", [
    (["--repetition-penalty", "1.7"], dict(repetition_penalty=1.7)),
    (["--no-repeat-ngram-size", "2"], dict(no_repeat_ngram_size=2)),
    (["--min-new-tokens", "6"], dict(min_new_tokens=6)),
    (["--forced-eos-token-id", "7"], dict(forced_eos_token_id=7)),
    (["--forced-bos-token-id", "9"], dict(forced_bos_token_id=9)),
    (["--num-beams", "3", "--repetition-penalty", "1.5", "--no-repeat-ngram-size", "3"],
     dict(num_beams=3, repetition_penalty=1.5, no_repeat_ngram_size=3)),
], ids=["repetition", "ngram", "min-new", "forced-eos", "forced-bos", "beams"])
def test_generation_controls_reach_generate(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                            flags: list[str], kwargs: dict[str, object]) -> None:
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "10", *flags)
    assert code == 0 and err == ""
    tok, expected = _library(gpt_dir, "the lazy", max_new_tokens=10, **kwargs)
    assert out == tok.decode(expected.sequences[0]) + "\n"
    _, plain = _library(gpt_dir, "the lazy", max_new_tokens=10)
    if not {"forced_bos_token_id", "min_new_tokens"} & set(kwargs):  # (BOS: a prompt of several tokens)
        assert not torch.equal(plain.sequences, expected.sequences)  # each control changes this model's output


def test_generate_stops_at_a_stop_string(capsys: pytest.CaptureFixture[str], gpt_dir: Path) -> None:
    tok, plain = _library(gpt_dir, "the lazy", max_new_tokens=12, eos_token_id=[])
    new = tok.decode(plain.sequences[0, len(tok.encode("the lazy")):])
    stop = new[3:5]
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "12",
                          "--stop", stop)
    assert code == 0 and err == ""
    _, expected = _library(gpt_dir, "the lazy", max_new_tokens=12, stop_strings=[stop], tokenizer=tok)
    assert out == tok.decode(expected.sequences[0]) + "\n"
    assert stop in out and len(out) < len(tok.decode(plain.sequences[0])) + 1


def test_prompt_dash_reads_standard_input(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Café? The\n"))
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "-", "--max-new-tokens", "6")
    assert code == 0 and err == ""
    tok, expected = _library(gpt_dir, "Café? The", max_new_tokens=6)
    assert out == tok.decode(expected.sequences[0]) + "\n"


def test_device_and_threads(capsys: pytest.CaptureFixture[str], gpt_dir: Path) -> None:
    threads = torch.get_num_threads()
    try:
        code, out, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "6",
                              "--device", "cpu", "--threads", "1")
        assert code == 0 and err == "" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    tok, expected = _library(gpt_dir, "the lazy", max_new_tokens=6)
    assert out == tok.decode(expected.sequences[0]) + "\n"


@pytest.mark.parametrize("flags, named", [
    (["--seed", "3"], r"seed=3 is used by sampling only"),
    (["--temperature", "0.7", "--top-p", "0.9"], r"temperature=0.7, top_p=0.9 are used by sampling only"),
    (["--length-penalty", "0.5"], r"length_penalty=0.5 only applies to beam search"),
], ids=["seed", "temperature", "length-penalty"])
def test_flags_the_decoding_ignores_warn_in_one_line(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                                      flags: list[str], named: str) -> None:
    code, out, err = _run(capsys, "generate", "--model", gpt_dir, "the lazy", "--max-new-tokens", "6", *flags)
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("tformer generate: warning: ") and re.search(named, err), err
    tok, expected = _library(gpt_dir, "the lazy", max_new_tokens=6)
    assert out == tok.decode(expected.sequences[0]) + "\n"  # the command still runs, greedily


# ----------------------------------------------------------------------------- translate


@pytest.fixture(scope="module")
def td_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A T-D (decoder_seq2seq) model trained a few steps by the Trainer: its final/ folder."""
    from tformer.training import Trainer, load_recipe

    out = tmp_path_factory.mktemp("td") / "run"
    recipe = load_recipe({
        "name": "td", "model": {"preset": "gpt2-tiny"},
        "data": {"corpus": "numbers", "train_pairs": 200, "valid_pairs": 8, "test_pairs": 8, "tokenizer": "bpe",
                 "vocab_size": 320, "batch_size": 8, "max_length": 64},
        "train": {"objective": "decoder_seq2seq", "max_steps": 4, "lr": 3e-3, "warmup_steps": 1, "threads": 1,
                  "device": "cpu"},
        "eval": {"every": 0, "batches": 1, "bleu": False},
        "out": {"dir": str(out), "progress": "none", "tensorboard": False, "plot": False, "log_every": 1}}, [])
    return Trainer(recipe).fit().model_dir


def test_translate_with_a_decoder_only_seq2seq_model(capsys: pytest.CaptureFixture[str], td_run: Path) -> None:
    """translate builds source [SEP] for a T-D folder (its generation_config.json says so) and prints the target."""
    from tformer.training.evaluate import translate

    assert json.loads((td_run / "generation_config.json").read_text())["tformer_source_separator"] == "[SEP]"
    code, out, err = _run(capsys, "translate", "--model", td_run, "one hundred and five", "--max-new-tokens", "8")
    assert code == 0 and err == ""
    tok, model = Tokenizer.from_file(td_run), tformer.from_pretrained(td_run)
    ids = [*tok.encode("one hundred and five", add_special_tokens=False), tok.token_to_id("[SEP]")]
    expected = tformer.generate(model, torch.tensor([ids]), max_new_tokens=8)
    assert out == tok.decode(expected[0, len(ids):]) + "\n"
    assert out.strip() == translate(model, tok, ["one hundred and five"], decoder_only=True,
                                    device=torch.device("cpu"), max_new_tokens=8)[0].strip()


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RNNsearch (rnnsearch-tiny) trained by the Trainer with the seq2seq objective on numbers: its final/ folder."""
    from tformer.training import Trainer, load_recipe

    out = tmp_path_factory.mktemp("rnn") / "run"
    recipe = load_recipe({
        "name": "rnn", "model": {"preset": "rnnsearch-tiny", "config": {"max_positions": 64}},
        "data": {"corpus": "numbers", "train_pairs": 200, "valid_pairs": 8, "test_pairs": 8, "tokenizer": "char",
                 "batch_size": 8, "max_length": 64},
        "train": {"objective": "seq2seq", "max_steps": 30, "lr": 3e-3, "warmup_steps": 1, "threads": 1,
                  "device": "cpu"},
        "eval": {"every": 0, "batches": 1, "bleu": False},
        "out": {"dir": str(out), "progress": "none", "tensorboard": False, "plot": False, "log_every": 10}}, [])
    return Trainer(recipe).fit().model_dir


def test_translate_with_an_rnn_model_folder(capsys: pytest.CaptureFixture[str], rnn_run: Path) -> None:
    """The line printed is the library's greedy translation; --num-beams 3 prints its ranked 3-best list."""
    assert json.loads((rnn_run / "config.json").read_text())["tformer_config"]["family"] == "rnn"
    code, out, err = _run(capsys, "translate", "--model", rnn_run, "one hundred and five", "--max-new-tokens", "12")
    assert code == 0 and err == ""
    tok, expected = _library(rnn_run, "one hundred and five", max_new_tokens=12)
    assert out == tok.decode(expected.sequences[0]) + "\n" and out.strip()
    code, out, err = _run(capsys, "translate", "--model", rnn_run, "one hundred and five", "--num-beams", "3",
                          "--num-return-sequences", "3", "--max-new-tokens", "12")
    assert code == 0 and err == ""
    matches = [N_BEST_LINE.match(line) for line in out.splitlines()]
    assert len(matches) == 3 and all(matches), out
    _, beams = _library(rnn_run, "one hundred and five", max_new_tokens=12, num_beams=3, num_return_sequences=3)
    assert [m.group(2) for m in matches] == tok.decode_batch(beams.sequences)


def test_translate_prints_the_translation(capsys: pytest.CaptureFixture[str], translator_dir: Path) -> None:
    """Each sentence's printed line is the library's greedy translation of that sentence, decoded; the trained
    model translates the four differently (its German), so a line of the wrong sentence would not match."""
    printed = []
    for english in ENGLISH:
        code, out, err = _run(capsys, "translate", "--model", translator_dir, english, "--max-new-tokens", "8")
        assert code == 0 and err == ""
        tok, expected = _library(translator_dir, english, max_new_tokens=8)
        assert out == tok.decode(expected.sequences[0]) + "\n"  # the start and end tokens are not printed
        printed.append(out.rstrip("\n"))
    assert printed == GERMAN


def test_translate_n_best_list_is_ranked_with_scores(capsys: pytest.CaptureFixture[str], translator_dir: Path) -> None:
    code, out, err = _run(capsys, "translate", "--model", translator_dir, "four five six", "--num-beams", "3",
                          "--num-return-sequences", "3", "--max-new-tokens", "8", "--early-stopping", "never")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 3
    matches = [N_BEST_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    scores = [float(m.group(3)) for m in matches]
    assert scores == sorted(scores, reverse=True)
    tok, expected = _library(translator_dir, "four five six", max_new_tokens=8, num_beams=3, num_return_sequences=3,
                             early_stopping="never")
    assert [m.group(2) for m in matches] == tok.decode_batch(expected.sequences)
    assert all(abs(shown - score) <= 5e-4 for shown, score in zip(scores, expected.scores.tolist(), strict=True))
    assert len({m.group(2) for m in matches}) == 3 and matches[0].group(2) == "vier fünf sechs"


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, translator_dir: Path) -> Path:
    tok = Tokenizer.from_file(translator_dir)
    folder = tmp_path_factory.mktemp("bert")
    tformer.save_pretrained(tformer.build_model(ModelConfig.preset("bert-tiny", vocab_size=len(tok))), folder)
    tok.save(folder)
    return folder


@pytest.fixture(scope="module")
def no_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, gpt_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("no-tokenizer")
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((gpt_dir / name).read_bytes())
    return folder


ERRORS = {  # case: (command line, where {gpt}, {translator}, {bert}, {no_tokenizer}, {rnn} are model folders; named)
    "missing folder": (["generate", "--model", "{gpt}/nowhere", "hello"], r"model folder '.*nowhere' does not exist"),
    "empty prompt": (["generate", "--model", "{gpt}", "  \n "], r"the prompt is empty"),
    "long prompt": (["generate", "--model", "{gpt}", "the lazy dog " * 40],
                    r"the prompt is \d+ tokens long but the model's position table holds 64"),
    "too many new tokens": (["generate", "--model", "{gpt}", "the", "--max-new-tokens", "500"],
                            r"max_new_tokens 500 exceeds the position table"),
    "translate with a gpt": (["translate", "--model", "{gpt}", "one two"],
                             r"holds a gpt model, but translate needs an encoder-decoder"),
    "generate with bert": (["generate", "--model", "{bert}", "one two"], r"holds a bert model"),
    "generate with a translator": (["generate", "--model", "{translator}", "one two"],
                                   r"holds an encoder-decoder model.*tformer translate"),
    "generate with an rnn": (["generate", "--model", "{rnn}", "one two"], r"holds an rnn model.*tformer translate"),
    "empty sentence": (["translate", "--model", "{translator}", ""], r"the sentence is empty"),
    "no tokenizer": (["generate", "--model", "{no_tokenizer}", "the"], r"no-tokenizer\w*/tokenizer.json' is missing"),
    "bad sampling flag": (["generate", "--model", "{gpt}", "the", "--do-sample", "--top-p", "1.5"], r"top_p=1.5"),
    "repetition penalty 0": (["generate", "--model", "{gpt}", "the", "--repetition-penalty", "0"],
                             r"--repetition-penalty=0.0 must be > 0"),
    "negative ngram": (["generate", "--model", "{gpt}", "the", "--no-repeat-ngram-size", "-1"],
                       r"--no-repeat-ngram-size=-1 must be >= 0"),
    "min above max": (["generate", "--model", "{gpt}", "the", "--min-new-tokens", "9", "--max-new-tokens", "4"],
                      r"--min-new-tokens=9 is more than --max-new-tokens=4"),
    "empty stop": (["generate", "--model", "{gpt}", "the", "--stop", ""], r"--stop='' is empty"),
    "forced eos outside": (["translate", "--model", "{translator}", "one", "--forced-eos-token-id", "9999"],
                           r"forced_eos_token_id=9999 is outside the vocabulary"),
    "zero threads": (["generate", "--model", "{gpt}", "the", "--threads", "0"], r"--threads=0 must be at least 1"),
    "bad device": (["generate", "--model", "{gpt}", "the", "--device", "tpu9"], r"--device='tpu9' is not a device"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_exit_non_zero(capsys: pytest.CaptureFixture[str], gpt_dir: Path,
                                               translator_dir: Path, bert_dir: Path, no_tokenizer_dir: Path,
                                               request: pytest.FixtureRequest, case: str) -> None:
    argv, named = ERRORS[case]
    folders = dict(gpt=gpt_dir, translator=translator_dir, bert=bert_dir, no_tokenizer=no_tokenizer_dir)
    if "{rnn}" in argv:  # trained only for the case that reads it
        folders["rnn"] = request.getfixturevalue("rnn_run")
    code, out, err = _run(capsys, *(arg.format(**folders) for arg in argv))
    assert code != 0
    assert out == ""  # nothing half-printed before the error
    assert err.count("\n") == 1 and err.startswith(f"tformer {argv[0]}: error: ")
    assert re.search(named, err), err
