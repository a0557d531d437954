"""Training-step throughput and MFU of tformer against Hugging Face `transformers`, same weights, same process.

What it measures: tokens per second of one whole training step — forward, the loss computed by the library itself,
`loss.backward()`, the AdamW step and `zero_grad(set_to_none=True)` — for the `gpt2` preset (tformer GPT vs
GPT2LMHeadModel, labels = input_ids) and the `bert-base` preset (tformer BERT vs BertForPreTraining, masked-LM
labels on ~15 % of the positions plus next_sentence_label), each in float32 and under bf16 autocast
(`torch.autocast(device, dtype=torch.bfloat16)`, float32 weights and optimizer state). The reference is
`transformers` with attn_implementation="sdpa"; every dropout is 0, so both libraries do the same work.

The optimizer is tformer's training optimizer, `tformer.training.optim.build_optimizer` (AdamW, no weight decay on
biases, norms and embeddings), built the same way over each library's model with the recipe defaults (lr 3e-4,
weight decay 0.01, betas (0.9, 0.999), eps 1e-8). The script checks that the two decay groups hold the same number
of parameters in both libraries.

How: the models are built as in benchmarks/forward.py, whose helpers this script imports (the `transformers` model
at random, saved with `save_pretrained` and loaded with `tformer.from_pretrained`; tformer's then gets
`tformer.accel.apply`, as the Trainer's model does, so TFORMER_ACCEL=0 times plain PyTorch), and their float32
logits and losses must agree to 1e-4 on the benchmark batch before anything is timed. Both then train in lockstep
on the same batch: the loss of every step is recorded, and the largest difference between the two libraries'
losses at the same step is shown (it starts from identical weights, so it tells that both still train the same
model). A row runs --warmup untimed steps per library, then --steps rounds; a round is one step of each library,
back to back, the library that goes first alternating, so the noise of a shared machine hits both alike. --repeats
runs everything again (fresh models); the rounds of all repeats are pooled. The headline is the median and min-max
of the per-round ratios tformer / transformers tokens/s (> 1: tformer is faster); the ratio of the medians is shown
as well.

MFU (model FLOPs utilisation) = achieved FLOP/s / measured matmul peak. FLOPs per token follow nanoGPT's
estimate_mfu: 6 N + 12 L H Q T, where N counts the parameters that multiply every token (all parameters except the
embedding tables, plus the tied output projection vocab x d_model; BERT's pooler and NSP head, which run once per
sequence, are left out), L layers, H heads of Q dimensions, T the sequence length. Both libraries run the same
model, so they share the FLOP count. The peak is measured in the same process: the best of a few float32 matmuls
of --peak-size squared (a @ b), before each model's rows, the best over all measurements; bf16 rows are also put
against a bf16 matmul peak, the best of the three layouts a training step multiplies in (a @ b, a @ b.T, a.T @ b)
at --peak-size-bf16. Progress goes to stderr, the table to stdout.

Run (from the repository root; nothing is downloaded):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --rows gpt2-fp32 --steps 5 --repeats 2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --rows gpt2-bf16 --batch 4 --seq-len 256
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --device cuda

Shapes: the fp32 rows use forward.py's (gpt2 4 x 256, bert-base 8 x 128). On a CPU without native bf16 matrix
instructions (no AVX512-BF16 / AMX, e.g. AMD Zen 3) bf16 matmuls are 10-100x slower than float32 ones, so the
bf16 rows default to a smaller batch (gpt2 1 x 64, bert-base 1 x 64); --batch / --seq-len set every selected row.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import transformers
from torch import Tensor, nn

import tformer
from forward import CASES, Case, build_pair, check_parity, cpu_model, log

try:
    from tformer import accel
except ImportError:  # a tree before tformer/accel/ (benchmarks/compare_commits.py runs this script on old code)
    accel = None
from tformer.training.optim import build_optimizer
from tformer.training.recipe import TrainOptions

LIBRARIES = ("tformer", "transformers")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
TINY = {"gpt2": "gpt2-tiny", "bert-base": "bert-tiny"}  # --tiny: each row's preset at the tests' size


@dataclass(frozen=True)
class Row:
    """One line of the table: a preset in one precision at one shape."""

    name: str
    preset: str
    precision: str  # "fp32" or "bf16" (autocast)
    batch: int
    seq_len: int


ROWS = {row.name: row for row in (
    Row("gpt2-fp32", "gpt2", "fp32", 4, 256),
    Row("gpt2-bf16", "gpt2", "bf16", 1, 64),
    Row("bert-base-fp32", "bert-base", "fp32", 8, 128),
    Row("bert-base-bf16", "bert-base", "bf16", 1, 64),
)}


@dataclass
class RowResult:
    """Everything measured for one row, pooled over repeats."""

    row: Row
    parity: float = 0.0  # float32 logits and losses before training, max |diff| over repeats
    loss_gap: float = 0.0  # max |loss difference| at the same step while training in lockstep
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    flops_per_token: float = 0.0
    tokens_per_s: dict[str, list[float]] = field(default_factory=lambda: {lib: [] for lib in LIBRARIES})


def case_for(preset: str) -> Case:
    """forward.py's case of `preset`, or of the full preset whose tiny twin it is (same reference, same batch)."""
    full = next((name for name, tiny in TINY.items() if tiny == preset), preset)
    return dataclasses.replace(CASES[full], preset=preset)


def _optimizer_defaults() -> dict:
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    return {key: defaults[key] for key in ("lr", "weight_decay", "betas", "eps")}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _group_sizes(optimizer: torch.optim.Optimizer) -> list[int]:
    return [sum(p.numel() for p in group["params"]) for group in optimizer.param_groups]


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """nanoGPT's 6 N + 12 L H Q T for a tformer GPT or BERT (see the module docstring for N)."""
    config = model.config
    embeddings = {id(p): p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    once_per_sequence = {id(p): p for name in ("pooler", "nsp_head") if getattr(model, name, None) is not None
                         for p in getattr(model, name).parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embeddings and id(p) not in once_per_sequence)
    head = getattr(model, "lm_head", None) or getattr(getattr(model, "mlm_head", None), "decoder", None)
    if head is not None and id(head.weight) in embeddings:  # tied: the output projection multiplies every token
        n += head.weight.numel()
    return 6.0 * n + 12.0 * config.n_layers * config.d_model * seq_len


def measure_peak(dtype: torch.dtype, size: int, device: torch.device, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of size^3 matmuls, best of `repeats`: float32 a @ b; bf16 in the three layouts of a training step."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    layouts = {"a @ b": lambda: a @ b}
    if dtype != torch.float32:
        layouts.update({"a @ b.T": lambda: a @ b.T, "a.T @ b": lambda: a.T @ b})
    results = {}
    for name, product in layouts.items():
        product()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            product()
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
        results[name] = 2.0 * size**3 / best / 1e9
    return results


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: dict[str, Tensor],
               dtype: torch.dtype | None, device: torch.device) -> tuple[float, float]:
    """(seconds, loss) of forward + loss + backward + AdamW step + zero_grad."""
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    _synchronize(device)
    start = time.perf_counter()
    with autocast:
        loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return time.perf_counter() - start, loss.item()


def run_row(row: Row, models: dict[str, nn.Module], steps: int, warmup: int, device: torch.device,
            result: RowResult) -> None:
    """Train both models in lockstep on one batch of the row's shape; append tokens/s and loss gaps to `result`."""
    case = case_for(row.preset)
    generator = torch.Generator().manual_seed(1)
    inputs = {k: v.to(device) for k, v in case.make_batch(models["tformer"].config, row.batch, row.seq_len,
                                                            generator).items()}
    result.parity = max(result.parity, check_parity(case, models, inputs))
    result.flops_per_token = flops_per_token(models["tformer"], row.seq_len)
    optimizers = {lib: build_optimizer(model, **_optimizer_defaults()) for lib, model in models.items()}
    sizes = {lib: _group_sizes(opt) for lib, opt in optimizers.items()}
    if sizes["tformer"] != sizes["transformers"]:
        raise RuntimeError(f"{row.name}: the AdamW groups differ (decay, no decay): tformer {sizes['tformer']}, "
                           f"transformers {sizes['transformers']}")
    log(f"{row.name}: logits agree (max |diff| {result.parity:.1e}); AdamW groups (decay, no decay) {sizes['tformer']}"
        f" in both; {row.batch} x {row.seq_len}, {warmup} warm-up + {steps} timed rounds")
    tokens = row.batch * row.seq_len
    dtype = PRECISIONS[row.precision]
    for step in range(warmup + steps):
        order = LIBRARIES if step % 2 == 0 else LIBRARIES[::-1]
        losses, rates = {}, {}
        for library in order:
            seconds, losses[library] = train_step(models[library], optimizers[library], inputs, dtype, device)
            rates[library] = tokens / seconds
            timed = step >= warmup
            log(f"  {row.name} {'round' if timed else 'warm-up'} {step + 1 - (warmup if timed else 0)} "
                f"{library:<12} {seconds:7.3f} s  {rates[library]:8.1f} tokens/s  loss {losses[library]:.4f}")
        result.loss_gap = max(result.loss_gap, abs(losses["tformer"] - losses["transformers"]))
        if step == 0 and result.first_loss != result.first_loss:
            result.first_loss = losses["tformer"]
        result.last_loss = losses["tformer"]
        if step >= warmup:
            for library in LIBRARIES:
                result.tokens_per_s[library].append(rates[library])
    del optimizers
    gc.collect()


def run(rows: list[Row], steps: int, warmup: int, repeats: int, device: torch.device, peak_size: int,
        peak_size_bf16: int) -> tuple[list[RowResult], dict[str, list[dict[str, float]]]]:
    results = {row.name: RowResult(row) for row in rows}
    peaks: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
    presets = list(dict.fromkeys(row.preset for row in rows))
    for repeat in range(repeats):
        for preset in presets:
            peaks["fp32"].append(measure_peak(torch.float32, peak_size, device))
            log(f"float32 matmul {peak_size}^3: {peaks['fp32'][-1]['a @ b']:.1f} GFLOP/s")
            if any(row.preset == preset and row.precision == "bf16" for row in rows):
                peaks["bf16"].append(measure_peak(torch.bfloat16, peak_size_bf16, device, repeats=2))
                log(f"bf16 matmul {peak_size_bf16}^3: " +
                    ", ".join(f"{k} {v:.2f}" for k, v in peaks["bf16"][-1].items()) + " GFLOP/s")
            log(f"{preset} (repeat {repeat + 1}/{repeats}): building the transformers model, saving it and "
                "loading it into tformer")
            ours, reference = build_pair(case_for(preset))
            if accel is not None:
                accel.apply(ours)  # the CPU paths, as the Trainer applies them (TFORMER_ACCEL=0: plain nn.Linear)
            models = {"tformer": ours.to(device).train(), "transformers": reference.to(device).train()}
            initial = {lib: {k: v.clone() for k, v in model.state_dict().items()} for lib, model in models.items()}
            for row in rows:
                if row.preset == preset:
                    for library, model in models.items():  # every row starts from the same weights
                        model.load_state_dict(initial[library])
                    run_row(row, models, steps, warmup, device, results[row.name])
            del models, ours, reference, initial
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return list(results.values()), peaks


def _spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def format_table(results: list[RowResult], peaks: dict[str, list[dict[str, float]]], device: torch.device,
                 steps: int, warmup: int, repeats: int) -> str:
    hardware = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    peak = {precision: max(max(m.values()) for m in measured) for precision, measured in peaks.items() if measured}
    opt = _optimizer_defaults()
    lines = [
        "## Training step tokens/s and MFU, tformer vs transformers (sdpa)",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, tformer {tformer.__version__}, "
        f"Python {platform.python_version()}",
        f"device {device.type}: {hardware}; {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"train mode, dropout 0; step = forward + loss + backward + AdamW (build_optimizer: lr {opt['lr']}, "
        f"weight decay {opt['weight_decay']}, betas {opt['betas']}, eps {opt['eps']}) + zero_grad; "
        f"{warmup} warm-up steps + {steps} timed rounds per library and row, x {repeats} repeat(s), interleaved",
        "",
        "| row | precision | batch x seq | logits diff | loss gap | tformer tokens/s median [min–max] | "
        "transformers tokens/s median [min–max] | ratio, per round: median [min–max] | ratio of medians | "
        "GFLOP/token | MFU tformer / transformers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, theirs = r.tokens_per_s["tformer"], r.tokens_per_s["transformers"]
        rounds = [a / b for a, b in zip(ours, theirs, strict=True)]
        row_peak = peak[r.row.precision] * 1e9
        mfu = [statistics.median(v) * r.flops_per_token / row_peak * 100 for v in (ours, theirs)]
        precision = "float32" if r.row.precision == "fp32" else "bf16 autocast"
        lines.append(
            f"| {r.row.name} | {precision} | {r.row.batch} x {r.row.seq_len} | {r.parity:.1e} | {r.loss_gap:.1e} | "
            f"{_spread(ours, 1)} | {_spread(theirs, 1)} | {_spread(rounds, 2)} | "
            f"{statistics.median(ours) / statistics.median(theirs):.2f} | {r.flops_per_token / 1e9:.3f} | "
            f"{mfu[0]:.1f} % / {mfu[1]:.1f} % |")
    lines += ["", "ratio = tformer / transformers tokens/s, above 1 means tformer is faster; per round: the two "
              "adjacent steps of each round; logits diff: float32 logits and losses before training; loss gap: the "
              "largest |loss difference| at the same step while both train in lockstep from the same weights."]
    for precision, measured in peaks.items():
        if not measured:
            continue
        layouts = {k: [m[k] for m in measured] for k in measured[0]}
        described = "; ".join(f"{k} {_spread(v, 1 if precision == 'fp32' else 2)}" for k, v in layouts.items())
        lines.append(f"MFU peak, {precision}: {peak[precision]:.2f} GFLOP/s, the best of {len(measured)} "
                     f"measurement(s) of a square matmul ({described} GFLOP/s, median [min–max]).")
    if "bf16" in peak and "fp32" in peak:
        bf16_rows = [r for r in results if r.row.precision == "bf16"]
        if bf16_rows:
            def fp32_mfu(r: RowResult, library: str) -> str:
                achieved = statistics.median(r.tokens_per_s[library]) * r.flops_per_token / 1e9
                return f"{achieved / peak['fp32'] * 100:.2f} %"

            lines.append("bf16 rows against the float32 peak: " + ", ".join(
                f"{r.row.name} {fp32_mfu(r, 'tformer')} / {fp32_mfu(r, 'transformers')}" for r in bf16_rows)
                + " (tformer / transformers).")
    return "\n".join(lines)


def write_json(path: Path, results: list[RowResult], device: str) -> None:
    """The table's rows as JSON (for benchmarks/compare_commits.py): per row, the tokens/s and ratio of every round."""
    rows = []
    for r in results:
        ours, theirs = r.tokens_per_s["tformer"], r.tokens_per_s["transformers"]
        rounds = [a / b for a, b in zip(ours, theirs, strict=True)]
        rows.append({"row": r.row.name, "preset": r.row.preset, "tformer_tokens_per_s": ours,
                     "transformers_tokens_per_s": theirs, "ratios": rounds, "ratio": statistics.median(rounds)})
    path.write_text(json.dumps({"benchmark": "train", "tformer": tformer.__file__, "torch": torch.__version__,
                                "device": device, "rows": rows}, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows among: {', '.join(ROWS)} "
                        "(default: all)")
    parser.add_argument("--steps", type=int, default=3, help="timed rounds per row and repeat (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per library first (default: 1)")
    parser.add_argument("--repeats", type=int, default=1, help="passes over all rows with fresh models; their "
                        "rounds are pooled (default: 1)")
    parser.add_argument("--batch", type=int, default=None, help="batch size of every selected row (default: the "
                        "row's: gpt2-fp32 4, bert-base-fp32 8, bf16 rows 1)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence of every selected row "
                        "(default: the row's: gpt2-fp32 256, bert-base-fp32 128, bf16 rows 64)")
    parser.add_argument("--peak-size", type=int, default=2048, help="float32 peak: size of the square matmul "
                        "(default: 2048)")
    parser.add_argument("--peak-size-bf16", type=int, default=512, help="bf16 peak: size of the square matmuls "
                        "(default: 512; bf16 is slow on CPUs without bf16 instructions)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: torch's choice, here {torch.get_num_threads()})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--tiny", action="store_true", help="each row on its preset's tiny twin (gpt2-tiny, "
                        "bert-tiny): seconds, for the tests of this script and of benchmarks/compare_commits.py")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the rows (every round) as JSON to this file (benchmarks/compare_commits.py)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        parser.error(f"--rows: unknown row {repr(unknown[0]) if unknown else '(none)'}; choose from {', '.join(ROWS)}")
    for name in ("steps", "repeats", "batch", "seq_len", "peak_size", "peak_size_bf16", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be at least 1")
    if args.warmup < 0:
        parser.error(f"--warmup={args.warmup} must be 0 or more")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch build sees no CUDA device; use --device cpu")
    args.rows = [Row(ROWS[n].name, TINY[ROWS[n].preset] if args.tiny else ROWS[n].preset, ROWS[n].precision,
                     args.batch or ROWS[n].batch, args.seq_len or ROWS[n].seq_len) for n in names]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    cpu_started = time.process_time()
    results, peaks = run(args.rows, args.steps, args.warmup, args.repeats, device, args.peak_size,
                         args.peak_size_bf16)
    print(format_table(results, peaks, device, args.steps, args.warmup, args.repeats))
    if args.json is not None:
        write_json(args.json, results, args.device)
    wall = time.perf_counter() - started
    log(f"total wall time {wall:.0f} s; process CPU time / wall = {(time.process_time() - cpu_started) / wall:.2f} "
        f"cores on average; load average {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
