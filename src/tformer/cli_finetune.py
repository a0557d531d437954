"""`tformer finetune TASK --model DIR --data DIR [--out DIR] [--key=value ...]` and `tformer evaluate TASK ...`."""

from __future__ import annotations

import argparse
import shlex

from tformer.tasks.registry import TASKS


def _finetune(args: argparse.Namespace) -> None:
    from tformer.tasks.finetune import FinetuneOptions, finetune  # torch-heavy imports only when it runs

    options = FinetuneOptions.from_overrides(args.overrides)
    out = args.out or f"runs/finetune-{args.task}"
    command = shlex.join(["tformer", *args.argv])
    result = finetune(args.task, args.model, args.data, out, options, command=command)
    shown = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
    print(f"{result.task} dev: {shown}  ({result.train_examples:,} training examples, {result.steps} steps, "
          f"{result.seconds:.0f} s)")
    print(f"model folder: {result.model_dir}  (tformer evaluate {result.task} --model {result.model_dir})")


def _evaluate(args: argparse.Namespace) -> None:
    from tformer.tasks.finetune import evaluate

    metrics = evaluate(args.task, args.model, args.data, threads=args.threads, device=args.device)
    print(f"{args.task} dev: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))


def add_finetune_commands(commands: argparse._SubParsersAction) -> None:
    tasks = ", ".join(TASKS)
    finetune = commands.add_parser(
        "finetune", help="fine-tune a pre-trained GPT or BERT folder on a task and score its dev split",
        description=f"Fine-tune a model folder on a task ({tasks}) and write OUT/ (a model folder) and "
                    "OUT/metrics.json. Options as --key=value: lr, batch_size, epochs, max_steps, max_length, "
                    "doc_stride, warmup_fraction, weight_decay, max_grad_norm, lm_weight, max_train_examples, "
                    "max_eval_examples, eval_batch_size, threads, device, seed, log_every.", allow_abbrev=False)
    finetune.add_argument("task", help=f"the task: {tasks}")
    finetune.add_argument("--model", required=True, metavar="DIR", help="a GPT or BERT folder with tokenizer.json")
    finetune.add_argument("--data", metavar="DIR", help="the data folder (default: $TFORMER_DATA, else ../shared/data)")
    finetune.add_argument("--out", metavar="DIR", help="where the fine-tuned model goes (default: runs/finetune-TASK)")
    finetune.set_defaults(run=_finetune, overrides=[], accepts_overrides=True)

    evaluate = commands.add_parser("evaluate", help="score a fine-tuned model folder on its task's dev split",
                                   allow_abbrev=False)
    evaluate.add_argument("task", help=f"the task: {tasks}")
    evaluate.add_argument("--model", required=True, metavar="DIR", help="a model folder written by tformer finetune")
    evaluate.add_argument("--data", metavar="DIR", help="the data folder (default: $TFORMER_DATA, else ../shared/data)")
    evaluate.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    evaluate.add_argument("--device", metavar="NAME", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    evaluate.set_defaults(run=_evaluate)
