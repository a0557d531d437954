"""`tformer demo`: train the encoder-decoder on English -> German number phrases, then show what it learned.

It trains the `demo-numbers` recipe on this machine's CPU, scores greedy translations of every held-out test
number (exact match and BLEU), prints three translations with their 4-best beam lists and scores, and leaves
a model folder, metrics.json and loss.png in the run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tformer.data.synthetic import english_number, number_split
from tformer.training.evaluate import n_best
from tformer.training.recipe import load_recipe
from tformer.training.trainer import Trainer

EXAMPLES = (259, 10_251, 756_661)  # all three from the held-out test split


def run_demo(out: str | Path = "runs/demo", *, overrides: list[str] | None = None,
             examples: tuple[int, ...] = EXAMPLES, say: Any = print) -> dict[str, Any]:
    """Train, evaluate on the test split, print N-best examples; returns the metrics written to metrics.json."""
    began = time.perf_counter()
    recipe = load_recipe("demo-numbers", [f"--out.dir={out}", *(overrides or [])])
    say("tformer demo: the Transformer (encoder-decoder) learns English -> German number phrases on this CPU.")
    trainer = Trainer(recipe)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
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
    seconds = time.perf_counter() - began
    summary = {
        "test_pairs": test_count, "test_exact_match": metrics["test_exact_match"], "test_bleu": metrics["test_bleu"],
        "bleu_tokenize": recipe.eval.bleu_tokenize,
        "valid": {k: v for k, v in metrics.items() if not k.startswith("test_")},
        "train": result.train_metrics, "steps": result.step, "seconds": round(seconds, 1), "examples": shown,
    }
    path = result.run_dir / "metrics.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    say(f"\nwrote {result.model_dir}/ (model + tokenizer: tformer translate --model {result.model_dir} "
        f"\"forty-two\"), {path}, {result.run_dir / 'loss.png'}")
    say(f"total {seconds / 60:.1f} min")
    return summary
