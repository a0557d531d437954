"""Zero-shot task accuracy of a pre-trained causal language model (seed: GPT-1's "zero-shot behaviours", Radford
et al. 2018 §5; GPT-2 evaluated zero-shot): no fine-tuning, the answer is the continuation the LM finds likeliest.

`evaluate_zero_shot("sst2", "gpt2-folder", data_root, max_examples=100)` reads the task's dev split with the
fine-tuning readers (`tformer.tasks.registry`), builds each example's prompt and candidates
(`tformer.evaluation.zero_shot_prompts`: the templates and the verbaliser), scores every candidate with
`score_continuations` (batched) and reports the accuracy with the chance level (1 / number of candidates: SST-2
and COPA 50 %, CommonsenseQA 20 %) and the number of examples. Any gpt-family folder loads: GPT-1 and GPT-2
Hugging Face folders, a `tformer train` run folder (its final/ model), models with an attention pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch

from tformer.evaluation.continuation_scores import DEFAULT_BATCH_SIZE, ContinuationScore, score_continuations
from tformer.evaluation.lm import load_language_model
from tformer.evaluation.zero_shot_prompts import ZeroShotPrompts, zero_shot_prompts
from tformer.models import GPT, TransformerModel
from tformer.tasks.metrics import accuracy
from tformer.tasks.registry import get_task
from tformer.tokenization import Tokenizer
from tformer.training.distributed import pick_device


@dataclass(frozen=True)
class ZeroShotResult:
    """A zero-shot score (seed: GPT-1 zero-shot behaviours): `accuracy` (by the task's rule: the mean per token for
    multiple choice, the sum for sst2) and both rules' accuracies, `chance`, on `examples` of `available`."""

    task: str
    split: str
    accuracy: float
    accuracy_by_sum: float
    accuracy_by_mean: float
    chance: float
    examples: int
    available: int
    template: str
    verbalizer: tuple[str, ...]
    normalized: bool
    how: str


def load_causal_lm(path: str | PathLike[str]) -> tuple[GPT, Tokenizer, Path]:
    """The causal LM of a folder (a `tformer train` run folder means its final/ model), its tokenizer.json and the
    folder; an encoder, an encoder-decoder or a fine-tuned task model is a one-line error."""
    model, tokenizer, found = load_language_model(path)
    check_causal_lm(model, found)
    return model, tokenizer, found  # type: ignore[return-value]


def check_causal_lm(model: TransformerModel, folder: str | PathLike[str]) -> None:
    """A gpt-family language model without a task head, else a one-line error saying what to pass instead."""
    family = model.config.family
    if model.config.task is not None:
        raise ValueError(f"{folder} holds a {family} model with a {model.config.task} head; --zero-shot scores a "
                         "language model's own predictions: pass the pre-trained folder (or leave out --zero-shot to "
                         "score this fine-tuned one)")
    if not isinstance(model, GPT):
        raise ValueError(f"{folder} holds a {family} model, not a causal language model: --zero-shot compares "
                         "next-token probabilities, which only the gpt family (GPT-1, GPT-2, the T-D) gives; "
                         "fine-tune it instead (tformer finetune TASK --model DIR)")


def candidate_scores(model: GPT, tokenizer: Tokenizer, prompts: ZeroShotPrompts, examples: Sequence[object],
                     template: str, verbalizer: Sequence[str] = (),
                     batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[ContinuationScore]]:
    """Per example, the score of each candidate continuation after its prompt (all pairs batched together)."""
    pairs, counts = [], []
    for example in examples:
        prompt = prompts.prompt(example, template)
        candidates = prompts.continuations(example, verbalizer)
        pairs += [(prompt, candidate) for candidate in candidates]
        counts.append(len(candidates))
    flat = score_continuations(model, tokenizer, pairs, batch_size)
    grouped, start = [], 0
    for count in counts:
        grouped.append(flat[start:start + count])
        start += count
    return grouped


def predictions(scores: Sequence[Sequence[ContinuationScore]], normalized: bool) -> list[int]:
    """The index of the best candidate of each example: by mean log-probability per token, or by the sum."""
    key = (lambda s: s.mean) if normalized else (lambda s: s.logprob)
    return [max(range(len(row)), key=lambda k: key(row[k])) for row in scores]


def evaluate_zero_shot(task_name: str, model_dir: str | PathLike[str], data_root: str | PathLike[str] | None = None,
                       *, split: str = "dev", max_examples: int | None = None, template: str | None = None,
                       verbalizer: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                       threads: int | None = None, device: str | None = None) -> ZeroShotResult:
    """The zero-shot accuracy of the causal LM in `model_dir` on `split` of task `task_name` (its first
    `max_examples`, else all); `template` and `verbalizer` default to the task's (`zero_shot_prompts`)."""
    task = get_task(task_name)
    prompts = zero_shot_prompts(task.name)
    template = prompts.check_template(prompts.template if template is None else template)
    words = prompts.check_verbalizer(verbalizer)
    for name, value in (("max_eval_examples", max_examples), ("batch_size", batch_size), ("threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    every = task.read(split, data_root)
    examples = every[:max_examples]
    model, tokenizer, _ = load_causal_lm(model_dir)
    model.to(pick_device("auto" if device is None else device, option="--device"))
    scores = candidate_scores(model, tokenizer, prompts, examples, template, words, batch_size)
    labels = [int(example.label) for example in examples]
    by_sum = accuracy(predictions(scores, normalized=False), labels)
    by_mean = accuracy(predictions(scores, normalized=True), labels)
    return ZeroShotResult(task.name, split, by_mean if prompts.normalized else by_sum, by_sum, by_mean,
                          1 / len(scores[0]), len(examples), len(every), template, words, prompts.normalized,
                          prompts.how)
