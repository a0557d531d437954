"""The Trainer: one loop for every objective (causal LM, masked LM + NSP, sequence-to-sequence, T-D, task
fine-tuning). What an objective's data, model, loss and evaluation are is its registry entry's
(`training/objectives/`): the Trainer only calls the entry, and never asks which objective it runs.

A step: draw `grad_accum` global micro-batches, count their loss items over all processes, run forward and
backward on this process's share of each (gradient sync only on the last micro-step), clip, step AdamW and
the schedule. Evaluation, checkpoints and logs happen between steps, on the schedule the recipe gives.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tformer import accel
from tformer.interrupt import Interrupted, StopRequests, stop_requests
from tformer.models.base import TransformerModel
from tformer.training import checkpoint as ckpt
from tformer.training.datasets import TrainingData, tokens_in
from tformer.training.distributed import Distributed, setup, shard, unwrap, wrap
from tformer.training.objectives import build_objective
from tformer.training.optim import build_optimizer, build_scheduler
from tformer.training.options import to_yaml
from tformer.training.preflight import check_before_data
from tformer.training.progress import RunLog, drop_rows_after
from tformer.training.recipe import Recipe
from tformer.training.resume import (
    checkpoint_to_resume,
    follow_schedule,
    model_difference,
    pick_checkpoint,
    refuse_difference,
    schedule_changes,
)
from tformer.training.run_folder import RunLock, claim_run_folder, paths_read


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    """What a finished run leaves: the final model folder, its last metrics, where everything is."""

    run_dir: Path
    model_dir: Path
    step: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Trainer:
    """Train the model a `Recipe` describes; `Trainer(recipe, resume=..., overwrite=...).fit()` -> TrainResult.

    The run folder is claimed before any data is prepared: checked writable, locked for this run, and refused
    when it already holds a run, unless `resume` (True: the newest checkpoint that loads; a path: that one)
    continues it or `overwrite` deletes the old run's files first.
    """

    def __init__(self, recipe: Recipe, *, resume: bool | str | Path = False, overwrite: bool = False,
                 data: TrainingData | None = None, log_stream: Any = None) -> None:
        check_before_data(recipe)  # a bad recipe is refused before a run folder is claimed or data prepared
        self.recipe = recipe
        t = recipe.train
        self.env: Distributed = setup(t.device)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.run_dir = recipe.run_dir
        self._seed(t.seed)
        say = (lambda text: print(text, file=log_stream, flush=True)) if self.env.is_main else (lambda text: None)
        self.log_stream = log_stream
        self.say = say
        self.lock: RunLock | None = None
        if self.env.is_main:
            self.lock = claim_run_folder(self.run_dir, resume=bool(resume), overwrite=overwrite,
                                         reads=paths_read(recipe), say=say)
        try:
            self._set_up(data, resume)
        except BaseException:
            self.close()
            raise

    def _set_up(self, data: TrainingData | None, resume: bool | str | Path) -> None:
        recipe, t = self.recipe, self.recipe.train
        self._restored = False
        self.resume_from: Path | None = self._checkpoint_to_resume(resume) if resume else None
        self.resume_wanted = bool(resume)
        if not self.env.is_main:
            self.env.barrier()  # rank 0 prepares the data files first; the others then only read them
        self.objective = build_objective(recipe)
        self.data = data if data is not None else self.objective.prepare_data(self.run_dir, self.say)
        if self.env.is_main:
            self.env.barrier()
        model = accel.apply(self.objective.build_model(self.data))  # CPU paths in place; TFORMER_ACCEL=0: off
        if self.env.enabled:  # the same weights on every process (FSDP does not broadcast them), then each
            self._seed((t.seed + 1 + self.env.rank) % 2**32)  # process its own dropout stream, as nanoGPT's seed + rank
        model.to(self.env.device)
        model.train()
        # the one module that trains (DDP / FSDP2 / torch.compile around the model); `self.model` is the plain one
        self.trained: nn.Module = wrap(model, t.distributed, self.env)
        if t.compile:
            self.trained = torch.compile(self.trained)
        self.optimizer = build_optimizer(self.model, lr=t.lr, weight_decay=t.weight_decay, betas=t.betas, eps=t.eps,
                                         decay_embeddings=t.decay_embeddings)
        self.scheduler = build_scheduler(self.optimizer, t.schedule, max_steps=t.max_steps,
                                         warmup_steps=t.warmup_steps, lr=t.lr, min_lr=t.min_lr)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
        if t.precision == "fp16" and self.env.device.type != "cuda":
            raise ValueError("train.precision=fp16 needs a CUDA device; on CPU use train.precision=bf16")
        self.scaler = torch.amp.GradScaler(self.env.device.type) if t.precision == "fp16" else None
        self.step = 0
        self.tokens_seen = 0
        self._pending: dict[str, Any] | None = None  # a checkpoint due, written once the next loss is finite
        if self.resume_from is not None:
            self._check_model_matches(self.resume_from)

    # ------------------------------------------------------------------------------------------------- set-up

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    @property
    def model(self) -> TransformerModel:
        """The plain model inside the DDP / torch.compile wrappers (under FSDP2 the sharded module itself): what
        checkpoints, the optimizer, evaluation and the final folder use."""
        return unwrap(self.trained)  # type: ignore[return-value]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------------------------------- checkpoints

    def save(self, metrics: dict[str, float] | None = None, before_rename: Any = None) -> Path:
        """Write a checkpoint of the current step now (every process must call this)."""
        return self._write(self._snapshot(metrics), before_rename)

    def _snapshot(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        """What a checkpoint of this step holds besides the weights and optimizer (both unchanged until the next
        update): the data position, the RNG state, the counters."""
        return {"step": self.step, "data": copy.deepcopy(self.data.train.state_dict()), "rng": ckpt.rng_state(),
                "counters": {"step": self.step, "tokens_seen": self.tokens_seen}, "metrics": dict(metrics or {})}

    def _write(self, snapshot: dict[str, Any], before_rename: Any = None) -> Path:
        return ckpt.save_checkpoint(
            self.run_dir, snapshot["step"],
            model=self.model, inner=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            data_state=snapshot["data"],
            counters=snapshot["counters"], tokenizer=self.data.tokenizer, recipe_yaml=to_yaml(self.recipe),
            metrics=snapshot["metrics"], env=self.env, keep=self.recipe.out.keep_checkpoints,
            before_rename=before_rename, rng=snapshot["rng"],
            scaler=self.scaler.state_dict() if self.scaler is not None else None)

    def _settle(self) -> Path | None:
        """Write the checkpoint that is due once its weights give a finite loss on the next batch (not trained on)."""
        if self._pending is None:
            return None
        micro = [self.data.train.next_batch() for _ in range(self.recipe.train.grad_accum)]
        with torch.no_grad():
            self._forward_backward(micro, backward=False)
        path, self._pending = self._write(self._pending), None
        return path

    def _checkpoint_to_resume(self, resume: bool | str | Path) -> Path | None:
        return checkpoint_to_resume(self.run_dir, resume, self.recipe, self.say)

    def _check_model_matches(self, path: Path) -> None:
        difference = model_difference(path, self.model.config.to_dict(), self.data.tokenizer.backend.get_vocab())
        if difference:
            raise refuse_difference(path, difference)

    def resume(self, path: Path | None = None) -> Path | None:
        """Continue from checkpoint `path` (default: the one chosen at construction, else the newest that loads)."""
        path = path or self.resume_from or pick_checkpoint(self.run_dir, None, self.say)
        if path is None:
            return None
        state = ckpt.load_checkpoint(path, inner=self.model, env=self.env)
        ckpt.restore_optimizer(self.model, self.optimizer, state["optimizer"], self.env)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):  # fp16: the loss scale and its growth count
            self.scaler.load_state_dict(state["scaler"])
        self.data.train.load_state_dict(state["data"])
        self.step = int(state["counters"]["step"])
        self.tokens_seen = int(state["counters"]["tokens_seen"])
        ckpt.restore_rng(path, self.env)
        change = schedule_changes(path, self.recipe)
        if change:
            self.say(change)
            follow_schedule(self.scheduler, self.recipe.train.lr)
        self.resume_from, self._restored = path, True
        return path

    # ---------------------------------------------------------------------------------------------- the loop

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches; returns the step's summed statistics.

        A checkpoint that is due is written after this step's loss is found finite and before the update, so every
        checkpoint holds weights whose next loss was finite.
        """
        t = self.recipe.train
        micro = [self.data.train.next_batch() for _ in range(t.grad_accum)]
        reduced = self._forward_backward(micro)
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if t.clip_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trained.parameters(), t.clip_grad_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        batch_tokens = sum(tokens_in(b) for b in micro)
        self.tokens_seen += batch_tokens
        reduced["batch_tokens"] = float(batch_tokens)
        if grad_norm is not None:
            reduced["grad_norm"] = grad_norm
        return reduced

    def _forward_backward(self, micro: list[dict[str, torch.Tensor]], backward: bool = True) -> dict[str, float]:
        """The loss of the micro-batches (and its gradients); a NaN or infinite loss raises TrainingDiverged."""
        env = self.env
        parts = [{k: v.to(env.device, non_blocking=True) for k, v in shard(b, env.rank, env.world_size).items()}
                 for b in micro]
        counts: dict[str, torch.Tensor] = {}
        for part in parts:
            for key, value in self.objective.counts(part).items():
                counts[key] = counts.get(key, 0) + value.detach().cpu()
        totals = {k: v.to(env.device) for k, v in env.all_reduce_sum(counts).items()}
        sums: dict[str, torch.Tensor] = {}
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            with self._no_sync(not last), self._autocast():
                loss, stats = self.objective.loss(self.trained, part, totals)
                loss = loss * env.world_size  # DDP and FSDP average gradients over processes; we want their sum
            if backward:
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            for key, value in stats.items():
                sums[key] = sums.get(key, 0) + value.detach().double().cpu()
        reduced = {k: float(v) for k, v in env.all_reduce_sum(sums).items()}
        loss_value = self.objective.summary(reduced)["loss"]
        if not math.isfinite(loss_value) or not all(math.isfinite(v) for v in reduced.values()):
            self._pending = None  # the weights of the checkpoint that was due give this loss: never written
            self.optimizer.zero_grad(set_to_none=True)
            last = ckpt.latest_checkpoint(self.run_dir)
            raise TrainingDiverged(
                f"the loss is {loss_value} at step {self.step + 1}; training stopped (the last good checkpoint, whose "
                f"weights gave a finite loss: {last if last else 'none yet'}); lower train.lr, raise "
                f"train.warmup_steps or set train.clip_grad_norm, then resume with --resume")
        return reduced

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        if not (skip and self.env.enabled):
            return contextlib.nullcontext()
        if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2 shards the model in place
            return _fsdp_no_sync(self.model)
        return self.trained.no_sync()  # DDP (through torch.compile's wrapper too)

    def evaluate(self, final: bool = False) -> dict[str, float]:
        """The objective's held-out metrics (loss and perplexity; BLEU; a task's metrics); every process calls it."""
        autocast = (torch.autocast(self.env.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else None)
        return self.objective.evaluate(self.model, self.data, env=self.env, autocast=autocast, final=final)

    def fit(self, *, resume: bool | str | Path | None = None) -> TrainResult:
        """Train to train.max_steps (continuing a checkpoint when resuming), then evaluate and save.

        Ctrl-C or SIGTERM stops after the step in progress: a checkpoint is written and `Interrupted` raised.
        """
        t, out = self.recipe.train, self.recipe.out
        began = time.perf_counter()
        if resume and not self.resume_wanted:  # resume given here rather than to the constructor
            self.resume_from, self.resume_wanted = self._checkpoint_to_resume(resume), True
            if self.resume_from is not None:
                self._check_model_matches(self.resume_from)
        if self.resume_wanted and not self._restored:
            used = self.resume()
            self.say(f"resuming from {used} at step {self.step}" if used else
                     f"no checkpoint in {self.run_dir / 'checkpoints'}; starting from step 0")
        if self.env.is_main:
            (self.run_dir / "recipe.yaml").write_text(to_yaml(self.recipe), encoding="utf-8")
            if self.resume_wanted:
                drop_rows_after(self.run_dir / "metrics.jsonl", self.step)  # the steps redone from here
        self.say(f"model: {self.model.config.family}, {self.model.num_parameters():,} parameters; "
                 f"{t.objective}, {t.max_steps} steps on {self.env.device}"
                 + (f" x {self.env.world_size} processes ({t.distributed})" if self.env.enabled else ""))
        log = RunLog(self.run_dir, max_steps=t.max_steps, start_step=self.step, progress=out.progress,
                     tensorboard=out.tensorboard, plot=out.plot, enabled=self.env.is_main, stream=self.log_stream)
        try:
            with stop_requests() as stop:
                train_metrics, eval_metrics = self._train(log, stop)
        except BaseException as error:
            log.close(error)  # quietly, without loss.png: the error in flight is what the user must see
            raise
        log.close()
        model_dir = self.objective.final_folder(self.run_dir)
        self.objective.finish(self.model)
        if self.env.is_main:
            model_dir.mkdir(parents=True, exist_ok=True)
            if not self.env.enabled:
                ckpt.save_model_folder(self.model, model_dir)
            self.data.tokenizer.save(model_dir / "tokenizer.json")
        if self.env.enabled:
            self._save_final_distributed(model_dir)
        return TrainResult(self.run_dir, model_dir, self.step, train_metrics, eval_metrics,
                           time.perf_counter() - began)

    def _train(self, log: RunLog, stop: StopRequests) -> tuple[dict[str, float], dict[str, float]]:
        """The steps, their logs, evaluations and checkpoints, then the final evaluation and checkpoint."""
        recipe, t, out = self.recipe, self.recipe.train, self.recipe.out
        train_metrics: dict[str, float] = {}
        eval_metrics: dict[str, float] = {}
        window: dict[str, float] = {}
        window_start = time.perf_counter()
        while self.step < t.max_steps:
            stats = self.train_step()
            log.advance()
            for key, value in stats.items():
                window[key] = window.get(key, 0.0) + value
            if self.step % out.log_every == 0 or self.step == t.max_steps:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                train_metrics = self.objective.summary(window)
                train_metrics.update(lr=self.scheduler.get_last_lr()[0], **self.objective.throughput(window, elapsed))
                if "grad_norm" in stats:
                    train_metrics["grad_norm"] = stats["grad_norm"]
                log.train(self.step, train_metrics)
                window, window_start = {}, time.perf_counter()
            if recipe.eval.every and self.step % recipe.eval.every == 0 and self.step < t.max_steps:
                eval_metrics = self.evaluate()
                log.eval(self.step, eval_metrics)
            if out.checkpoint_every and self.step % out.checkpoint_every == 0:
                self._pending = self._snapshot(train_metrics)  # written once the next step's loss is finite
            if self._stop_asked(stop):
                raise self._interrupted(train_metrics)
        eval_metrics = self.evaluate(final=True)
        log.eval(self.step, eval_metrics)
        self._due_now(train_metrics)
        self._settle()
        return train_metrics, eval_metrics

    def _due_now(self, metrics: dict[str, float]) -> None:
        """Make a checkpoint of this step due unless one is written or due already."""
        if self._pending is None and ckpt.latest_checkpoint(self.run_dir) != ckpt.checkpoint_dir(self.run_dir,
                                                                                                   self.step):
            self._pending = self._snapshot(metrics)

    def _stop_asked(self, stop: StopRequests) -> bool:
        """Whether any process got Ctrl-C / SIGTERM; under torchrun all processes agree, so all stop together."""
        asked = stop.requested()
        if self.env.enabled:
            asked = bool(self.env.all_reduce_sum({"stop": torch.tensor(float(asked))})["stop"] > 0)
        return asked

    def _interrupted(self, metrics: dict[str, float]) -> Interrupted:
        self._due_now(metrics)
        path = self._settle() or ckpt.latest_checkpoint(self.run_dir)
        return Interrupted(f"interrupted at step {self.step}: checkpoint at {path}, continue with --resume")

    def _save_final_distributed(self, model_dir: Path) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.env.is_main:
            ckpt.save_model_folder(self.model, model_dir, state)
        self.env.barrier()

    def close(self) -> None:
        """Leave the process group and release the run folder's lock."""
        self.env.close()
        if self.lock is not None:
            self.lock.release()


@contextlib.contextmanager
def _fsdp_no_sync(module: nn.Module):  # noqa: ANN202
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)
