"""`tformer.evaluate_lm`: the strided perplexity of transformers' guide, its special cases, bits per byte, the
pseudo-perplexity of a masked LM, and the text it reads."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import tformer
from tformer import ModelConfig, Tokenizer
from tformer.evaluation.lm import sliding_windows

from ..conftest import randomize
from ..dev_dependency import import_dev

transformers = import_dev("transformers")

TEXTS = ["The quick brown fox jumps over the lazy dog, and the dog sleeps on in the warm afternoon sun.",
         "A second file: naïve cafés serve crème brûlée; the fox returns at night and the dog wakes up."]
POSITIONS = 32


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return Tokenizer.train(iter(TEXTS * 3), kind="bpe", vocab_size=300)


def _hf_gpt2(vocab: int) -> Any:
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=vocab, n_positions=POSITIONS, n_embd=32, n_layer=2, n_head=4, n_inner=48))


def _hf_gpt1(vocab: int) -> Any:
    return transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=vocab, n_positions=POSITIONS, n_embd=32, n_layer=2, n_head=4))


@pytest.fixture(scope="module", params=[_hf_gpt2, _hf_gpt1], ids=["gpt2", "gpt1"])
def hf_lm(request: pytest.FixtureRequest, bpe: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A random tiny transformers LM (fixed seed), saved as a folder with the BPE tokenizer beside it."""
    torch.manual_seed(0)
    model = randomize(request.param(len(bpe)), seed=1).eval()
    folder = tmp_path_factory.mktemp(request.param.__name__)
    model.save_pretrained(folder)
    bpe.save(folder)
    return model, folder


@pytest.fixture(scope="module")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("texts")
    paths = [folder / "a.txt", folder / "b.txt.gz"]
    paths[0].write_text(TEXTS[0], encoding="utf-8")
    paths[1].write_bytes(gzip.compress(TEXTS[1].encode("utf-8")))
    return paths


def _guide_ids(folder: Path, text: str) -> torch.Tensor:
    """The guide's `tokenizer(text, return_tensors="pt").input_ids`, by transformers' own tokenizer class."""
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    return hf_tokenizer(text, return_tensors="pt").input_ids


@torch.no_grad()
def _guide_strided_nll(model: Any, ids: torch.Tensor, max_length: int, stride: int) -> tuple[float, int]:
    """transformers' perplexity guide, its loop: summed NLL and the number of tokens scored.

    The guide counts `num_valid_tokens - batch_size` per window (the one label the shift drops); that is the
    number scored when a window's first label is valid (the first window, stride = max-length) and one too few when
    windows overlap (that label is -100 already), so the count here is of the labels actually scored."""
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin_loc in range(0, ids.size(1), stride):
        end_loc = min(begin_loc + max_length, ids.size(1))
        trg_len = end_loc - prev_end
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        scored = int((target_ids[:, 1:] != -100).sum())
        if scored:
            nll_sum += float(model(input_ids, labels=target_ids).loss) * scored
            n_tokens += scored
        prev_end = end_loc
        if end_loc == ids.size(1):
            break
    return nll_sum, n_tokens


@pytest.mark.parametrize("max_length, stride", [(16, 8), (16, 5), (32, 11), (8, 7)])
def test_strided_loss_equals_transformers_perplexity_guide(hf_lm: tuple[Any, Path], text_files: list[Path],
                                                            max_length: int, stride: int) -> None:
    model, folder = hf_lm
    ids = _guide_ids(folder, "\n\n".join(TEXTS))  # the guide joins documents with "\n\n"
    assert ids.size(1) > 2 * POSITIONS  # several windows even at max-length 32
    nll, tokens = _guide_strided_nll(model, ids, max_length, stride)

    result = tformer.evaluate_lm(folder, text_files, max_length=max_length, stride=stride, batch_size=3)
    assert result.tokens == tokens == ids.size(1) - 1  # every token but the first, once
    first = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json")).decode(ids[0, :1])
    assert result.bytes == result.text_bytes - len(first.encode()) and first == "The"
    assert result.loss == pytest.approx(nll / tokens, abs=1e-4)
    assert result.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-4)


@torch.no_grad()
def test_stride_equal_to_max_length_is_non_overlapping_windows(hf_lm: tuple[Any, Path], text_files: list[Path]) -> None:
    model, folder = hf_lm
    ids = _guide_ids(folder, "\n\n".join(TEXTS))[0]
    max_length = 12
    nll, tokens = 0.0, 0
    for chunk in ids.split(max_length):  # each window read alone; its first token is context only
        if len(chunk) > 1:
            logits = model(chunk[None]).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum"))
            tokens += len(chunk) - 1
    result = tformer.evaluate_lm(folder, text_files, max_length=max_length, stride=max_length, batch_size=4)
    assert result.tokens == tokens == len(ids) - math.ceil(len(ids) / max_length)
    assert result.nll == pytest.approx(nll, rel=1e-5)


@torch.no_grad()
def test_stride_one_gives_every_token_its_full_context(hf_lm: tuple[Any, Path], bpe: Tokenizer) -> None:
    model, folder = hf_lm
    text = TEXTS[0]
    ids = torch.tensor(bpe.encode(text, add_special_tokens=False))
    max_length = 8
    nll = 0.0
    for t in range(1, len(ids)):  # token t from the max_length - 1 tokens before it (all of them near the start)
        context = ids[max(0, t - max_length + 1):t]
        log_p = model(context[None]).logits[0, -1].log_softmax(-1)
        nll -= float(log_p[ids[t]])
    result = tformer.evaluate_lm(folder, text=text, max_length=max_length, stride=1, batch_size=16)
    assert result.tokens == len(ids) - 1
    assert result.windows == len(ids) - max_length + 1
    assert result.nll == pytest.approx(nll, rel=1e-5)


@pytest.mark.parametrize("max_length, stride, context", [(64, 32, "n"), (5, 5, "n ,vf")])
def test_bits_per_byte_and_per_char_of_a_uniform_model(max_length: int, stride: int, context: str) -> None:
    """Zero weights give zero logits: p = 1/16 for every token, 4 bits each, whatever the context. The tokens
    that are context only (the first; with stride = max-length the first of each window) are not in the bytes."""
    text = "naïve café, naïve café"  # 22 characters, 26 UTF-8 bytes (ï and é are 2 bytes each)
    tok = Tokenizer.train(iter([text]), kind="char", special_tokens=[])
    model = tformer.build_model(ModelConfig.preset("gpt2-tiny", vocab_size=16, bos_token_id=None, eos_token_id=None))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    result = tformer.evaluate_lm(model, text=text, tokenizer=tok, max_length=max_length, stride=stride)
    scored = 22 - len(context)  # windows at 0, 5, 10, 15, 20 begin with n, " ", ",", v, f: one byte each
    assert (result.tokens, result.chars, result.bytes) == (scored, scored, 26 - len(context))
    assert (result.text_chars, result.text_bytes) == (22, 26)
    assert result.loss == pytest.approx(math.log(16))
    assert result.perplexity == pytest.approx(16)
    assert result.bits_per_byte == pytest.approx(scored * 4 / (26 - len(context)))
    assert result.bits_per_char == pytest.approx(4.0)


def test_batching_and_kept_logits_do_not_change_an_attention_pattern_model(bpe: Tokenizer) -> None:
    """A T-DMCA (local and memory-compressed layers): batched windows scoring only their new tokens give what
    each window read alone, with every logit computed, gives."""
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(bpe), attention_pattern="LM", local_block_size=4,
                                compression=2, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = tformer.build_model(config).eval()
    text = "\n\n".join(TEXTS)
    ids = torch.tensor(bpe.encode(text, add_special_tokens=False))
    nll = 0.0
    with torch.no_grad():
        for begin, first, end in sliding_windows(len(ids), 16, 6):
            logits = model(ids[begin:end][None]).logits[0, first - begin - 1:-1]
            nll += float(torch.nn.functional.cross_entropy(logits, ids[first:end], reduction="sum"))
    result = tformer.evaluate_lm(model, text=text, tokenizer=bpe, max_length=16, stride=6, batch_size=4)
    assert result.nll == pytest.approx(nll, rel=1e-5)


def test_sliding_windows_follow_the_guide() -> None:
    assert sliding_windows(10, 4, 2) == [(0, 1, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
    assert sliding_windows(9, 4, 4) == [(0, 1, 4), (4, 5, 8)]  # the one-token tail window scores nothing
    assert sliding_windows(3, 8, 4) == [(0, 1, 3)]


# ---------------------------------------------------------------------------------------------- masked LM


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Tokenizer, Path]:
    tok = Tokenizer.train(iter(TEXTS * 3), kind="wordpiece", vocab_size=120)
    torch.manual_seed(0)
    model = randomize(transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=16, type_vocab_size=2)), seed=2).eval()
    folder = tmp_path_factory.mktemp("bert")
    model.save_pretrained(folder)
    tok.save(folder)
    return model, tok, folder


@torch.no_grad()
def test_pseudo_perplexity_equals_masking_one_token_at_a_time(hf_bert: tuple[Any, Tokenizer, Path]) -> None:
    model, tok, folder = hf_bert
    text = TEXTS[0]
    ids = tok.encode(text, add_special_tokens=False)
    block = 16 - 2  # [CLS] block [SEP] in the 16 positions
    assert len(ids) > 2 * block
    pll = 0.0
    for start in range(0, len(ids), block):
        row = [tok.cls_token_id, *ids[start:start + block], tok.sep_token_id]
        for i in range(1, len(row) - 1):
            masked = torch.tensor([row[:i] + [tok.mask_token_id] + row[i + 1:]])
            pll += float(model(masked).prediction_logits[0, i].log_softmax(-1)[row[i]])
    result = tformer.evaluate_lm(folder, text=text, mlm=True, batch_size=5)
    assert result.tokens == len(ids)
    assert result.windows == math.ceil(len(ids) / block)
    assert result.nll == pytest.approx(-pll, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(-pll / len(ids)), rel=1e-5)


def test_a_bert_model_without_mlm_is_refused(hf_bert: tuple[Any, Tokenizer, Path]) -> None:
    with pytest.raises(ValueError, match="pass --mlm"):
        tformer.evaluate_lm(hf_bert[2], text=TEXTS[0])


# ---------------------------------------------------------------------------------------------- the text


def test_shared_data_names_resolve_under_the_data_folder(hf_lm: tuple[Any, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data" / "books"
    data.mkdir(parents=True)
    for name, text in zip(("one.txt.gz", "two.txt.gz"), TEXTS, strict=True):
        (data / name).write_bytes(gzip.compress(f"{text}\n".encode()))
    monkeypatch.setenv("TFORMER_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # books/ is not here: found under $TFORMER_DATA
    folder = hf_lm[1]
    result = tformer.evaluate_lm(folder, "books/*.txt.gz", max_length=16, stride=8)
    joined = tformer.evaluate_lm(folder, text=f"{TEXTS[0]}\n\n{TEXTS[1]}\n", max_length=16, stride=8)
    assert (result.nll, result.tokens, result.bytes) == (joined.nll, joined.tokens, joined.bytes)


def test_val_fraction_scores_the_held_out_end_of_the_text(hf_lm: tuple[Any, Path], text_files: list[Path]) -> None:
    from tformer.data.prepare import join_texts, split_train_val

    text = join_texts(TEXTS)
    tail = split_train_val(text, 0.25)[1]
    result = tformer.evaluate_lm(hf_lm[1], text_files, val_fraction=0.25, max_length=16)
    assert result.text_chars == len(tail)
    assert result.nll == tformer.evaluate_lm(hf_lm[1], text=tail, max_length=16).nll


def test_a_short_last_window_of_a_compressed_model_reads_a_whole_group(bpe: Tokenizer) -> None:
    """With stride = max-length the last window can hold fewer tokens than the compression kernel: it begins
    earlier (more context, the same tokens scored) instead of failing; too short a text is one line."""
    from tformer.evaluation.lm import widened_windows

    assert widened_windows([(0, 1, 16), (16, 17, 18)], 18, 16, 4) == [(0, 1, 16), (14, 17, 18)]
    assert widened_windows([(0, 1, 3)], 3, 8, 1) == [(0, 1, 3)]
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(bpe), attention_pattern="LM", local_block_size=4,
                                compression=4, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = tformer.build_model(config).eval()
    text = "\n\n".join(TEXTS)
    n = len(bpe.encode(text, add_special_tokens=False))
    stride = next(s for s in range(5, 60) if n % s in (2, 3))  # the last window holds 2 or 3 tokens
    result = tformer.evaluate_lm(model, text=text, tokenizer=bpe, max_length=stride, stride=stride)
    assert result.tokens == sum(e - f for _, f, e in sliding_windows(n, stride, stride))
    with pytest.raises(ValueError, match="shorter than the model's compression kernel 4"):
        tformer.evaluate_lm(model, text="a b", tokenizer=bpe, max_length=16, stride=8)
