"""`tformer prepare`: nanoGPT's tinyshakespeare numbers, BPE that decodes back to the text, Gutenberg bodies,
chunked encoding equal to whole encoding, and one-line errors for empty or missing files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tformer import Tokenizer
from tformer.cli import main
from tformer.data.prepare import chunks, gutenberg_body, join_texts, prepare, read_text, token_dtype

GUTENBERG = (
    "\ufeffThe Project Gutenberg eBook of A Test\r\n\r\nRelease date: 1999\r\n\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\n\r\n"
    "CHAPTER I.\r\n\r\nIt was a test, and the test was good.\r\nThe end.\r\n\r\n\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\nSection 1. General Terms of Use\r\n"
)
BODY = "CHAPTER I.\n\nIt was a test, and the test was good.\nThe end.\n"


def tokens(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    return np.fromfile(folder / f"{split}.bin", dtype=meta["dtype"])


def tinyshakespeare(data_dir: Path) -> tuple[Path, str]:
    path = data_dir / "tinyshakespeare" / "input.txt.gz"
    return path, gzip.open(path, "rt", encoding="utf-8").read()


def test_tinyshakespeare_char_gives_nanogpts_numbers(data_dir: Path, tmp_path: Path) -> None:
    path, text = tinyshakespeare(data_dir)
    meta = prepare([path], tmp_path, tokenizer="char", log=lambda _: None)
    assert meta["vocab_size"] == 65 and meta["dtype"] == "uint16"
    assert (meta["train_tokens"], meta["val_tokens"]) == (1_003_854, 111_540)
    assert meta["val_fraction"] == 0.1 and meta["inputs"] == [str(path)] and meta["tokenizer"] == "char"
    train, val = tokens(tmp_path, "train"), tokens(tmp_path, "val")
    assert (train.size, val.size) == (1_003_854, 111_540)
    chars = sorted(set(text))  # nanoGPT: stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(text)
    assert train[:20].tolist() == [chars.index(c) for c in text[:20]]
    tok = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert tok.decode(train.tolist()) == text[:int(n * 0.9)] and tok.decode(val.tolist()) == text[int(n * 0.9):]


def test_tinyshakespeare_bpe_8192_decodes_back_to_the_text(data_dir: Path, tmp_path: Path) -> None:
    path, text = tinyshakespeare(data_dir)
    meta = prepare([path], tmp_path, tokenizer="bpe", vocab_size=8192, workers=2, log=lambda _: None)
    assert meta["vocab_size"] == 8192 and meta["dtype"] == "uint16"
    tok = Tokenizer.from_file(tmp_path)
    train, val = tokens(tmp_path, "train"), tokens(tmp_path, "val")
    assert (train.size, val.size) == (meta["train_tokens"], meta["val_tokens"])
    assert tok.decode(train.tolist()) + tok.decode(val.tolist()) == text
    cut = int(len(text) * 0.9)
    assert train.tolist() == tok.encode(text[:cut])  # the chunks and threads change nothing
    assert val.tolist() == tok.encode(text[cut:])


TRICKY = ("Line one.\n\n\n  indented after blank lines\nnext  \ntrailing spaces above\n\t tab\n"
          "It's a 'quote'\n\n東京\n🎉\nend") * 40


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece", "word"])
def test_chunked_encoding_equals_whole_encoding(kind: str) -> None:
    # A plain cut at every line would not do for byte-level BPE: GPT-2's pattern keeps "\n\n" (and " \n") together.
    tok = Tokenizer.train(iter([TRICKY]), kind=kind, vocab_size=None if kind == "char" else 300)
    pieces = list(chunks(TRICKY, tok, size=50))
    assert "".join(pieces) == TRICKY and len(pieces) > 20
    whole = tok.encode(TRICKY, add_special_tokens=False)
    assert [i for piece in pieces for i in tok.encode(piece, add_special_tokens=False)] == whole
    if kind == "bpe":
        lines = TRICKY.splitlines(keepends=True)
        assert [i for line in lines for i in tok.encode(line)] != whole


def test_gutenberg_file_keeps_only_the_body(tmp_path: Path) -> None:
    path = tmp_path / "book.txt.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(GUTENBERG.encode("utf-8"))
    assert read_text(path) == BODY == gutenberg_body(GUTENBERG.removeprefix("\ufeff").replace("\r\n", "\n"))
    assert read_text(path, strip_gutenberg=False) == GUTENBERG.removeprefix("\ufeff").replace("\r\n", "\n")
    meta = prepare([path], tmp_path / "out", tokenizer="char", val_fraction=0.25, log=lambda _: None)
    tok = Tokenizer.from_file(tmp_path / "out")
    text = tok.decode(tokens(tmp_path / "out", "train").tolist()) + tok.decode(tokens(tmp_path / "out", "val").tolist())
    assert text == BODY and meta["train_characters"] == int(len(BODY) * 0.75)
    assert "\r" not in tok.backend.get_vocab() and "\ufeff" not in tok.backend.get_vocab()
    assert gutenberg_body("no markers\nat all\n") == "no markers\nat all\n"


def test_several_files_are_joined_with_one_empty_line_between(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first file\n")
    (tmp_path / "b.txt").write_text("second, no newline")
    (tmp_path / "c.txt").write_text("third")
    assert join_texts(["only\n"]) == "only\n" and join_texts(["only"]) == "only"
    prepare([tmp_path / n for n in ("a.txt", "b.txt", "c.txt")], tmp_path / "out", tokenizer="char",
            val_fraction=0.0, log=lambda _: None)
    tok = Tokenizer.from_file(tmp_path / "out")
    assert tok.decode(tokens(tmp_path / "out", "train").tolist()) == "first file\n\nsecond, no newline\n\nthird"
    assert tokens(tmp_path / "out", "val").size == 0


def test_token_files_switch_to_uint32_past_65536_ids() -> None:
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32


def test_a_given_tokenizer_file_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("the fox and the dog\n" * 50)
    tok = Tokenizer.train(iter(["the fox and the dog\n"]), kind="word")
    tok.save(tmp_path / "word.json")
    meta = prepare([tmp_path / "in.txt"], tmp_path / "out", tokenizer_file=tmp_path / "word.json", log=lambda _: None)
    assert meta["tokenizer"] == "word" and meta["train_tokens"] + meta["val_tokens"] == 5 * 50
    assert tokens(tmp_path / "out", "train")[:5].tolist() == tok.encode("the fox and the dog")


def test_a_tokenizer_file_that_lacks_a_character_is_refused_by_name(tmp_path: Path) -> None:
    Tokenizer.train(iter(["abc\n"]), kind="char").save(tmp_path / "abc.json")
    (tmp_path / "in.txt").write_text("abcabc\nabcd\n")
    with pytest.raises(ValueError, match="the character 'd' is not in the vocabulary"):
        prepare([tmp_path / "in.txt"], tmp_path / "out", tokenizer_file=tmp_path / "abc.json", log=lambda _: None)
    assert not (tmp_path / "out" / "train.bin").exists() and not list((tmp_path / "out").glob(".*.tmp"))


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="the corpus is empty: .*empty.txt holds no text; pass files"):
        prepare([tmp_path / "empty.txt"], tmp_path / "out", log=lambda _: None)
    (tmp_path / "front-matter.txt").write_text("Title\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
                                               "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence\n")
    with pytest.raises(ValueError, match="no text between its Gutenberg START/END markers; pass --no-strip"):
        prepare([tmp_path / "front-matter.txt"], tmp_path / "out", log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="no such input file: .*missing.txt"):
        prepare([tmp_path / "empty.txt", tmp_path / "missing.txt"], tmp_path / "out", log=lambda _: None)
    with pytest.raises(ValueError, match="val_fraction=1.5 is not in"):
        prepare([tmp_path / "empty.txt"], tmp_path / "out", val_fraction=1.5, log=lambda _: None)
    assert not (tmp_path / "out" / "train.bin").exists()


def test_cli_prepares_and_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = "To be, or not to be: that is the question.\n"
    (tmp_path / "in.txt").write_text(line * 20)
    assert main(["prepare", str(tmp_path / "in.txt"), "--out", str(tmp_path / "out"), "--tokenizer", "char"]) == 0
    out = capsys.readouterr().out
    assert "read 1 file: 860 characters (774 train, 86 val)" in out
    assert "train.bin: 774 tokens, val.bin: 86 tokens (uint16)" in out
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["vocab_size"] == len(set(line))
    assert main(["prepare", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out"), "--tokenizer", "bpe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tformer prepare: error: no such input file:") and "nope.txt" in err


def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_model_folder_a_run_folder_and_a_file_are_refused_as_out(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("To be, or not to be.\n" * 20)
    model = tmp_path / "model"
    model.mkdir()
    for name, data in (("config.json", b'{"model_type": "gpt2"}'), ("model.safetensors", b"weights"),
                       ("tokenizer.json", b'{"the": "model\'s own"}')):
        (model / name).write_bytes(data)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: x\n")
    (tmp_path / "file").write_text("not a folder")
    before = _fingerprint(tmp_path)
    with pytest.raises(FileExistsError, match=r"--out .*model is a model folder \(config.json, model.safetensors\): "
                                              r"preparing there would replace its tokenizer.json"):
        prepare([tmp_path / "in.txt"], model, log=lambda _: None, overwrite=True)  # --overwrite does not unlock it
    with pytest.raises(FileExistsError, match=r"--out .*run is a training run folder \(recipe.yaml, checkpoints\)"):
        prepare([tmp_path / "in.txt"], run, log=lambda _: None)
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(NotADirectoryError, match=r"--out .*file.* is a file, not a folder"):
            prepare([tmp_path / "in.txt"], out, log=lambda _: None)
    assert _fingerprint(tmp_path) == before


def test_an_earlier_prepare_is_replaced_only_with_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("abc abc abc\n" * 30)
    (tmp_path / "b.txt").write_text("xyz xyz xyz\n" * 30)
    out = tmp_path / "out"
    args = ["prepare", str(tmp_path / "a.txt"), "--out", str(out), "--tokenizer", "char"]
    assert main(args) == 0
    first = _fingerprint(out)
    assert main(["prepare", str(tmp_path / "b.txt"), "--out", str(out), "--tokenizer", "char"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds train.bin, val.bin, tokenizer.json, meta.json" in err
    assert "pass --overwrite" in err and _fingerprint(out) == first
    assert main(["prepare", str(tmp_path / "b.txt"), "--out", str(out), "--tokenizer", "char", "--overwrite"]) == 0
    assert json.loads((out / "meta.json").read_text())["inputs"] == [str(tmp_path / "b.txt")]
    # the tokenizer the prepare reads from --out itself is not "replaced": a second split with it is fine
    (tmp_path / "again").mkdir()
    Tokenizer.from_file(out).save(tmp_path / "again" / "tokenizer.json")
    assert main(["prepare", str(tmp_path / "b.txt"), "--out", str(tmp_path / "again"),
                 "--tokenizer-file", str(tmp_path / "again" / "tokenizer.json")]) == 0


def test_a_bad_tokenizer_file_is_refused_before_the_inputs_are_read(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import tformer.data.prepare as module

    (tmp_path / "in.txt").write_text("some text\n")
    (tmp_path / "bad.json").write_text("{}")
    monkeypatch.setattr(module, "read_text", lambda *_: pytest.fail("the inputs were read first"))
    with pytest.raises(ValueError, match="bad.json is not a tokenizer.json"):
        prepare([tmp_path / "in.txt"], tmp_path / "out", tokenizer_file=tmp_path / "bad.json", log=lambda _: None)


def test_a_truncated_gz_file_is_one_line_naming_it(tmp_path: Path) -> None:
    whole = gzip.compress(("some text of a book\n" * 200).encode())
    (tmp_path / "cut.txt.gz").write_bytes(whole[:-10])
    with pytest.raises(ValueError, match=r"cut\.txt\.gz is a truncated or damaged \.gz file"):
        read_text(tmp_path / "cut.txt.gz")
