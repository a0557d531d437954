"""Which checkpoint `--resume` continues, and whether it may: it loads, it fits this run's model, steps remain.

* `pick_checkpoint` takes the newest checkpoint whose files load (every weight finite); a damaged one (a
  truncated model.safetensors, a garbage trainer.pt) is skipped with one line saying why. `--resume=PATH`
  names one folder and gets no fallback.
* `recipe_difference` / `model_difference` name the first field in which the checkpoint's run differs from
  this one (model fields, objective, tokenizer); resuming across such a difference is refused.
* `schedule_changes` says how the learning-rate schedule changes when the resumed recipe has another
  max_steps, lr, warmup or schedule (a resumed run follows this recipe's schedule from the checkpoint's step).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from tformer.training.checkpoint import list_checkpoints
from tformer.training.options import to_yaml
from tformer.training.recipe import Recipe
from tformer.training.run_folder import run_marks

COMPARED = (("train", "objective"), ("model", "preset"), ("model", "from_pretrained"), ("data", "tokenizer"),
            ("data", "vocab_size"), ("task", "name"))
SCHEDULE = ("max_steps", "lr", "min_lr", "warmup_steps", "schedule")


def why_unloadable(path: Path) -> str | None:
    """None when checkpoint `path` loads (weights finite, trainer state and RNG readable); else the reason."""
    from safetensors.torch import load_file

    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"config.json: {_first_line(error)}"
    try:
        weights = load_file(str(path / "model.safetensors"))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        return f"model.safetensors: {_first_line(error)}"
    bad = next((name for name, tensor in weights.items()
                if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
    if bad is not None:
        return f"model.safetensors: {bad} holds NaN or infinite values"
    for name in ("trainer.pt", "rng-rank0.pt"):
        try:
            torch.load(path / name, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - pickle, zip and EOF errors of a damaged file
            return f"{name}: {_first_line(error)}"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


def checkpoint_step(path: Path) -> int:
    """The optimizer step checkpoint `path` was written at (its trainer.pt counters)."""
    state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    return int(state["counters"]["step"])


def pick_checkpoint(run_dir: Path, wanted: Path | None, say: Callable[[str], Any]) -> Path | None:
    """`wanted` when given (it must load), else the newest checkpoint of `run_dir` that loads, or None if none."""
    if wanted is not None:
        if not (wanted / "trainer.pt").is_file():
            raise FileNotFoundError(f"--resume={wanted} is not a training checkpoint (no trainer.pt); pick a folder "
                                    f"such as {run_dir / 'checkpoints' / 'step-00000100'}")
        reason = why_unloadable(wanted)
        if reason:
            raise ValueError(f"--resume={wanted} does not load ({reason}); pick another checkpoint folder")
        return wanted
    found = list_checkpoints(run_dir)
    skipped: list[str] = []
    for path in reversed(found):
        reason = why_unloadable(path)
        if reason is None:
            return path
        say(f"--resume: skipping {path} ({reason})")
        skipped.append(path.name)
    if skipped:
        raise ValueError(f"--resume: no checkpoint in {run_dir / 'checkpoints'} loads ({', '.join(skipped)} are "
                         f"damaged); start again with --overwrite")
    return None


def checkpoint_to_resume(run_dir: Path, resume: bool | str | Path, recipe: Recipe,
                         say: Callable[[str], Any]) -> Path | None:
    """The checkpoint `resume` names (True: the newest that loads), checked against `recipe`; None if there is none."""
    explicit = None if resume is True else Path(resume)
    path = pick_checkpoint(run_dir, explicit, say)
    if explicit is not None and explicit.resolve().parent != (run_dir / "checkpoints").resolve() \
            and run_marks(run_dir):
        raise ValueError(f"--resume={explicit} is not a checkpoint of out.dir={run_dir}, which holds another run; "
                         f"pick one of {run_dir / 'checkpoints'} or a new --out.dir")
    if path is None:
        return None
    difference = recipe_difference(path, recipe)
    if difference:
        raise refuse_difference(path, difference)
    step = checkpoint_step(path)
    if recipe.train.max_steps < step:
        raise ValueError(f"train.max_steps={recipe.train.max_steps} is below the step of the checkpoint to resume "
                         f"({path}: step {step}); set --train.max_steps={step} or more")
    return path


def _as_mapping(text: str) -> dict[str, Any]:
    found = yaml.safe_load(text)
    return found if isinstance(found, dict) else {}


def _section(mapping: dict[str, Any], section: str) -> dict[str, Any]:
    value = mapping.get(section)
    return value if isinstance(value, dict) else {}


def recipe_difference(path: Path, recipe: Recipe) -> str | None:
    """The first model / objective / tokenizer field where checkpoint `path`'s recipe differs from `recipe`."""
    saved_file = path / "recipe.yaml"
    if not saved_file.is_file():
        return None
    saved, current = _as_mapping(saved_file.read_text(encoding="utf-8")), _as_mapping(to_yaml(recipe))
    pairs = [(f"{s}.{k}", _section(saved, s).get(k), _section(current, s).get(k)) for s, k in COMPARED]
    old_config, new_config = (_section(_section(m, "model"), "config") for m in (saved, current))
    unset = _Unset()
    pairs += [(f"model.config.{k}", old_config.get(k, unset), new_config.get(k, unset))
              for k in sorted({*old_config, *new_config})]
    for name, old, new in pairs:
        if old != new:
            return f"{name}={old!r} in the checkpoint's recipe, {new!r} in this run"
    return None


class _Unset:
    """A model.config key one recipe leaves to the preset."""

    def __repr__(self) -> str:
        return "unset (the preset's)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unset)

    def __hash__(self) -> int:
        return 0


def model_difference(path: Path, config: dict[str, Any], vocab: dict[str, int] | None) -> str | None:
    """The first ModelConfig field (or the tokenizer) where checkpoint `path` differs from the model built now."""
    try:
        saved = json.loads((path / "config.json").read_text(encoding="utf-8")).get("tformer_config") or {}
    except (OSError, ValueError, AttributeError):
        saved = {}
    config = json.loads(json.dumps(config, default=str))  # as config.json holds it (id2label keys are strings)
    for key in sorted({*saved, *config}):
        if key in saved and saved[key] != config.get(key) and not _same_number(saved[key], config.get(key)):
            return f"the checkpoint's model has {key}={saved[key]!r}, this run's {config.get(key)!r}"
    tokenizer_file = path / "tokenizer.json"
    if vocab is not None and tokenizer_file.is_file():
        from tformer.tokenization import Tokenizer

        if Tokenizer.from_file(tokenizer_file).backend.get_vocab() != vocab:
            return "the checkpoint's tokenizer.json has another vocabulary than this run's tokenizer"
    return None


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b)


def refuse_difference(path: Path, difference: str) -> ValueError:
    return ValueError(f"--resume: {path} was trained differently: {difference}; resume with the recipe that wrote "
                      f"it ({path / 'recipe.yaml'}), or start a new run with another --out.dir")


def schedule_changes(path: Path, recipe: Recipe) -> str | None:
    """One line on how the learning-rate schedule differs from the checkpoint's recipe, or None when it is the same."""
    saved_file = path / "recipe.yaml"
    if not saved_file.is_file():
        return None
    saved = _section(_as_mapping(saved_file.read_text(encoding="utf-8")), "train")
    current = _section(_as_mapping(to_yaml(recipe)), "train")
    changed = [f"train.{k} {saved.get(k)} -> {current.get(k)}" for k in SCHEDULE
               if k in saved and saved.get(k) != current.get(k)
               and not (k == "max_steps" and current.get("schedule") in ("constant", "noam")
                        and saved.get("schedule") == current.get("schedule"))]
    if not changed:
        return None
    return (f"--resume: the learning-rate schedule changes ({', '.join(changed)}): from the checkpoint's step on "
            f"this run follows the new one, so it does not repeat a run trained straight through with the old one")


def follow_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float) -> None:
    """A restored scheduler follows this recipe's peak `lr` and schedule from its step (the state held the old lr)."""
    factor, groups = scheduler.lr_lambdas[0], scheduler.optimizer.param_groups
    scheduler.base_lrs = [lr] * len(groups)
    for group in groups:
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]  # noqa: SLF001 - what get_last_lr() reports
