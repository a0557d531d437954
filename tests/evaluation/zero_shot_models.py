"""Tiny causal LMs for the zero-shot tests: a random GPT-2 shape with a word tokenizer, a head rigged to give every
position the same next-token distribution, and a toy SST-2 / COPA / CommonsenseQA data folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

import tformer
from tests.conftest import randomize
from tformer.config import ModelConfig
from tformer.models import GPT

WORDS = ("the film was great dull very positive negative good bad because so . : question answer it rained man "
         "smiled sun came out he was happy sad")
# SST-2 dev rows: 5 of 7 positive, so a model that always says " positive" scores 5/7, one that says " negative" 2/7
SST2_DEV = [("the film was great", 1), ("the film was dull", 0), ("it was good", 1), ("it was great", 1),
            ("the man was sad", 0), ("the sun came out", 1), ("he was happy", 1)]


def word_tokenizer() -> tformer.Tokenizer:
    return tformer.Tokenizer.train(iter([WORDS] * 3), kind="word", vocab_size=200)


def tiny_gpt(tokenizer: tformer.Tokenizer, seed: int = 0, **overrides: object) -> GPT:
    """A random gpt2-tiny over `tokenizer`'s vocabulary, dropout off, in eval mode."""
    config = ModelConfig.preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, dropout=0.0, attention_dropout=0.0, **overrides)
    torch.manual_seed(seed)
    return randomize(GPT(config), seed=seed).eval()


def rig(model: GPT, logits: torch.Tensor) -> GPT:
    """Make `model` give `logits` (vocab,) at every position, whatever it reads: the final LayerNorm outputs its bias
    e_0 alone (weight 0), and the LM head's column 0 is `logits`."""
    with torch.no_grad():
        norm = model.decoder.final_norm
        norm.weight.zero_()
        norm.bias.zero_()
        norm.bias[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = logits
    return model


def preferring(tokenizer: tformer.Tokenizer, word: str, margin: float = 5.0) -> torch.Tensor:
    """Logits that put `margin` more on `word`'s token than on any other."""
    logits = torch.zeros(tokenizer.vocab_size)
    logits[tokenizer.token_to_id(word)] = margin
    return logits


def distribution(tokenizer: tformer.Tokenizer, probabilities: dict[str, float]) -> torch.Tensor:
    """Logits whose softmax gives each word its probability and shares what is left evenly among the other tokens."""
    rest = (1.0 - sum(probabilities.values())) / (tokenizer.vocab_size - len(probabilities))
    logits = torch.full((tokenizer.vocab_size,), math.log(rest))
    for word, p in probabilities.items():
        logits[tokenizer.token_to_id(word)] = math.log(p)
    return logits


def save(model: GPT, tokenizer: tformer.Tokenizer, folder: Path) -> Path:
    tformer.save_pretrained(model, folder, tokenizer=tokenizer)
    return folder


def write_zero_shot_data(root: Path) -> Path:
    """glue/SST-2/dev.tsv (SST2_DEV), copa/val.jsonl (2 rows) and commonsenseqa/dev_rand_split.jsonl (2 rows)."""
    (root / "glue/SST-2").mkdir(parents=True, exist_ok=True)
    rows = ["sentence\tlabel", *(f"{sentence} \t{label}" for sentence, label in SST2_DEV)]
    (root / "glue/SST-2/dev.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    copa = [{"premise": "The sun came out.", "choice1": "He was happy.", "choice2": "It rained.", "question": "effect",
             "label": 0, "idx": 0},
            {"premise": "The man smiled.", "choice1": "It rained.", "choice2": "He was happy.", "question": "cause",
             "label": 1, "idx": 1}]
    (root / "copa").mkdir(parents=True, exist_ok=True)
    (root / "copa/val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in copa), encoding="utf-8")
    choices = ["good", "bad", "great great great", "dull", "sad"]
    csqa = [{"id": f"q{i}", "answerKey": key, "question": {"stem": "the film was", "choices": [
        {"label": label, "text": text} for label, text in zip("ABCDE", choices, strict=True)]}}
        for i, key in enumerate("CC")]
    (root / "commonsenseqa").mkdir(parents=True, exist_ok=True)
    (root / "commonsenseqa/dev_rand_split.jsonl").write_text("".join(json.dumps(r) + "\n" for r in csqa),
                                                             encoding="utf-8")
    return root
