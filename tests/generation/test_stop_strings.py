"""Stop strings end a sequence where `transformers`' stop_strings do: greedy decoding, beam search, sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import tformer
from tests.dev_dependency import import_dev
from tests.weights import randomize
from tformer import ModelConfig, Tokenizer
from tformer.generation.stop_strings import StopStrings

transformers = import_dev("transformers")

TEXT = ["the quick brown fox jumps over the lazy dog.\n\nthe end", "Café? naïve résumé, a b c d e f"] * 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with a byte-level BPE tokenizer, saved by tformer (transformers reads it too)."""
    tok = Tokenizer.train(iter(TEXT), kind="bpe", vocab_size=300)
    eos = tok.eos_token_id
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos)
    path = tmp_path_factory.mktemp("stop")
    tformer.save_pretrained(randomize(tformer.build_model(config), seed=3), path)
    tok.save(path)
    return path


def _texts(tok: Tokenizer, ids: torch.Tensor) -> list[str]:
    return [tok.decode(row, skip_special_tokens=False) for row in ids]


def _unprintable(tok: Tokenizer) -> list[list[int]]:
    """bad_words_ids for every token whose text is not printable ASCII (a random model likes lone bytes)."""
    texts = {t: tok.decode([t], skip_special_tokens=False) for t in range(len(tok))}
    return [[t] for t, text in texts.items() if not (text.isascii() and text.isprintable() and text)]


def _stop_in_output(folder: Path) -> tuple[torch.Tensor, str]:
    """A prompt and a 2-character string that spans two tokens in the middle of the model's greedy continuation."""
    tok, model = Tokenizer.from_file(folder), tformer.from_pretrained(folder)
    prompt = torch.tensor([tok.encode("the quick")])
    out = tformer.generate(model, prompt, max_new_tokens=16, eos_token_id=[], bad_words_ids=_unprintable(tok))
    pieces = [tok.decode([t]) for t in out[0, prompt.size(1):].tolist()]
    for i in range(3, len(pieces)):
        if all(p and p.isascii() and p.isprintable() for p in pieces[i - 1:i + 1]):
            return prompt, pieces[i - 1][-1] + pieces[i][0]
    raise AssertionError(f"the fixture's continuation has no two ASCII tokens in a row: {pieces}")


def test_token_text_matching_follows_transformers() -> None:
    class Chars:
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return {1: "st", 2: "op", 3: "opera", 4: "las", 5: "topper", 6: "at", 7: "xstop", 8: "stop"}[ids[0]]

    stop = StopStrings(["stop"], Chars())
    rows = {(1, 2): True, (8,): True, (1, 3): True, (4, 5): True, (8, 6): False, (1, 2, 6): False, (7,): False}
    for row, expected in rows.items():
        assert bool(stop(torch.tensor([list(row)]))[0]) is expected, row


@pytest.mark.parametrize("mode", [dict(num_beams=1), dict(num_beams=3, num_return_sequences=2),
                                  dict(do_sample=True, num_return_sequences=3, top_k=0)],
                         ids=["greedy", "beam", "sample"])
def test_stop_strings_match_transformers(folder: Path, mode: dict[str, Any]) -> None:
    prompt, stop = _stop_in_output(folder)
    theirs_model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    theirs_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    tok, ours = Tokenizer.from_file(folder), tformer.from_pretrained(folder)
    eos = tok.eos_token_id
    args = dict(max_new_tokens=16, eos_token_id=eos, pad_token_id=eos, bad_words_ids=_unprintable(tok), **mode)
    torch.manual_seed(11)
    with torch.no_grad():
        expected = theirs_model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), stop_strings=[stop],
                                         tokenizer=theirs_tok, **args)
    seed = dict(seed=11) if mode.get("do_sample") else {}
    got = tformer.generate(ours, prompt, stop_strings=[stop], tokenizer=tok, **seed, **args)
    assert torch.equal(got, expected)
    if mode.get("num_beams") == 1:  # greedy: the text ends right after the stop string
        assert got.size(1) < prompt.size(1) + 16
        assert stop in _texts(tok, got[:, prompt.size(1):])[0][-len(stop) - 8:]


def test_stop_strings_need_a_tokenizer_and_text(folder: Path) -> None:
    model = tformer.from_pretrained(folder)
    with pytest.raises(ValueError, match="need the model's tokenizer"):
        tformer.generate(model, torch.tensor([[5, 6]]), max_new_tokens=3, stop_strings=["\n\n"])
    with pytest.raises(ValueError, match="stop string '' must be a non-empty string"):
        tformer.generate(model, torch.tensor([[5, 6]]), max_new_tokens=3, stop_strings=[""],
                         tokenizer=Tokenizer.from_file(folder))
