"""Does scale help? GPTs of several sizes trained on several amounts of Gutenberg text, each to one token budget.

    python benchmarks/scaling.py            # the default sweep: 5 sizes x 4 data amounts, about 2.5 h on 1 thread
    python benchmarks/scaling.py --quick    # a smoke run, tiny sizes on one short book (well under a minute)
    python benchmarks/scaling.py --estimate-only   # prepare the corpus, print the measured estimate, stop

One tokenizer for everything: the books are prepared once (`tformer prepare`'s machinery: byte-level BPE trained
on them, train.bin and val.bin) into RUNS/data/all; each data amount D is a folder holding the first D tokens of
that train.bin and the same val.bin. Every point (size, D) is a `tformer train` run folder RUNS/SIZE-DD whose
recipe trains on its folder through data.prepared, for the same steps x batch x block tokens (a small D is seen
for several epochs), and is evaluated on the same fixed windows of val.bin. A rerun skips the points whose
final/ is written and resumes an interrupted one from its last checkpoint. With --zero-shot-examples N, each
final model is also scored zero-shot on N SST-2 dev sentences (GPT-1's heuristic, tformer.evaluate_zero_shot).

Then L(N) = (N_c / N)^alpha + L_inf is fitted per data amount against the non-embedding parameters N (counted on
the built model: all parameters but the token and position embeddings; the head is tied), and L(D) likewise for
the largest model; OUT gets results.md, results.json, loss_vs_params.png (a line per data amount) and
loss_vs_compute.png (training loss against C = 6 N tokens, one curve per size, on the largest data amount).

The time estimate printed at the start is measured then: one warm-up and two timed training steps (forward,
backward, AdamW) of each size still to train on a random batch of the sweep's shape at --threads, times the steps
of its points; evaluation and zero-shot scoring come on top (a few per cent). Measured on this 2-core machine at
one thread, under load (vocabulary 4,096, batch 16 x 128): 0.15, 0.27, 0.45, 0.94 and 1.67 s per step for the
five default sizes (0.1M, 0.6M, 1.8M, 4.8M and 9.9M non-embedding parameters), so 600 steps x 4 data amounts are
about 2.3 hours of training; preparing the corpus takes about 20 s.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaling_options import Size, parse_args
from tformer.config import ModelConfig
from tformer.data.prepare import prepare
from tformer.interrupt import Interrupted
from tformer.models import build_model
from tformer.training import Trainer
from tformer.training.recipe import Recipe, data_root, find_data_files, load_recipe

SETTINGS = ("books", "vocab_size", "val_fraction", "steps", "batch_size", "block_size", "eval_batches", "lr")


def check_sweep(args: Any, files: list[Path]) -> None:
    """RUNS/sweep.json: a runs folder serves one corpus and training setting (sizes and amounts may be added)."""
    wanted = {key: getattr(args, key) for key in SETTINGS} | {"files": [str(f) for f in files]}
    stamp = args.runs / "sweep.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != wanted:
        old = json.loads(stamp.read_text())
        changed = ", ".join(key for key in wanted if old.get(key) != wanted[key])
        raise ValueError(f"--runs {args.runs} holds a sweep with other settings ({changed}); pass another --runs, "
                         "or delete that folder to start over")
    stamp.write_text(json.dumps(wanted, indent=2) + "\n")


def prepare_corpus(args: Any, files: list[Path], log: Callable[[str], Any]) -> Path:
    """The books tokenized once (BPE trained on them) into RUNS/data/all; reused when already there."""
    folder = args.runs / "data" / "all"
    if (folder / "meta.json").is_file():
        log(f"corpus: reusing {folder}")
        return folder
    prepare(files, folder, tokenizer="bpe", vocab_size=args.vocab_size, val_fraction=args.val_fraction,
            progress=False, log=log, overwrite=True)
    return folder


def data_amount(corpus: Path, tokens: int) -> Path:
    """A prepared folder whose train.bin is the first `tokens` of the corpus's, beside the same val.bin."""
    folder = corpus.parent / f"D{tokens}"
    meta = json.loads((corpus / "meta.json").read_text())
    if meta["train_tokens"] < tokens:
        raise ValueError(f"--data-tokens: {tokens:,} is more than the {meta['train_tokens']:,} training tokens of "
                         "the books; lower it or add --books")
    if (folder / "meta.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    train = np.memmap(corpus / "train.bin", dtype=meta["dtype"], mode="r")
    np.asarray(train[:tokens]).tofile(folder / "train.bin")
    for name in ("val.bin", "tokenizer.json"):
        shutil.copyfile(corpus / name, folder / name)
    (folder / "meta.json").write_text(json.dumps({**meta, "train_tokens": tokens, "prefix_of": str(corpus)}, indent=2))
    return folder


def model_settings(size: Size, block_size: int) -> dict[str, Any]:
    return {"n_layers": size.n_layers, "d_model": size.d_model, "n_heads": size.n_heads, "d_ff": 4 * size.d_model,
            "max_positions": block_size, "dropout": 0.0, "attention_dropout": 0.0}


def point_recipe(args: Any, size: Size, tokens: int, prepared: Path) -> Recipe:
    """The `tformer train` recipe of one point (GPT-2 shape, AdamW, cosine to lr / 10 after 5 % warmup)."""
    steps = args.steps
    return load_recipe({
        "name": f"scaling-{size.name}-D{tokens}",
        "model": {"preset": "gpt2", "config": model_settings(size, args.block_size)},
        "data": {"prepared": str(prepared), "text": [], "block_size": args.block_size, "batch_size": args.batch_size},
        "train": {"objective": "causal_lm", "max_steps": steps, "lr": args.lr, "min_lr": args.lr / 10,
                  "schedule": "cosine", "warmup_steps": max(1, steps // 20), "betas": [0.9, 0.95],
                  "weight_decay": 0.1, "clip_grad_norm": 1.0, "threads": args.threads, "device": "cpu"},
        "eval": {"every": 0, "batches": args.eval_batches},
        "out": {"dir": str(args.runs / f"{size.name}-D{tokens}"), "checkpoint_every": max(1, steps // 5),
                "keep_checkpoints": 1, "log_every": max(1, steps // 20), "progress": "none", "tensorboard": False,
                "plot": False}})


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside the token and position embeddings (Kaplan et al.'s N; a tied head is the embedding)."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def built_model(size: Size, args: Any, vocab_size: int) -> torch.nn.Module:
    base = ModelConfig.preset("gpt2").to_dict()
    return build_model(ModelConfig.from_dict({**base, **model_settings(size, args.block_size), "vocab_size": vocab_size,
                                              "bos_token_id": None, "eos_token_id": None}))


def step_seconds(size: Size, args: Any, vocab_size: int) -> float:
    """One training step's time (forward, backward, AdamW) on a random batch of the sweep's shape: min of 2."""
    torch.set_num_threads(args.threads)
    model = built_model(size, args, vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    ids = torch.randint(0, vocab_size, (args.batch_size, args.block_size))
    times = []
    for _ in range(3):
        began = time.perf_counter()
        logits = model(ids).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), ids.reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - began)
    return min(times[1:])


def finished(run: Path) -> bool:
    return (run / "final" / "config.json").is_file()


def final_eval(run: Path) -> dict[str, Any]:
    """The last evaluation row of a run's metrics.jsonl (the final one, on the fixed validation windows)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row for row in rows if row["split"] == "eval"][-1]


def zero_shot(args: Any, run: Path) -> dict[str, Any] | None:
    """SST-2 zero-shot accuracy of the run's final model on the first N dev sentences (kept in the run folder)."""
    if not args.zero_shot_examples:
        return None
    saved = run / f"zero_shot_sst2_{args.zero_shot_examples}.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    from tformer.evaluation.zero_shot import evaluate_zero_shot

    result = evaluate_zero_shot("sst2", run / "final", data_root(args.data), max_examples=args.zero_shot_examples,
                                threads=args.threads, device="cpu")
    row = {"accuracy": result.accuracy, "chance": result.chance, "examples": result.examples,
           "verbalizer": list(result.verbalizer)}
    saved.write_text(json.dumps(row) + "\n")
    return row


def run_point(args: Any, size: Size, tokens: int, prepared: Path, vocab_size: int,
              log: Callable[[str], Any]) -> dict[str, Any]:
    """Train the point unless its final/ is there (resuming a checkpoint), then its row of the results."""
    recipe = point_recipe(args, size, tokens, prepared)
    trained = not finished(recipe.run_dir)
    if trained:
        log(f"point {size.name} on {tokens:,} tokens: training {args.steps} steps in {recipe.run_dir}")
        trainer = Trainer(recipe, resume=True, log_stream=sys.stdout)
        try:
            trainer.fit()
        finally:
            trainer.close()
    else:
        log(f"point {size.name} on {tokens:,} tokens: finished earlier, skipped ({recipe.run_dir})")
    evaluation = final_eval(recipe.run_dir)
    n = non_embedding_parameters(built_model(size, args, vocab_size))
    budget = args.steps * args.batch_size * args.block_size
    return {"size": size.name, "n_layers": size.n_layers, "d_model": size.d_model, "n_heads": size.n_heads,
            "non_embedding_parameters": n, "data_tokens": tokens, "trained_tokens": budget,
            "epochs": budget / tokens, "compute_flops": 6 * n * budget, "val_loss": evaluation["loss"],
            "train_seconds": evaluation["time"],
            "trained_now": trained, "run": str(recipe.run_dir), "sst2": zero_shot(args, recipe.run_dir)}


def estimate(args: Any, vocab_size: int, log: Callable[[str], Any]) -> dict[str, Any]:
    """Measured step time of each size still to train, times its steps: the sweep's CPU time, printed."""
    per_size = {}
    for size in args.sizes:
        todo = [t for t in args.data_tokens if not finished(args.runs / f"{size.name}-D{t}")]
        if todo:
            per_size[size.name] = {"step_s": step_seconds(size, args, vocab_size), "points": len(todo)}
    total = sum(v["step_s"] * v["points"] * args.steps for v in per_size.values())
    detail = ", ".join(f"{k} {v['step_s']:.3f} s/step" for k, v in per_size.items()) or "nothing to train"
    log(f"estimate: {total / 3600:.2f} h ({total:.0f} s) of training at {args.threads} thread(s) ({detail}; "
        f"x {args.steps} steps per point; evaluation and zero-shot on top)")
    return {"seconds": total, "step_seconds": {k: v["step_s"] for k, v in per_size.items()}}


def sweep(args: Any, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Every point of the sweep (trained or skipped), the fits, and the report written to --out."""
    from scaling_report import write_report

    began = time.perf_counter()
    files = find_data_files(args.books, [data_root(args.data)], "pass --data (or set TFORMER_DATA) to the folder "
                            "that holds it")
    if args.zero_shot_examples:  # a missing SST-2 is refused before hours of training, not after
        from tformer.tasks.registry import get_task

        get_task("sst2").read("dev", data_root(args.data))
    check_sweep(args, files)
    corpus = prepare_corpus(args, files, log)
    vocab_size = json.loads((corpus / "meta.json").read_text())["vocab_size"]
    amounts = {tokens: data_amount(corpus, tokens) for tokens in args.data_tokens}
    guess = estimate(args, vocab_size, log)
    if args.estimate_only:
        return {"estimate": guess}
    points = [run_point(args, size, tokens, folder, vocab_size, log)
              for size in args.sizes for tokens, folder in amounts.items()]
    return write_report(args, points, guess, files, time.perf_counter() - began, log)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sweep(args)
    except (ValueError, OSError) as error:
        print(f"scaling.py: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as stopped:  # Ctrl-C / SIGTERM: the point in progress kept a checkpoint
        print(f"scaling.py: {stopped}; rerun the same command to go on (finished points are skipped)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
