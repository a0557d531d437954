"""How each zero-shot task is put to a language model (seed: GPT-1's "zero-shot behaviours", Radford et al. 2018 §5):
a prompt made from the example by a template, and the candidate continuations whose log-probabilities are compared.

* **sst2** (sentiment): prompt `"{sentence} very"` (GPT-1 appends the token "very"), continuations the verbaliser
  `" negative"` / `" positive"` (one word per label, in label order, each after one space); the word with the
  higher log-probability is the prediction, a word of several tokens scored by the sum over its tokens.
* **copa** (cause or effect): prompt `"{premise} {connective}"`: the premise without its final full stop, then
  "because" for a cause question and "so" for an effect question; continuations `" " + choice` with the choice's
  first letter lowercased ("I" kept) and its full stop kept: "The man turned on the faucet so" + " the toilet
  filled with water."
* **commonsenseqa**: prompt `"Question: {question}\\nAnswer:"` (lm-evaluation-harness's), continuations
  `" " + choice`.

The two multiple-choice tasks pick the answer with the highest length-normalised log-probability: the sum over its
tokens divided by its token count (the summed score is reported beside it). This module imports no torch, so the
CLI can show the defaults in --help.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tformer.tasks.readers import COPA_QUESTIONS, ChoiceExample, TextExample

COPA_CONNECTIVES = {"cause": "because", "effect": "so"}


@dataclass(frozen=True)
class ZeroShotPrompts:
    """A task asked zero-shot (seed: GPT-1 zero-shot behaviours): example -> (prompt, N continuations), label.

    `fields` returns the template's fields of an example (the first one, `main_field`, must be in a template);
    `continuations` its candidate continuations (for classification, from the verbaliser: one word per label).
    `normalized`: the prediction is by the mean log-probability per token (multiple choice), else by the sum.
    """

    task: str
    template: str
    fields: Callable[[object], dict[str, str]]
    continuations: Callable[[object, Sequence[str]], list[str]]
    normalized: bool
    verbalizer: tuple[str, ...] = ()
    how: str = ""

    @property
    def main_field(self) -> str:
        return next(iter(self.fields(_SAMPLES[self.task])))

    def check_template(self, template: str) -> str:
        """`template`, checked to use only this task's fields and to use its main one (else one-line errors)."""
        names = list(self.fields(_SAMPLES[self.task]))
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as error:
            raise ValueError(f"--template {template!r} is not a format string ({error}); write fields as "
                             f"{{{names[0]}}} and a literal brace as {{{{ or }}}}") from None
        unknown = sorted(used - set(names))
        if unknown:
            raise ValueError(f"--template {template!r} has the field {{{unknown[0]}}}; {self.task} templates may use "
                             + ", ".join(f"{{{name}}}" for name in names))
        if self.main_field not in used:
            raise ValueError(f"--template {template!r} leaves out {{{self.main_field}}}, so every {self.task} prompt "
                             f"would be the same; put {{{self.main_field}}} in it (default: {self.template!r})")
        return template

    def check_verbalizer(self, words: Sequence[str] | None) -> tuple[str, ...]:
        """The verbaliser to use: `words` (one per label, checked) or the default; None for multiple choice."""
        if words is None:
            return self.verbalizer
        words = tuple(word.strip() for word in words)
        if not self.verbalizer:
            raise ValueError(f"--verbalizer is for a classification task (sst2); {self.task} scores its own answer "
                             "choices: leave it out")
        if len(words) != len(self.verbalizer) or not all(words) or len(set(words)) != len(words):
            raise ValueError(f"--verbalizer {','.join(words)!r} must be {len(self.verbalizer)} different non-empty "
                             f"words, one per label in label order (default: {','.join(self.verbalizer)})")
        return words

    def prompt(self, example: object, template: str) -> str:
        return template.format_map(self.fields(example))


def _sentence(example: TextExample) -> dict[str, str]:
    return {"sentence": example.text_a.strip()}


def _verbalized(example: object, verbalizer: Sequence[str]) -> list[str]:
    return [f" {word}" for word in verbalizer]


def _copa_fields(example: ChoiceExample) -> dict[str, str]:
    """The premise and question that `read_copa` joined into the context (premise + the question in words)."""
    for question, words in COPA_QUESTIONS.items():
        if example.context.endswith(f" {words}"):
            premise = example.context.removesuffix(f" {words}").strip()
            return {"premise": premise.removesuffix("."), "connective": COPA_CONNECTIVES[question],
                    "question": question}
    raise ValueError(f"COPA example {example.id!r}: its context {example.context!r} does not end with one of the "
                     f"questions {list(COPA_QUESTIONS.values())}; read it with tformer.tasks.readers.read_copa")


def _lowercase_first(text: str) -> str:
    text = text.strip()
    first = text.split(maxsplit=1)[0] if text else ""
    return text if first == "I" or first.startswith("I'") else text[:1].lower() + text[1:]


def _copa_choices(example: ChoiceExample, verbalizer: Sequence[str]) -> list[str]:
    return [f" {_lowercase_first(choice)}" for choice in example.choices]


def _question(example: ChoiceExample) -> dict[str, str]:
    return {"question": example.context.strip()}


def _choices(example: ChoiceExample, verbalizer: Sequence[str]) -> list[str]:
    return [f" {choice.strip()}" for choice in example.choices]


_SAMPLES: dict[str, object] = {  # one example of each task, to list the fields a template may use
    "sst2": TextExample("a film", None, 0),
    "copa": ChoiceExample(f"It rained. {COPA_QUESTIONS['cause']}", ["a", "b"], 0),
    "commonsenseqa": ChoiceExample("Why?", ["a", "b", "c", "d", "e"], 0),
}

ZERO_SHOT: dict[str, ZeroShotPrompts] = {prompts.task: prompts for prompts in (
    ZeroShotPrompts("sst2", "{sentence} very", _sentence, _verbalized, normalized=False,
                    verbalizer=("negative", "positive"),
                    how="each label's word after the prompt, scored by the sum of its tokens' log-probabilities"),
    ZeroShotPrompts("copa", "{premise} {connective}", _copa_fields, _copa_choices, normalized=True,
                    how="{connective} is 'because' for a cause, 'so' for an effect; each choice (first letter "
                        "lowercased) after the prompt, scored by the mean of its tokens' log-probabilities"),
    ZeroShotPrompts("commonsenseqa", "Question: {question}\nAnswer:", _question, _choices, normalized=True,
                    how="each choice after the prompt, scored by the mean of its tokens' log-probabilities"),
)}


def zero_shot_prompts(task: str) -> ZeroShotPrompts:
    """The zero-shot recipe of `task` (a registry name, e.g. "sst2"); a task without one is a one-line error."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in ZERO_SHOT:
        raise ValueError(f"{task} has no zero-shot scoring; --zero-shot knows {', '.join(ZERO_SHOT)} (leave out "
                         "--zero-shot to score a fine-tuned model on it)")
    return ZERO_SHOT[key]
