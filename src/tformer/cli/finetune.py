"""`tformer finetune TASK --model DIR --data DIR [--out DIR] [--key=value | --key value ...]` and
`tformer evaluate TASK --model DIR [--max_eval_examples N --batch_size N --threads N]` (with --zero-shot: a language
model's zero-shot accuracy, GPT-1's heuristics: tformer.evaluation.zero_shot)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from typing import Any

from tformer.cli.common import one_line_warnings
from tformer.evaluation.zero_shot_prompts import ZERO_SHOT
from tformer.tasks.options import FinetuneOptions
from tformer.tasks.registry import TASKS
from tformer.training.options import OptionError

OPTION_PREFIX = "option_"  # argparse dest of each FinetuneOptions field, kept apart from task/model/data/out


def _finetune(args: argparse.Namespace) -> None:
    given = [f"--{name.removeprefix(OPTION_PREFIX)}={value}" for name, value in vars(args).items()
             if name.startswith(OPTION_PREFIX)]
    options = FinetuneOptions.from_overrides([*given, *args.overrides])  # a bad option is said before torch loads
    from tformer.tasks.finetune import finetune  # torch-heavy imports only when it runs
    from tformer.training.trainer import TrainingDiverged

    out = args.out or f"runs/finetune-{args.task}"
    command = shlex.join(["tformer", *args.argv])
    try:
        result = finetune(args.task, args.model, args.data, out, options, command=command, overwrite=args.overwrite,
                          resume=args.resume)
    except TrainingDiverged as error:  # a user-facing stop: one line, exit code 2, checkpoints kept
        raise ValueError(str(error)) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone reports
        return
    shown = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
    print(f"{result.task} dev: {shown}  ({result.train_examples:,} training examples, {result.steps} steps, "
          f"{result.seconds:.0f} s)")
    print(f"model folder: {result.model_dir}  (tformer evaluate {result.task} --model {result.model_dir})")


def _evaluate(args: argparse.Namespace) -> None:
    _check_zero_shot_arguments(args)
    if args.zero_shot:
        _zero_shot(args)
        return
    from tformer.tasks.finetune import evaluate_dev

    scored = evaluate_dev(args.task, args.model, args.data, max_examples=args.max_eval_examples,
                          batch_size=64 if args.batch_size is None else args.batch_size, threads=args.threads,
                          device=args.device)
    part = (f"the first {scored.examples:,} of {scored.available:,} dev examples (--max_eval_examples)"
            if scored.examples < scored.available else f"all {scored.examples:,} dev examples")
    shown = ", ".join(f"{name} {value:.4f}" for name, value in scored.metrics.items())
    print(f"{args.task} dev: {shown}  ({part})")


def _add_zero_shot_arguments(evaluate: argparse.ArgumentParser) -> None:
    group = evaluate.add_argument_group("zero-shot scoring (a pre-trained causal LM, no fine-tuning)")
    group.add_argument("--zero-shot", "--zero_shot", dest="zero_shot", action="store_true",
                       help=f"score a language model's own predictions ({', '.join(ZERO_SHOT)}): the candidate "
                            "answer with the highest log-probability after the prompt (length-normalised for "
                            "multiple choice); --model is then any gpt-family folder or tformer train run folder")
    defaults = "; ".join(f"{task} {prompts.template!r}" for task, prompts in ZERO_SHOT.items())
    group.add_argument("--template", metavar="TEXT", help=f"the prompt, with the example's fields in braces "
                       f"(defaults: {defaults})")
    group.add_argument("--verbalizer", "--verbaliser", dest="verbalizer", metavar="WORDS",
                       help="sst2: the answer word of each label, in label order, comma-separated, each read after "
                            f"one space (default: {','.join(ZERO_SHOT['sst2'].verbalizer)})")


def _check_zero_shot_arguments(args: argparse.Namespace) -> None:
    """--template and --verbalizer belong to --zero-shot: without it they are a one-line error."""
    for option in ("template", "verbalizer"):
        if getattr(args, option) is not None and not args.zero_shot:
            raise ValueError(f"--{option} sets the zero-shot prompt: add --zero-shot (a fine-tuned model is scored "
                             "by its task head, with no prompt)")


def _zero_shot(args: argparse.Namespace) -> None:
    from tformer.evaluation.continuation_scores import DEFAULT_BATCH_SIZE
    from tformer.evaluation.zero_shot import evaluate_zero_shot

    words = None if args.verbalizer is None else args.verbalizer.split(",")
    with one_line_warnings("evaluate"):
        result = evaluate_zero_shot(args.task, args.model, args.data, max_examples=args.max_eval_examples,
                                    template=args.template, verbalizer=words, threads=args.threads,
                                    device=args.device,
                                    batch_size=DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size)
    part = (f"the first {result.examples:,} of {result.available:,} {result.split} examples (--limit)"
            if result.examples < result.available else f"all {result.examples:,} {result.split} examples")
    print(f"{result.task} zero-shot: accuracy {result.accuracy:.4f}  (chance {result.chance:.4f}; {part})")
    verbalizer = f", verbalizer {'/'.join(result.verbalizer)}" if result.verbalizer else ""
    other = f"; by the sum instead: accuracy {result.accuracy_by_sum:.4f}" if result.normalized else ""
    print(f"prompt {result.template!r}{verbalizer}: {result.how}{other}")


def finetune_overrides(extra: list[str]) -> list[str]:
    """The option words argparse did not know, as `--key=value` (`--key value` is joined): FinetuneOptions then
    names an unknown key's closest match. Anything else is a one-line error in finetune's own syntax."""
    words, i = [], 0
    while i < len(extra):
        word = extra[i]
        if word.startswith("--") and "=" not in word and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            word, i = f"{word}={extra[i + 1]}", i + 1
        if not (word.startswith("--") and "=" in word):
            raise OptionError(f"unrecognised argument {word!r}; finetune options are written --key=value or "
                              "--key value, e.g. --lr=2e-5 (tformer finetune --help lists them)")
        words.append(word)
        i += 1
    return words


def _option_help(option: dataclasses.Field) -> dict[str, Any]:
    default = option.default
    text = option.metadata.get("help", "")
    shown = f"{text} (default: {default})" if default is not None else text
    if option.type in (bool, "bool"):
        return {"nargs": "?", "const": "true", "metavar": "BOOL", "help": f"{shown}; alone: true"}
    return {"metavar": "VALUE", "help": shown}


def _add_finetune_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fine-tuning options (--key=value or --key value)")
    for option in dataclasses.fields(FinetuneOptions):
        group.add_argument(f"--{option.name}", dest=f"{OPTION_PREFIX}{option.name}", default=argparse.SUPPRESS,
                           **_option_help(option))


def add_finetune_commands(commands: argparse._SubParsersAction) -> None:
    tasks = ", ".join(TASKS)
    finetune = commands.add_parser(
        "finetune", help="fine-tune a pre-trained GPT or BERT folder on a task and score its dev split",
        description=f"Fine-tune a model folder on a task ({tasks}) and write OUT/ (a model folder) and "
                    "OUT/metrics.json. Ctrl-C stops after the current step and writes a checkpoint in "
                    "OUT/checkpoints (continue with --resume). Under torchrun (torchrun --nproc-per-node 2 -m "
                    "tformer.cli finetune ...) each process trains on its share of every batch.", allow_abbrev=False)
    finetune.add_argument("task", help=f"the task: {tasks}")
    finetune.add_argument("--model", required=True, metavar="DIR", help="a GPT or BERT folder with tokenizer.json")
    finetune.add_argument("--data", metavar="DIR", help="the data folder (default: $TFORMER_DATA, else ../shared/data)")
    finetune.add_argument("--out", metavar="DIR", help="where the fine-tuned model goes (default: runs/finetune-TASK); "
                          "a new or empty folder, never the model folder")
    finetune.add_argument("--overwrite", action="store_true", help="replace a previous fine-tune in --out (only a "
                          "folder tformer finetune wrote)")
    finetune.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                          help="continue the fine-tune in --out from its newest checkpoint that loads (--resume=PATH: "
                               "from that checkpoint folder)")
    _add_finetune_options(finetune)
    finetune.set_defaults(run=_finetune, overrides=[], accepts_overrides=True, split_overrides=finetune_overrides)

    evaluate = commands.add_parser("evaluate", help="score a fine-tuned model folder on its task's dev split, or a "
                                   "language model zero-shot (--zero-shot)",
                                   description="Score a folder written by tformer finetune on the task's whole dev "
                                               "split (or its first --max_eval_examples); with --zero-shot, score a "
                                               "pre-trained causal LM with no fine-tuning, by the log-probability "
                                               "it gives each candidate answer after a prompt.", allow_abbrev=False)
    evaluate.add_argument("task", help=f"the task: {tasks}")
    evaluate.add_argument("--model", required=True, metavar="DIR", help="a model folder written by tformer finetune "
                          "(with --zero-shot: a language model folder)")
    evaluate.add_argument("--data", metavar="DIR", help="the data folder (default: $TFORMER_DATA, else ../shared/data)")
    evaluate.add_argument("--max_eval_examples", "--limit", dest="max_eval_examples", type=int, metavar="N",
                          help="score only the first N dev examples (default: all)")
    evaluate.add_argument("--batch_size", type=int, metavar="N", help="examples per batch (default: 64; with "
                          "--zero-shot 16 prompt + answer sequences)")
    evaluate.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    evaluate.add_argument("--device", metavar="NAME", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    _add_zero_shot_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)
