"""`tformer train RECIPE [--key.sub=value ...] [--print-config] [--resume[=PATH]] [--overwrite]`, `tformer recipes`."""

from __future__ import annotations

import argparse
import sys

from tformer.training.options import to_yaml
from tformer.training.recipe import RECIPES_DIR, load_recipe

NEXT_COMMAND = {  # what to run on the model folder a run leaves, by objective
    "causal_lm": 'tformer generate --model {dir} "PROMPT"',
    "seq2seq": 'tformer translate --model {dir} "SOURCE"',
    "decoder_seq2seq": 'tformer translate --model {dir} "SOURCE"',
    "mlm": 'tformer viz attention --model {dir} "TEXT", or tformer finetune TASK --model {dir}',
    "mlm_nsp": 'tformer viz attention --model {dir} "TEXT", or tformer finetune TASK --model {dir}',
    "task": "tformer evaluate TASK --model {dir}",
}


def _train(args: argparse.Namespace) -> None:
    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        sys.stdout.write(to_yaml(recipe))
        return
    from tformer.training.trainer import Trainer, TrainingDiverged  # torch-heavy imports only when training

    trainer = Trainer(recipe, resume=args.resume, overwrite=args.overwrite)
    try:
        result = trainer.fit()
    except TrainingDiverged as error:  # a user-facing stop: one line, exit code 2, checkpoints kept
        raise ValueError(str(error)) from None
    finally:
        trainer.close()
    if trainer.env.is_main:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result.eval_metrics.items())
        print(f"done: {result.step} steps in {result.seconds:.0f} s; eval {shown}")
        print(f"model folder: {result.model_dir}  (next: "
              f"{NEXT_COMMAND[recipe.train.objective].format(dir=result.model_dir)})")


def _recipes(args: argparse.Namespace) -> None:
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        recipe = load_recipe(path)
        print(f"{path.stem:<26}{recipe.train.objective:<17}{recipe.description}")


def add_training_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train a model from a recipe (YAML)",
        description="Train from a recipe. Any option can be overridden as --section.key=value "
                    "(e.g. --train.max_steps=100 --model.config.n_layers=2); --print-config shows them all.")
    train.add_argument("recipe", help="a recipe file, or the name of a shipped recipe (`tformer recipes`)")
    train.add_argument("--print-config", action="store_true", help="print the full recipe with help and stop")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                       help="continue the run in out.dir from its newest checkpoint that loads (--resume=PATH: from "
                            "that checkpoint folder)")
    train.add_argument("--overwrite", action="store_true",
                       help="out.dir holds an earlier run: delete its files (recipe.yaml, metrics.jsonl, loss.png, "
                            "checkpoints/, final/, data/, tensorboard/; nothing else) and start again")
    train.set_defaults(run=_train, overrides=[], accepts_overrides=True)
    listing = commands.add_parser("recipes", help="list the shipped recipes")
    listing.set_defaults(run=_recipes)

