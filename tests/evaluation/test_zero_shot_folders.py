"""Zero-shot scoring of Hugging Face folders written by `transformers` itself (GPT-2 and GPT-1): each candidate's
log-probability equals the log-softmax chain of transformers' own logits, and the accuracy is the one those give."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import randomize
from tformer.evaluation.continuation_scores import score_continuations
from tformer.evaluation.zero_shot import evaluate_zero_shot, load_causal_lm

from ..dev_dependency import import_dev
from .zero_shot_models import SST2_DEV, word_tokenizer, write_zero_shot_data

transformers = import_dev("transformers")


def _reference(kind: str, vocab: int):
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48,
                                         bos_token_id=2, eos_token_id=3)
        return transformers.GPT2LMHeadModel(config)
    config = transformers.OpenAIGPTConfig(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    return transformers.OpenAIGPTLMHeadModel(config)


def _chain(reference, tokenizer, prompt: str, continuation: str) -> float:
    context = tokenizer.encode(prompt, add_special_tokens=False)
    answer = tokenizer.encode(continuation, add_special_tokens=False)
    with torch.no_grad():
        logits = reference(torch.tensor([context + answer])).logits[0].double()
    return sum(float(logits[len(context) + k - 1].log_softmax(-1)[token]) for k, token in enumerate(answer))


@pytest.mark.parametrize("kind", ["gpt2", "openai-gpt"])
def test_a_transformers_folder_scores_as_transformers_logits_say(kind: str, tmp_path: Path) -> None:
    tokenizer = word_tokenizer()
    torch.manual_seed(0)
    reference = randomize(_reference(kind, tokenizer.vocab_size), seed=1).eval()
    reference.save_pretrained(tmp_path / "model")
    tokenizer.save(tmp_path / "model")
    model, _, _ = load_causal_lm(tmp_path / "model")
    pairs = [(f"{sentence} very", f" {word}") for sentence, _ in SST2_DEV for word in ("negative", "positive")]
    scores = score_continuations(model, tokenizer, pairs, batch_size=5)
    expected = [_chain(reference, tokenizer, prompt, continuation) for prompt, continuation in pairs]
    assert [s.logprob for s in scores] == pytest.approx(expected, abs=1e-4)
    picks = [int(expected[2 * i + 1] > expected[2 * i]) for i in range(len(SST2_DEV))]
    right = sum(pick == label for pick, (_, label) in zip(picks, SST2_DEV, strict=True)) / len(SST2_DEV)
    result = evaluate_zero_shot("sst2", tmp_path / "model", write_zero_shot_data(tmp_path / "data"))
    assert result.accuracy == pytest.approx(right)
