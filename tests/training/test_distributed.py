"""Data parallelism on CPU: 2-process gloo DDP and FSDP2 under torchrun against the single process.

Each 2-process run is `python -m torch.distributed.run --standalone --nproc-per-node 2 WORKER train RECIPE`,
where WORKER (written below) runs `tformer train` with two test hooks: an audit hook that reports any file
rank 1 writes under the run folder, and a DDP comm hook that counts gradient syncs per optimizer step. Every
process's stdout/stderr goes to its own log file (`--redirects 3`), so the tests can see which rank printed
what. A run "stopped at step N" is a fresh run folder holding only the step-N checkpoint (and the prepared
data) of an uninterrupted run: exactly what a kill after step N leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tformer import from_pretrained
from tformer.training import Trainer, load_recipe
from tformer.training.distributed import shard

TOLERANCE = 1e-5
WORDS = "the cat sat on a mat while a dog ran to the old red barn and a bird sang in the tall tree".split()

WORKER = r'''
import atexit, os, sys

RANK = int(os.environ.get("RANK", "0"))
RUN_DIR = os.path.realpath(os.environ["TEST_RUN_DIR"])
WRITES = ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.symlink",
          "os.link", "os.chmod")


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
    else:
        path, writing = (args[0] if args else None), event in WRITES
    if not writing or not isinstance(path, (str, bytes, os.PathLike)):
        return
    full = os.path.abspath(os.fsdecode(path))
    if full == RUN_DIR or full.startswith(RUN_DIR + os.sep):
        sys.stderr.write(f"TEST-WRITE rank={RANK} {event} {full}\n")


if RANK != 0:  # Python-level opens, renames, mkdirs; native writers (safetensors, tokenizers) end in os.replace
    sys.addaudithook(audit)
    import torch

    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # torch.save to a path writes from C++, unseen by the audit hook
        if isinstance(f, (str, os.PathLike)):
            audit("open", (f, "wb", 0))
        return real_save(obj, f, *args, **kwargs)

    torch.save = save

from tformer.training import trainer as T  # noqa: E402

syncs, current = [], [0]
real_wrap, real_step = T.wrap, T.Trainer.train_step


def wrap(model, strategy, env):
    wrapped = real_wrap(model, strategy, env)
    if strategy == "ddp":
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def counting(state, bucket):
            current[0] += bucket.is_last()  # one per gradient sync of the whole model
            return allreduce_hook(state, bucket)

        wrapped.register_comm_hook(None, counting)
    return wrapped


def train_step(self):
    current[0] = 0
    stats = real_step(self)
    syncs.append(current[0])
    return stats


T.wrap, T.Trainer.train_step = wrap, train_step
atexit.register(lambda: sys.stderr.write(f"TEST-SYNCS rank={RANK} {syncs}\n"))

from tformer.cli import main  # noqa: E402

sys.exit(main())
'''

GPT = """
name: dist-gpt
model:
  preset: gpt2-tiny
  config: {{d_model: 32, n_layers: 2, n_heads: 2, max_positions: 32, dropout: 0.0, attention_dropout: 0.0}}
data: {{text: [{text}], tokenizer: char, block_size: 16, batch_size: 8}}
train: {{objective: causal_lm, max_steps: 6, grad_accum: 2, lr: 3.0e-3, schedule: constant, threads: 1,
        device: cpu, weight_decay: 1.0}}
eval: {{every: 3, batches: 2}}
out: {{checkpoint_every: 2, keep_checkpoints: 3, log_every: 1, progress: lines, tensorboard: false, plot: false}}
"""

SEQ2SEQ = """
name: dist-seq2seq
model:
  preset: transformer-tiny
  config: {d_model: 32, n_layers: 2, n_heads: 2, d_ff: 64, dropout: 0.0, attention_dropout: 0.0}
data: {corpus: numbers, tokenizer: word, train_pairs: 200, valid_pairs: 15, test_pairs: 6, batch_size: 7,
       max_length: 32}
train: {objective: seq2seq, max_steps: 5, grad_accum: 2, lr: 3.0e-3, schedule: constant, label_smoothing: 0.1,
        threads: 1, device: cpu}
eval: {every: 2, batches: 3, bleu: true, bleu_pairs: 6, max_new_tokens: 8, num_beams: 2}
out: {checkpoint_every: 2, keep_checkpoints: 3, log_every: 1, progress: lines, tensorboard: false, plot: false}
"""


class Launch:
    """One finished torchrun launch: its exit status and each rank's stdout / stderr."""

    def __init__(self, run_dir: Path, log_dir: Path, returncode: int) -> None:
        self.run_dir, self.returncode = run_dir, returncode
        self.out = {rank: _read_log(log_dir, rank, "stdout") for rank in (0, 1)}
        self.err = {rank: _read_log(log_dir, rank, "stderr") for rank in (0, 1)}

    def __str__(self) -> str:
        return "\n".join(f"--- rank {r} {name} ---\n{text[-3000:]}" for r in (0, 1)
                         for name, text in (("stdout", self.out[r]), ("stderr", self.err[r])))

    def syncs(self, rank: int) -> list[int]:
        found = re.findall(rf"^TEST-SYNCS rank={rank} \[(.*)\]$", self.err[rank], re.M)
        assert found, f"rank {rank} reported no gradient syncs\n{self}"
        return [int(n) for n in found[-1].split(",") if n.strip()]


def _read_log(log_dir: Path, rank: int, name: str) -> str:
    found = sorted(log_dir.glob(f"**/attempt_*/{rank}/{name}.log"))
    return "".join(p.read_text(errors="replace") for p in found)


def torchrun(recipe: Path, run_dir: Path, *overrides: str, resume: bool = False) -> Launch:
    """`tformer train RECIPE` in 2 gloo processes (through the test worker); returns the launch."""
    worker = run_dir.parent / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    log_dir = run_dir.parent / f"logs-{run_dir.name}-{'resume' if resume else 'start'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TEST_RUN_DIR": str(run_dir)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--redirects", "3", "--log-dir", str(log_dir), str(worker), "train", str(recipe),
               f"--out.dir={run_dir}", *overrides, *(["--resume"] if resume else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    launch = Launch(run_dir, log_dir, done.returncode)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}\n{launch}"
    return launch


def single(recipe: Path, run_dir: Path, *overrides: str, resume: bool = False) -> Path:
    """The same recipe in this one process (the reference); returns its run folder."""
    Trainer(load_recipe(recipe, [f"--out.dir={run_dir}", *overrides]), resume=resume).fit()
    return run_dir


def records(run_dir: Path) -> dict[tuple[str, int], dict]:
    """metrics.jsonl by (split, step); a resumed run's later record of a step wins."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {(row["split"], row["step"]): row for row in rows}


def stopped_at(run_dir: Path, step: int, new_run: Path) -> Path:
    """A run folder as a kill after `step` leaves it: the prepared data, the step's checkpoint, the log so far."""
    shutil.copytree(run_dir / "data", new_run / "data")
    name = f"step-{step:08d}"
    shutil.copytree(run_dir / "checkpoints" / name, new_run / "checkpoints" / name)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    kept = [row for row in rows if json.loads(row)["step"] <= step]
    (new_run / "metrics.jsonl").write_text("".join(row + "\n" for row in kept))
    return new_run


def assert_same_trajectory(run: Path, reference: Path, tolerance: float = TOLERANCE) -> None:
    ours, theirs = records(run), records(reference)
    assert sorted(ours) == sorted(theirs)
    for key, row in theirs.items():
        for metric in ("loss", "grad_norm", "nsp_loss"):
            if metric in row:
                assert ours[key][metric] == pytest.approx(row[metric], abs=tolerance, rel=0), (key, metric)


def assert_same_weights(folder: Path, reference: Path, tolerance: float = TOLERANCE) -> None:
    ours, theirs = from_pretrained(folder).state_dict(), from_pretrained(reference).state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, atol=tolerance, rtol=0, msg=name)


def assert_rank0_alone_wrote_and_logged(launch: Launch) -> None:
    assert "TEST-WRITE" not in launch.err[1], f"rank 1 wrote into the run folder:\n{launch.err[1]}"
    assert launch.out[1] == "", f"rank 1 printed:\n{launch.out[1]}"
    assert not re.search(r"^(step \d+:|eval at|model:|done:)", launch.err[1], re.M), launch.err[1]
    assert re.search(r"^step \d+: loss", launch.out[0] + launch.err[0], re.M), str(launch)


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    rows = [" ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(5 + i % 7)) for i in range(300)]
    (root / "text.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "gpt.yaml").write_text(GPT.format(text=json.dumps(str(root / "text.txt"))), encoding="utf-8")
    (root / "seq2seq.yaml").write_text(SEQ2SEQ, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def gpt_single(work: Path) -> Path:
    return single(work / "gpt.yaml", work / "gpt-single")


@pytest.fixture(scope="module")
def gpt_ddp(work: Path) -> Launch:
    return torchrun(work / "gpt.yaml", work / "gpt-ddp", "--train.distributed=ddp")


@pytest.fixture(scope="module")
def seq2seq_single(work: Path) -> Path:
    return single(work / "seq2seq.yaml", work / "seq2seq-single")


@pytest.fixture(scope="module")
def seq2seq_fsdp(work: Path) -> Launch:
    return torchrun(work / "seq2seq.yaml", work / "seq2seq-fsdp", "--train.distributed=fsdp")


# ------------------------------------------------------------------------------------------------------ tests


def test_each_process_takes_contiguous_rows_and_a_short_batch_leaves_an_empty_share() -> None:
    batch = {"input_ids": torch.arange(10).view(5, 2), "labels": torch.arange(5)}
    shares = [shard(batch, rank, 2) for rank in (0, 1)]
    assert [s["labels"].tolist() for s in shares] == [[0, 1, 2], [3, 4]]
    assert torch.equal(torch.cat([s["input_ids"] for s in shares]), batch["input_ids"])
    one_row = {"input_ids": torch.ones(1, 4, dtype=torch.long)}
    assert [shard(one_row, rank, 2)["input_ids"].shape for rank in (0, 1)] == [(1, 4), (0, 4)]


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_ddp_loss_trajectory_equals_the_single_process(gpt_ddp: Launch, gpt_single: Path) -> None:
    assert_same_trajectory(gpt_ddp.run_dir, gpt_single)
    assert_same_weights(gpt_ddp.run_dir / "final", gpt_single / "final")


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_ddp_syncs_gradients_once_per_optimizer_step(gpt_ddp: Launch) -> None:
    # grad_accum=2: the first micro-step runs under no_sync, the last one all-reduces
    for rank in (0, 1):
        assert gpt_ddp.syncs(rank) == [1] * 6, str(gpt_ddp)


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_ddp_rank0_alone_logs_and_writes(gpt_ddp: Launch) -> None:
    assert_rank0_alone_wrote_and_logged(gpt_ddp)
    run = gpt_ddp.run_dir
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"step-00000002", "step-00000004", "step-00000006"}
    assert (run / "checkpoints" / "step-00000006" / "rng-rank1.pt").is_file()  # rank 0 wrote it for rank 1


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_ddp_stopped_and_resumed_equals_the_uninterrupted_run(work: Path, gpt_ddp: Launch) -> None:
    run = stopped_at(gpt_ddp.run_dir, 2, work / "gpt-ddp-resumed")
    resumed = torchrun(work / "gpt.yaml", run, "--train.distributed=ddp", resume=True)
    assert "resuming from" in resumed.out[0] and "step-00000002" in resumed.out[0], str(resumed)
    assert_rank0_alone_wrote_and_logged(resumed)
    assert resumed.syncs(0) == [1] * 4  # steps 3..6
    # the same processes and reduction order as the uninterrupted run: equal to the bit
    assert_same_trajectory(run, gpt_ddp.run_dir, tolerance=0.0)
    assert_same_weights(run / "final", gpt_ddp.run_dir / "final", tolerance=0.0)


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_a_ddp_checkpoint_resumes_in_one_process(work: Path, gpt_ddp: Launch, gpt_single: Path) -> None:
    # torchrun saves the optimizer state by parameter name, one process by position: either loads into either
    run = single(work / "gpt.yaml", stopped_at(gpt_ddp.run_dir, 2, work / "gpt-ddp-then-single"), resume=True)
    assert_same_trajectory(run, gpt_single)
    assert_same_weights(run / "final", gpt_single / "final")


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_seq2seq_under_fsdp_equals_the_single_process(seq2seq_fsdp: Launch, seq2seq_single: Path) -> None:
    # encoder and decoder blocks sharded, tied embeddings, rows with different padding on each rank (7 rows:
    # 4 + 3), label smoothing, and BLEU decoding (collectives in every forward under FSDP) at each evaluation
    assert_rank0_alone_wrote_and_logged(seq2seq_fsdp)
    assert_same_trajectory(seq2seq_fsdp.run_dir, seq2seq_single)
    # a checkpoint and the final folder hold the whole model (not rank 0's shards), loadable as a model folder
    assert_same_weights(seq2seq_fsdp.run_dir / "final", seq2seq_single / "final")
    step4 = Path("checkpoints") / "step-00000004"
    assert_same_weights(seq2seq_fsdp.run_dir / step4, seq2seq_single / step4)
    reference = records(seq2seq_single)
    for key, row in records(seq2seq_fsdp.run_dir).items():
        for metric in ("bleu", "exact_match", "test_bleu"):
            if metric in row:
                assert row[metric] == pytest.approx(reference[key][metric]), (key, metric)


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
def test_fsdp_stopped_and_resumed_equals_the_uninterrupted_run(work: Path, seq2seq_fsdp: Launch) -> None:
    # the full weights go back into shards, the full optimizer state too (set_optimizer_state_dict)
    run = stopped_at(seq2seq_fsdp.run_dir, 2, work / "seq2seq-fsdp-resumed")
    resumed = torchrun(work / "seq2seq.yaml", run, "--train.distributed=fsdp", resume=True)
    assert_rank0_alone_wrote_and_logged(resumed)
    assert_same_trajectory(run, seq2seq_fsdp.run_dir, tolerance=0.0)
    assert_same_weights(run / "final", seq2seq_fsdp.run_dir / "final", tolerance=0.0)


# ------------------------------------------------------------------------------ resume with dropout: per-rank RNG

DROPOUT = ("--model.config.dropout=0.2", "--model.config.attention_dropout=0.2", "--train.max_steps=4",
           "--train.grad_accum=1", "--eval.every=0", "--eval.batches=1")


def rng_of(checkpoint: Path, rank: int) -> torch.Tensor:
    return torch.load(checkpoint / f"rng-rank{rank}.pt", weights_only=True)["torch"]


@pytest.mark.slow  # torchrun launches: ~15 s each on two cores
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_resumed_with_dropout_equals_the_uninterrupted_run(work: Path, strategy: str) -> None:
    # each process has its own dropout stream and takes back its own at resume; if one took another's, its masks
    # (and so the gradients) after the resume would differ from the uninterrupted run's
    flags = (f"--train.distributed={strategy}", *DROPOUT)
    whole = torchrun(work / "gpt.yaml", work / f"dropout-{strategy}", *flags).run_dir
    step2 = whole / "checkpoints" / "step-00000002"
    assert not torch.equal(rng_of(step2, 0), rng_of(step2, 1)), "both processes drew the same dropout masks"
    run = stopped_at(whole, 2, work / f"dropout-{strategy}-resumed")
    resumed = torchrun(work / "gpt.yaml", run, *flags, resume=True)
    assert "resuming from" in resumed.out[0] and "step-00000002" in resumed.out[0], str(resumed)
    assert_same_trajectory(run, whole, tolerance=0.0)
    assert_same_weights(run / "final", whole / "final", tolerance=0.0)
