"""`tformer demo`: train the encoder-decoder on English -> German number phrases, then show what it learned.

It trains the `demo-numbers` recipe on this machine's CPU, scores greedy translations of every held-out test
number (exact match and BLEU), prints three translations with their 4-best beam lists and scores, and leaves
a model folder, metrics.json and loss.png in the run folder, with two pictures of what the model attends to on
the first example: alignment.png (cross-attention of the last layer, mean of its heads) and attention.html (the
interactive page: encoder, decoder and cross-attention, every layer and head).

`--model.family=rnn` runs the same job with RNNsearch (Bahdanau et al. 2014, the `rnn-demo-numbers` recipe: the
same data, tokenizer and training time), in runs/demo-rnn by default; its pictures show its one cross-attention.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from tformer.data.synthetic import english_number, number_split
from tformer.training.evaluate import n_best
from tformer.training.recipe import load_recipe
from tformer.training.run_folder import run_marks
from tformer.training.trainer import Trainer
from tformer.viz import capture_attention, plot_alignment, write_attention_page

EXAMPLES = (259, 10_251, 756_661)  # all three from the held-out test split
# --model.family -> (recipe, default run folder, what the first line calls the model)
FAMILIES = {"encoder-decoder": ("demo-numbers", "runs/demo", "the Transformer (encoder-decoder)"),
            "rnn": ("rnn-demo-numbers", "runs/demo-rnn", "RNNsearch (bidirectional GRU + additive attention, 2014)")}
DEFAULT_OUT = FAMILIES["encoder-decoder"][1]


def run_demo(out: str | Path | None = None, *, overrides: list[str] | None = None, resume: bool = False,
             overwrite: bool = False, examples: tuple[int, ...] = EXAMPLES, say: Any = print) -> dict[str, Any]:
    """Train, evaluate on the test split, print N-best examples; returns the metrics written to metrics.json.

    Without `out` (and without --out.dir among the overrides) the demo runs in runs/demo (runs/demo-rnn with
    --model.family=rnn) and replaces its own previous run there; a folder named explicitly that holds a run is
    refused unless `resume` continues it or `overwrite` deletes it first.
    """
    began = time.perf_counter()
    family, overrides = demo_family(list(overrides or []))
    name, default_out, model_name = FAMILIES[family]
    chosen = out is not None or any(o.startswith("--out.dir=") for o in overrides)
    recipe = load_recipe(name, [f"--out.dir={out if out is not None else default_out}", *overrides])
    replace = not chosen and not resume and _holds_a_demo_run(recipe.run_dir, recipe.name)
    say(f"tformer demo: {model_name} learns English -> German number phrases on this CPU.")
    if replace:
        say(f"tformer demo: replacing the previous demo run in {recipe.run_dir} (tformer demo --out DIR keeps a run "
            f"elsewhere)")
    trainer = Trainer(recipe, resume=resume, overwrite=overwrite or replace)
    try:
        return _train_and_show(trainer, examples, say, began)
    finally:
        trainer.close()


def demo_family(overrides: list[str]) -> tuple[str, list[str]]:
    """(the --model.family chosen, default encoder-decoder; the other overrides): the family picks the recipe."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("--model.family=")]
    family = chosen[-1] if chosen else "encoder-decoder"
    if family not in FAMILIES:
        choices = " or ".join(f"--model.family={name}" for name in FAMILIES)
        raise ValueError(f"--model.family={family} has no demo; use {choices}")
    return family, [o for o in overrides if not o.startswith("--model.family=")]


def _holds_a_demo_run(run_dir: Path, name: str) -> bool:
    """Whether `run_dir` holds a run of the demo's own recipe (which the default folder may replace)."""
    if not run_marks(run_dir):
        return False
    try:
        saved = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and saved.get("name") == name


def _train_and_show(trainer: Trainer, examples: tuple[int, ...], say: Any, began: float) -> dict[str, Any]:
    recipe = trainer.recipe
    result = trainer.fit()
    metrics = result.eval_metrics
    test_count = len(trainer.data.test_pairs)
    say(f"\nheld-out test numbers: {test_count:,} (never seen in training), greedy decoding")
    unit = " on characters" if recipe.eval.bleu_tokenize == "char" else ""
    say(f"  exact match {100 * metrics['test_exact_match']:.2f} %   BLEU{unit} {metrics['test_bleu']:.2f} "
        f"(sacrebleu, tokenize={recipe.eval.bleu_tokenize})")
    say("\n4-best beam search on test numbers (score = sum of log-probabilities / length):")
    shown = []
    for number in examples:
        source = english_number(number)
        best = n_best(trainer.model, trainer.data.tokenizer, source, decoder_only=False,
                      device=trainer.env.device, n=4, max_new_tokens=recipe.eval.max_new_tokens)
        say(f"  {number:>7,}  {source}  ({number_split(number)} split)")
        for rank, (text, score) in enumerate(best, 1):
            say(f"           {rank}. {text:<44} {score:8.4f}")
        shown.append({"number": number, "source": source, "n_best": best})
    pictures = _attention_pictures(trainer, english_number(examples[0]), result.run_dir, say)
    seconds = time.perf_counter() - began
    summary = {
        "test_pairs": test_count, "test_exact_match": metrics["test_exact_match"], "test_bleu": metrics["test_bleu"],
        "bleu_tokenize": recipe.eval.bleu_tokenize,
        "valid": {k: v for k, v in metrics.items() if not k.startswith("test_")},
        "train": result.train_metrics, "steps": result.step, "seconds": round(seconds, 1), "examples": shown,
        "pictures": pictures,
    }
    path = result.run_dir / "metrics.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    say(f"\nwrote {result.model_dir}/ (model + tokenizer: tformer translate --model {result.model_dir} "
        f"\"forty-two\"), {path}, {result.run_dir / 'loss.png'}")
    say(f"total {seconds / 60:.1f} min")
    return summary


def _attention_pictures(trainer: Trainer, source: str, run_dir: Path, say: Any) -> dict[str, str]:
    """Write attention.html and (with matplotlib) alignment.png for one translation; returns name -> path."""
    views = capture_attention(trainer.model, trainer.data.tokenizer, source)
    page = write_attention_page(run_dir / "attention.html", views, title=f"tformer demo: {source}")
    pictures = {"attention_page": str(page)}
    cross = next(view for view in views if view.name == "cross-attention")
    try:
        pictures["alignment"] = str(plot_alignment(cross, run_dir / "alignment.png"))
    except ImportError as error:  # matplotlib is the optional `viz` extra
        say(f"no alignment.png: {error}")
    say(f"\nwhat the model attends to on {source!r}: {page} (open it in a browser)"
        + (f", {pictures['alignment']}" if "alignment" in pictures else ""))
    return pictures
