"""Tiny random models of each family with their tokenizers, in memory and saved as folders."""

from __future__ import annotations

from pathlib import Path

import pytest

import tformer
from tformer import ModelConfig, Tokenizer

from ..weights import randomize

TEXTS = ["the river bank was muddy", "the bank lent us money", "a cat sat on the mat", "it was tired of it"] * 3
ENGLISH = ["one two three", "four five six", "seven eight nine"]
GERMAN = ["eins zwei drei", "vier fünf sechs", "sieben acht neun"]



def _saved(folder: Path, model: tformer.TransformerModel, tokenizer: Tokenizer) -> Path:
    tformer.save_pretrained(model, folder)
    tokenizer.save(folder)
    return folder


@pytest.fixture(scope="session")
def bert() -> tuple[tformer.TransformerModel, Tokenizer]:
    tok = Tokenizer.train(iter(TEXTS), kind="wordpiece", vocab_size=120)
    config = ModelConfig.preset("bert-tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    return randomize(tformer.build_model(config), seed=0), tok


@pytest.fixture(scope="session")
def gpt() -> tuple[tformer.TransformerModel, Tokenizer]:
    tok = Tokenizer.train(iter(TEXTS), kind="bpe", vocab_size=300)
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                                eos_token_id=tok.eos_token_id)
    return randomize(tformer.build_model(config), seed=1), tok


@pytest.fixture(scope="session")
def tdmca(gpt: tuple) -> tuple[tformer.TransformerModel, Tokenizer]:
    """The gpt fixture's tokenizer with a 2-layer T-DMCA: a local layer (blocks of 4, one block back), then a
    memory-compressed one (compression 3)."""
    _, tok = gpt
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                                eos_token_id=tok.eos_token_id, attention_pattern="LM", local_block_size=4,
                                compression=3)
    return randomize(tformer.build_model(config), seed=4), tok


@pytest.fixture(scope="session")
def translator() -> tuple[tformer.TransformerModel, Tokenizer]:
    """A word tokenizer: [PAD] 0, [UNK] 1, [BOS] 2 (the decoder's start), [EOS] 3."""
    tok = Tokenizer.train(iter(ENGLISH + GERMAN), kind="word")
    config = ModelConfig.preset("transformer-tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.bos_token_id, sinusoidal_layout="halves")
    return randomize(tformer.build_model(config), seed=2), tok


@pytest.fixture(scope="session")
def rnn() -> tuple[tformer.TransformerModel, Tokenizer]:
    """RNNsearch (rnnsearch-tiny) with the translator's word tokenizer: one cross-attention head, no self-attention."""
    tok = Tokenizer.train(iter(ENGLISH + GERMAN), kind="word")
    config = ModelConfig.preset("rnnsearch-tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                decoder_start_token_id=tok.bos_token_id, dropout=0.0)
    return randomize(tformer.build_model(config), seed=3), tok


@pytest.fixture(scope="session")
def rnn_dir(tmp_path_factory: pytest.TempPathFactory, rnn: tuple) -> Path:
    return _saved(tmp_path_factory.mktemp("rnn"), *rnn)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, bert: tuple) -> Path:
    return _saved(tmp_path_factory.mktemp("bert"), *bert)


@pytest.fixture(scope="session")
def gpt_dir(tmp_path_factory: pytest.TempPathFactory, gpt: tuple) -> Path:
    return _saved(tmp_path_factory.mktemp("gpt"), *gpt)


@pytest.fixture(scope="session")
def translator_dir(tmp_path_factory: pytest.TempPathFactory, translator: tuple) -> Path:
    return _saved(tmp_path_factory.mktemp("translator"), *translator)


@pytest.fixture(scope="session")
def tdmca_dir(tmp_path_factory: pytest.TempPathFactory, tdmca: tuple) -> Path:
    return _saved(tmp_path_factory.mktemp("tdmca"), *tdmca)
