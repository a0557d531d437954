"""Quality per wall-clock: each model trains through tformer's Trainer on a recipe for the same training seconds.

The recipes are tformer's: demo-numbers and transformer-multi30k for the Transformer, rnn-demo-numbers and
rnn-multi30k for RNNsearch (where this tree lacks them: the Transformer's recipe with model.preset set to the
rnnsearch preset of that size, so data, tokenizer, optimizer and schedule are the same). Each run gets one
torch thread (the two run side by side, one per core). The budget is training seconds (the steps themselves,
evaluation excluded): after `calibration` steps their median step time sets train.max_steps so the recipe's
schedule (warmup, then its decay) ends at the budget; training stops at the budget or at that step count,
whichever comes first (the first steps run slower, so a run can end a little before its budget).
During training, greedy decoding of the first validation pairs gives the learning curve (exact match, BLEU);
at the end the test pairs are decoded greedily and with beam 4, timed (decoding tokens/s).
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tformer.generation import generate
from tformer.training.evaluate import bleu, exact_match
from tformer.training.optim import build_scheduler
from tformer.training.options import OptionError, read_yaml
from tformer.training.recipe import Recipe, load_recipe, recipe_path
from tformer.training.trainer import Trainer

RECIPES = {"demo": {"transformer": "demo-numbers", "rnn": "rnn-demo-numbers"},
           "multi30k": {"transformer": "transformer-multi30k", "rnn": "rnn-multi30k"}}
RNN_PRESETS = {"demo": "rnnsearch-demo", "multi30k": "rnnsearch-multi30k"}
TINY_PRESETS = {"transformer": "transformer-tiny", "rnn": "rnnsearch-tiny"}


@dataclass(frozen=True)
class QualityPlan:
    """One dataset's comparison: the training budget, how often and on what it is scored, where runs go."""

    dataset: str  # demo | multi30k
    budget_s: float
    work_dir: str
    evals: int = 6
    eval_pairs: int = 200
    test_pairs: int | None = None  # the first N test pairs are decoded at the end (None: the whole test split)
    calibration: int = 20
    tiny: bool = False  # --quick: the tiny presets and the overrides below
    overrides: tuple[str, ...] = ()
    num_beams: int = 4


def recipe_mapping(family: str, plan: QualityPlan) -> tuple[dict, str]:
    """The recipe (as a mapping) `family` trains on `plan.dataset`, and a line saying which one it is."""
    name = RECIPES[plan.dataset][family]
    try:
        mapping, source = read_yaml(recipe_path(name)), f"recipe {name}"
    except OptionError:  # no RNN recipe in this tree: the Transformer's, with the RNN preset of the same size
        base = RECIPES[plan.dataset]["transformer"]
        mapping = read_yaml(recipe_path(base))
        dropout = mapping["model"].get("config", {}).get("dropout", 0.0)
        mapping["model"] = {"preset": RNN_PRESETS[plan.dataset], "config": {"dropout": dropout}}
        source = f"recipe {base} with model.preset={RNN_PRESETS[plan.dataset]} (no {name} recipe in this tree)"
    if plan.tiny:
        mapping["model"] = {"preset": TINY_PRESETS[family], "config": {"max_positions": 128}}
        source += f", model {TINY_PRESETS[family]} (--quick)"
    return mapping, source


def build_recipe(family: str, plan: QualityPlan) -> tuple[Recipe, str]:
    mapping, source = recipe_mapping(family, plan)
    run_dir = Path(plan.work_dir) / f"{plan.dataset}-{family}"
    overrides = [f"--out.dir={run_dir}", "--train.threads=1", "--out.progress=none", "--out.tensorboard=false",
                 "--out.plot=false", "--eval.every=0", "--out.checkpoint_every=0", *plan.overrides]
    if plan.test_pairs is not None and mapping.get("data", {}).get("corpus") == "numbers":
        overrides.append(f"--data.test_pairs={plan.test_pairs}")
    return load_recipe(mapping, overrides), source


def timed_step(trainer: Trainer) -> float:
    began = time.perf_counter()
    trainer.train_step()
    return time.perf_counter() - began


def fit_schedule(trainer: Trainer, budget_s: float, seconds: list[float]) -> int:
    """Set train.max_steps so the schedule ends at the budget, from the median step time of the steps run so far
    (the first step, a warm-up, left out)."""
    t = trainer.recipe.train
    per_step = statistics.median(seconds[1:] or seconds)
    steps = max(trainer.step + 1, int(budget_s / per_step))
    warmup = min(t.warmup_steps, steps // 4)
    t.max_steps, t.warmup_steps = steps, warmup
    trainer.scheduler = build_scheduler(trainer.optimizer, t.schedule, max_steps=steps, warmup_steps=warmup,
                                        lr=t.lr, min_lr=t.min_lr)
    for _ in range(trainer.step):  # the steps already taken
        trainer.scheduler.step()
    return steps


def _source_batch(tokenizer, sources: list[str]) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    eos, pad = tokenizer.token_to_id("[EOS]"), tokenizer.token_to_id("[PAD]")
    rows = [[*tokenizer.encode(s, add_special_tokens=False), eos] for s in sources]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
    return ids, mask


def decode_timed(trainer: Trainer, sources: list[str], num_beams: int, batch_size: int = 128) -> dict:
    """Translations of `sources` (beam search when num_beams > 1), the new tokens (up to and with [EOS]) and
    the decoding seconds (generate only, the tokenizer outside the clock)."""
    model, tokenizer = trainer.model, trainer.data.tokenizer
    eos, pad = tokenizer.token_to_id("[EOS]"), tokenizer.token_to_id("[PAD]")
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    texts, tokens, seconds = [""] * len(sources), 0, 0.0
    for begin in range(0, len(order), batch_size):
        chunk = order[begin:begin + batch_size]
        ids, mask = _source_batch(tokenizer, [sources[i] for i in chunk])
        began = time.perf_counter()
        out = generate(model, ids, mask, max_new_tokens=trainer.recipe.eval.max_new_tokens, num_beams=num_beams,
                       early_stopping=num_beams > 1, eos_token_id=eos, pad_token_id=pad,
                       length_penalty=trainer.recipe.eval.length_penalty if num_beams > 1 else None)
        seconds += time.perf_counter() - began
        for i, row in zip(chunk, out[:, 1:].tolist(), strict=True):  # column 0: the decoder's start token
            cut = row[:row.index(eos)] if eos in row else row
            tokens += len(cut) + (eos in row)
            texts[i] = tokenizer.decode(cut)
    model.train()
    return {"texts": texts, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9)}


def scores(trainer: Trainer, texts: list[str], references: list[str]) -> dict[str, float]:
    return {"exact_match": 100.0 * exact_match(texts, references),
            "bleu": bleu(texts, references, trainer.recipe.eval.bleu_tokenize)}


def curve_point(trainer: Trainer, train_s: float, pairs: list[tuple[str, str]]) -> dict:
    decoded = decode_timed(trainer, [s for s, _ in pairs], num_beams=1)
    return {"train_seconds": train_s, "step": trainer.step, **scores(trainer, decoded["texts"], [t for _, t in pairs])}


def train_for_budget(trainer: Trainer, plan: QualityPlan) -> tuple[list[dict], float]:
    """Train until the budget (or the fitted max_steps), scoring greedy decoding of validation pairs `evals` times."""
    pairs = trainer.data.valid_pairs[:plan.eval_pairs]
    marks = [plan.budget_s * (k + 1) / plan.evals for k in range(plan.evals)]
    seconds: list[float] = []
    curve: list[dict] = []
    while trainer.step < trainer.recipe.train.max_steps and sum(seconds) < plan.budget_s:
        seconds.append(timed_step(trainer))
        if len(seconds) == plan.calibration:
            fit_schedule(trainer, plan.budget_s, seconds)
        if marks and sum(seconds) >= marks[0]:
            marks.pop(0)
            curve.append(curve_point(trainer, sum(seconds), pairs))
            print(f"  {plan.dataset} {trainer.model.config.family:<15} step {trainer.step:>5} "
                  f"({sum(seconds):.0f} s): exact match {curve[-1]['exact_match']:.2f} %, BLEU {curve[-1]['bleu']:.2f}",
                  file=sys.stderr, flush=True)
    if not curve or curve[-1]["step"] != trainer.step:
        curve.append(curve_point(trainer, sum(seconds), pairs))
    return curve, sum(seconds)


def test_scores(trainer: Trainer, num_beams: int, limit: int | None) -> dict[str, dict]:
    pairs = (trainer.data.test_pairs or trainer.data.valid_pairs)[:limit]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    results = {}
    for name, beams in (("greedy", 1), (f"beam{num_beams}", num_beams)):
        decoded = decode_timed(trainer, sources, beams)
        results[name] = {**scores(trainer, decoded["texts"], references), "pairs": len(pairs),
                         **{k: decoded[k] for k in ("tokens", "seconds", "tokens_per_s")},
                         "examples": decoded["texts"][:3]}
    return results


def quality_job(family: str, plan: QualityPlan) -> dict:
    """Train `family` on `plan.dataset` for the budget and score it (runs in its own process, one thread)."""
    torch.set_num_threads(1)
    began = time.perf_counter()
    recipe, source = build_recipe(family, plan)
    log = io.StringIO()
    trainer = Trainer(recipe, overwrite=False, log_stream=log)
    try:
        setup_s = time.perf_counter() - began
        planned_steps = recipe.train.max_steps
        curve, train_s = train_for_budget(trainer, plan)
        test = test_scores(trainer, plan.num_beams, plan.test_pairs)
        return {"family": family, "dataset": plan.dataset, "recipe": source, "parameters":
                sum(p.numel() for p in trainer.model.parameters()), "recipe_steps": planned_steps,
                "fitted_steps": recipe.train.max_steps, "steps": trainer.step, "train_seconds": train_s,
                "setup_seconds": setup_s, "total_seconds": time.perf_counter() - began, "curve": curve, "test": test,
                "test_split": "test" if trainer.data.test_pairs else "validation"}
    finally:
        trainer.close()
