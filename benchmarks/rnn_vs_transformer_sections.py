"""benchmarks/rnn_vs_transformer.py's sections: run each, keep its results, and assemble the report."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import torch

import rnn_vs_transformer_report as report
from rnn_vs_transformer_models import FAMILIES, counted_configs, machine, parameter_places, rnn_available
from rnn_vs_transformer_path import PathTask, PathTraining, train_and_score
from rnn_vs_transformer_quality import QualityPlan, build_recipe, quality_job
from rnn_vs_transformer_speed import run_speed
from tformer.models import build_model

SHARED_NOTE = "measured on a 2-core machine shared with other jobs"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Run:
    """One benchmark run: its options, the families it can compare, the worker pool and every section's result."""

    def __init__(self, args: argparse.Namespace, began: float) -> None:
        self.args, self.began = args, began
        self.machine = machine()
        self.rnn_missing = rnn_available()
        self.families = [f for f in FAMILIES if f != "rnn" or self.rnn_missing is None]
        self.results: dict[str, object] = {}
        self.seconds: dict[str, float] = {}
        self.figures: list[str] = []
        self.notes: list[str] = []
        self._pool: ProcessPoolExecutor | None = None
        self._own_work = args.work_dir is None
        self.work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="rnn_vs_transformer-"))
        if self.rnn_missing:
            self.notes.append(f"RNNsearch not measured: {self.rnn_missing}; the Transformer side only")

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.args.jobs,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def side_by_side(self, jobs: dict[str, tuple]) -> dict[str, dict]:
        """Run {family: (function, *args)} in the worker processes; a job that fails gives {"error": line}."""
        futures: dict[str, Future] = {f: self.pool().submit(*job) for f, job in jobs.items()}
        results = {}
        for family, future in futures.items():
            try:
                results[family] = future.result()
            except Exception as error:  # noqa: BLE001  one model failing must not lose the other's figures
                results[family] = {"family": family, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
                say(f"  {family}: failed: {results[family]['error']}")
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self._own_work:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def report(self, total_s: float) -> str:
        return assemble(self, total_s)

    def write_json(self, path: Path, total_s: float) -> None:
        data = {"machine": vars(self.machine), "threads": self.args.threads, "quick": self.args.quick,
                "total_seconds": total_s, "section_seconds": self.seconds, "notes": self.notes,
                "results": self.results}
        path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


def section_params(run: Run) -> None:
    places = {}
    for name, config in counted_configs(run.args.quick, "rnn" in run.families).items():
        places[name] = {p: {"count": v["count"]} for p, v in parameter_places(build_model(config)).items()}
        say(f"  {name}: {sum(v['count'] for v in places[name].values()):,} parameters")
    run.results["params"] = places


def section_parallelism(run: Run) -> None:
    a = run.args
    torch.set_num_threads(a.threads)
    rows = run_speed(run.families, a.size, 400 if a.size == "demo" else 99, a.lengths, a.transformer_lengths,
                     a.tokens, a.warmup, a.repeats, say)
    run.results["parallelism"] = [r.as_dict() for r in rows]
    report.plot_speed(run.results["parallelism"], run.out / "parallelism.png", _note(run, f"{a.threads} threads"))
    run.figures.append("parallelism.png")


def section_path(run: Run) -> None:
    a = run.args
    task = PathTask(tuple(sorted(a.distances)))
    training = PathTraining(steps=a.path_steps, tokens=a.path_tokens, eval_rows=a.path_eval)
    size = "tiny" if a.quick else "small"
    results = run.side_by_side({f: (train_and_score, f, size, task, training, 1) for f in run.families})
    run.results["path"] = {"results": results, "chance": 1 / task.content_tokens, "task": vars(task) | {
        "vocab_size": task.vocab_size}, "training": vars(training),
        "rows": {d: training.rows(task, d) for d in task.distances}}
    report.plot_path(results, 1 / task.content_tokens, run.out / "path_length.png", _note(run, "1 thread each"))
    run.figures.append("path_length.png")


def section_quality(run: Run, dataset: str) -> None:
    a = run.args
    quick = ("--data.train_pairs=3000", "--data.small_numbers=0", "--data.valid_pairs=50", "--data.vocab_size=300",
             "--data.batch_size=32") if dataset == "demo" else ("--data.vocab_size=600", "--data.tokenizer_pairs=3000",
                                                                "--data.max_tokens=800", "--eval.max_new_tokens=20")
    plan = QualityPlan(dataset, a.demo_budget if dataset == "demo" else a.multi30k_budget, str(run.work_dir),
                       evals=a.evals, eval_pairs=a.eval_pairs, calibration=a.calibration, tiny=a.quick,
                       test_pairs=a.demo_test_pairs if dataset == "demo" else a.multi30k_test_sentences,
                       overrides=quick if a.quick else ())
    missing = _missing_data(plan)
    if missing:
        run.notes.append(f"{dataset} skipped: {missing}")
        say(f"  skipped: {missing}")
        return
    results = run.side_by_side({f: (quality_job, f, plan) for f in run.families})
    if dataset == "multi30k" and a.multi30k_test_sentences:
        run.notes.append(f"Multi30k test scores on the first {a.multi30k_test_sentences} test2016 sentences")
    run.results[dataset] = {"results": results, "budget_s": plan.budget_s}
    metric = "exact_match" if dataset == "demo" else "bleu"
    title = ("Demo numbers (en -> de number phrases)" if dataset == "demo" else "Multi30k en -> de") + \
        f", {plan.budget_s / 60:.1f} min of training each"
    report.plot_quality(results, metric, title, run.out / f"quality_{dataset}.png", _note(run, "1 thread each"))
    run.figures.append(f"quality_{dataset}.png")


def _missing_data(plan: QualityPlan) -> str | None:
    recipe, _ = build_recipe("transformer", plan)
    if recipe.data.corpus == "numbers":
        return None
    for name in ("train_source", "train_target", "test_source", "test_target"):
        path = recipe.data_path(getattr(recipe.data, name))
        if not path.is_file():
            return f"no {path} (set TFORMER_DATA to the folder holding multi30k/)"
    return None


def _note(run: Run, threads: str) -> str:
    return f"{run.machine.cpu}, {run.machine.cores} cores, torch {run.machine.torch_version}, {threads}; {SHARED_NOTE}"


def run_sections(run: Run) -> None:
    sections = {"params": section_params, "parallelism": section_parallelism, "path": section_path,
                "demo": lambda r: section_quality(r, "demo"), "multi30k": lambda r: section_quality(r, "multi30k")}
    for name in run.args.sections:
        say(f"[{time.strftime('%H:%M:%S')}] section {name}")
        began = time.perf_counter()
        sections[name](run)
        run.seconds[name] = time.perf_counter() - began
        say(f"  section {name}: {run.seconds[name]:.0f} s")


def assemble(run: Run, total_s: float) -> str:
    a, lines = run.args, ["# RNN vs Transformer: the notes' comparison, measured", ""]
    lines += [run.machine.line(f"{a.threads} in the parallelism section, 1 per run in the side-by-side sections "
                               f"({a.jobs} at a time)"), f"total wall time {total_s / 60:.1f} min "
              f"({', '.join(f'{k} {v:.0f} s' for k, v in run.seconds.items())}); {SHARED_NOTE}"
              + ("; --quick (tiny models: a smoke run, not a measurement)" if a.quick else ""), ""]
    lines += [f"Note: {note}" for note in run.notes] + ([""] if run.notes else [])
    r = run.results
    if "params" in r:
        lines += ["## Parameters, and where they sit", "", *report.params_table(r["params"]), ""]
    if "parallelism" in r:
        lines += ["## Parallelism: training-step time against sequence length", "",
                  f"{a.tokens} target tokens per step (batch = {a.tokens} // n), source = target = n tokens, "
                  f"median of {a.repeats} steps after {a.warmup} warm-up, {a.threads} threads.", "",
                  *report.speed_table(r["parallelism"]), "", "![parallelism](parallelism.png)", ""]
    if "path" in r:
        p = r["path"]
        lines += ["## Path length: reproduce the token d positions before the end of the source", "",
                  f"A fresh model per d, {p['training']['steps']} steps of about {p['training']['tokens']} source "
                  f"tokens for both (the same batches; rows per step by d: "
                  f"{', '.join(f'{d}: {n}' for d, n in p['rows'].items())}), lr {p['training']['lr']}, "
                  f"{p['training']['eval_rows']} fresh test rows per d; "
                  f"{p['task']['content_tokens']} content tokens, source length d + [0, {p['task']['jitter']}] + 1.",
                  "", *report.path_table(p["results"], p["chance"]), "", "![path length](path_length.png)", ""]
    for dataset, metric in (("demo", "exact_match"), ("multi30k", "bleu")):
        if dataset in r:
            q = r[dataset]
            lines += [f"## Quality per wall-clock: {dataset}", "", f"Budget: {q['budget_s']:.0f} training seconds "
                      "per model, one thread each, side by side.", "", *report.quality_table(q["results"], metric),
                      "", f"![{dataset}](quality_{dataset}.png)", ""]
    return "\n".join(lines).rstrip()
