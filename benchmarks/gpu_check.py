"""One command that runs, on a GPU, what the CPU tests cannot: parity, training, decoding, fine-tuning, DDP, fp16.

Every path of tformer has a CPU test; this script is the check for the day a GPU is there. Each check catches its
own failure and becomes a failed row with a one-line reason, so one missing feature never hides the others.

Checks (rows of the table):

* parity <family> fp32: logits of a random model of realistic width (2 layers; the families GPT-2, GPT-1, BERT,
  the paper's encoder-decoder and a Marian-style one: sinusoidal [sin | cos] halves, SiLU, final logits bias) on
  the device against the same model in float32 on the CPU, at the positions the attention mask keeps (the second
  row of the batch is right-padded, so the padded kernels run too). TF32 is off in every check. Pass: max |diff|
  <= 1e-4 x max(1, max |reference|). With --device cpu there is no second device: the float32 CPU logits are
  compared with the same model in float64, i.e. the float32 rounding error of the CPU path.
* parity <family> bf16: the same under torch.autocast(bfloat16) on the device, against the same reference; a
  looser bar (max |diff| <= 3e-2 x max(1, max |reference|)), because bf16 keeps 8 bits of mantissa.
* generate <family> cached == uncached: greedy (static cache) and beam-4 (dynamic cache) generation of the same
  random models, on the device, with and without the KV cache, on a batch of 3 with one padded row. Pass: equal ids.
* train gpt2 bf16: training steps of the gpt2 preset under bf16 autocast (forward, loss, backward, AdamW, as
  benchmarks/train.py times them, whose helpers this script imports): tokens/s and MFU against the device's bf16
  matmul peak measured in this process. Pass: every loss finite and 0 < MFU <= 100 %.
* decode b1 / b8, static or compiled: greedy `tformer.generate` of the gpt2 preset (float32, static cache, eager,
  then compile=True) at batch 1 and 8, tokens/s against the memory-bandwidth bound (every weight read once per
  step; the bandwidth measured in-process as benchmarks/generate.py does). Pass: the ids equal those of the
  uncached path (use_cache=False) in full length.
* finetune sst2: two steps of `tformer.tasks.finetune.finetune` on a tiny SST-2 folder and a tiny BERT with a
  WordPiece tokenizer, both written to a temporary folder. Pass: finite losses and the head's weights changed.
* ddp / fsdp 2 processes: `torchrun --nproc-per-node 2 -m tformer.cli train` of a tiny recipe (nccl), DDP and
  FSDP2, when 2 GPUs exist. Pass: exit 0, finite losses, within 1e-4 of one process with the same global batch.
* train fp16: `Trainer(recipe).fit()` with train.precision=fp16 on CUDA: the GradScaler and fused AdamW paths.

Run (from the repository root; nothing is downloaded):

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py --json gpu_check.json
    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py --device cpu --quick     # tiny shapes, on the CPU

It prints one table (check, result, figure, pass/fail) to stdout, progress to stderr, and exits 1 when a check
failed. At the defaults it is meant to take under 8 minutes on one GPU; --quick runs tiny shapes in under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import generate as generate_bench  # benchmarks/generate.py: memory bandwidth, timed greedy generate
import gpu_check_cache
import gpu_check_runs
import tformer
import train as train_bench  # benchmarks/train.py: matmul peak, FLOPs per token, one timed training step
from forward import CASES, cpu_model, log
from tformer import ModelConfig

FP32_TOLERANCE = 1e-4
BF16_TOLERANCE = 3e-2
GROUPS = ("parity", "cache", "train", "decode", "finetune", "ddp", "fp16")


@dataclass
class Row:
    """One line of the table: a check, what it found, its figure, and whether it passed."""

    check: str
    result: str  # "pass", "fail", "skipped" or "error"
    figure: str
    passed: bool
    seconds: float = 0.0


@dataclass(frozen=True)
class Settings:
    """Shapes of every check: realistic by default, tiny with --quick."""

    quick: bool
    parity_seq: int
    train_preset: str
    train_batch: int
    train_seq: int
    train_steps: int
    peak_size: int
    decode_preset: str
    prompt_len: int
    new_tokens: int
    repeats: int
    bandwidth_mib: int

    @classmethod
    def make(cls, quick: bool, device: torch.device) -> Settings:
        if quick:
            return cls(quick=True, parity_seq=16, train_preset="gpt2-tiny", train_batch=2, train_seq=32, train_steps=2,
                       peak_size=256, decode_preset="gpt2-tiny", prompt_len=8, new_tokens=8, repeats=1,
                       bandwidth_mib=64)
        on_gpu = device.type == "cuda"
        return cls(quick=False, parity_seq=128, train_preset="gpt2", train_batch=8 if on_gpu else 1,
                   train_seq=1024 if on_gpu else 128, train_steps=5, peak_size=8192 if on_gpu else 1024,
                   decode_preset="gpt2", prompt_len=32, new_tokens=128, repeats=3, bandwidth_mib=1024)


def _width(preset: str, quick: bool, **fields: object) -> ModelConfig:
    """The preset at full width with 2 layers (or the tiny test size with --quick), dropout off, `fields` over it."""
    shape = {"d_model": 32, "n_heads": 4, "d_ff": 64, "vocab_size": 99, "max_positions": 64} if quick else {}
    layers = {"n_layers": 2, **({"n_decoder_layers": 2} if preset.startswith("transformer") else {})}
    return ModelConfig.preset(preset, **{**layers, **shape, **fields, "dropout": 0.0, "attention_dropout": 0.0})


def parity_configs(quick: bool) -> dict[str, ModelConfig]:
    """One random model per family, of realistic width (or tiny): the configs the parity rows build."""
    vocab = 99 if quick else 58101  # Marian's opus-mt-en-de: 58,101 tokens, pad = decoder start = the last id
    marian = dict(vocab_size=vocab, max_positions=64 if quick else 512, sinusoidal_layout="halves",
                  activation="silu", final_logits_bias=True, scale_embeddings=True, pad_token_id=vocab - 1,
                  bos_token_id=None, eos_token_id=0, decoder_start_token_id=vocab - 1)
    return {
        "gpt2": _width("gpt2", quick, bos_token_id=None, eos_token_id=None),
        "gpt1": _width("gpt1", quick),
        "bert": _width("bert-base", quick),
        "encoder-decoder": _width("transformer-base", quick),
        "marian": _width("transformer-base", quick, **marian),
    }


def parity_inputs(config: ModelConfig, seq: int) -> dict[str, Tensor]:
    """Batch 2: random ids, the second row right-padded over its last quarter (the mask keeps 1 = token)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (2, seq), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, seq - seq // 4:] = 0
    if config.pad_token_id is not None:
        ids = ids.masked_fill(mask == 0, config.pad_token_id)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.family == "encoder-decoder":
        inputs["decoder_input_ids"] = torch.randint(3, config.vocab_size, (2, seq // 2), generator=generator)
    if config.type_vocab_size:
        inputs["token_type_ids"] = (torch.arange(seq) >= seq // 2).long().expand(2, seq)
    return inputs


def _kept_logits(model: nn.Module, inputs: dict[str, Tensor], autocast: torch.dtype | None) -> Tensor:
    """Float32 logits on the CPU at the positions that count (encoder-decoder: every decoder position)."""
    device = next(model.parameters()).device
    moved = {k: v.to(device) for k, v in inputs.items()}
    context = torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext()
    with torch.no_grad(), context:
        logits = model(**moved).logits.float().cpu()
    if "decoder_input_ids" in inputs:
        return logits.reshape(-1, logits.shape[-1])
    return logits[inputs["attention_mask"].bool()]


def parity_rows(name: str, config: ModelConfig, device: torch.device, seq: int) -> list[Row]:
    """fp32 and bf16 rows for one family: the device against the CPU float32 model (float64 on a CPU run)."""
    torch.manual_seed(0)
    model = tformer.build_model(config).eval()
    inputs = parity_inputs(config, seq)
    on_cpu = device.type == "cpu"
    reference = _kept_logits(copy.deepcopy(model).double() if on_cpu else model, inputs, None)
    model.to(device)
    against = "float64 CPU" if on_cpu else "float32 CPU"
    return [run_check(f"parity {name} {precision}", _parity, model, inputs, reference, dtype, tolerance, against)
            for precision, dtype, tolerance in (("fp32", None, FP32_TOLERANCE),
                                                ("bf16", torch.bfloat16, BF16_TOLERANCE))]


def _parity(model: nn.Module, inputs: dict[str, Tensor], reference: Tensor, dtype: torch.dtype | None,
            tolerance: float, against: str) -> tuple[bool, str]:
    logits = _kept_logits(model, inputs, dtype)
    if not torch.isfinite(logits).all():
        return False, "non-finite logits"
    largest = reference.abs().max().item()
    bar = tolerance * max(1.0, largest)
    worst = (logits.double() - reference.double()).abs().max().item()
    return worst <= bar, f"max abs diff {worst:.1e} vs {against} (bar {bar:.1e}; largest abs logit {largest:.2f})"


def check_train(settings: Settings, device: torch.device) -> tuple[bool, str]:
    """bf16 autocast training steps of the gpt2 preset: tokens/s and MFU against the measured bf16 matmul peak."""
    peak = max(train_bench.measure_peak(torch.bfloat16, settings.peak_size, device).values())
    log(f"bf16 matmul peak {settings.peak_size}^3: {peak:.1f} GFLOP/s")
    config = ModelConfig.preset(settings.train_preset, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = tformer.build_model(config).to(device).train()
    defaults = train_bench.TrainOptions()
    optimizer = train_bench.build_optimizer(model, lr=defaults.lr, weight_decay=defaults.weight_decay,
                                            betas=defaults.betas, eps=defaults.eps)
    generator = torch.Generator().manual_seed(1)
    batch = CASES["gpt2"].make_batch(config, settings.train_batch, settings.train_seq, generator)
    inputs = {k: v.to(device) for k, v in batch.items()}
    tokens = settings.train_batch * settings.train_seq
    losses, rates = [], []
    for step in range(1 + settings.train_steps):  # the first step is the warm-up (allocations, kernel choice)
        seconds, loss = train_bench.train_step(model, optimizer, inputs, torch.bfloat16, device)
        losses.append(loss)
        if step:
            rates.append(tokens / seconds)
        log(f"  train step {step}: {seconds:.3f} s, loss {loss:.4f}")
    tokens_per_s = statistics.median(rates)
    mfu = tokens_per_s * train_bench.flops_per_token(model, settings.train_seq) / (peak * 1e9) * 100
    ok = all(math.isfinite(x) for x in losses) and 0 < mfu <= 100
    figure = (f"{tokens_per_s:,.0f} tokens/s, MFU {mfu:.1f} % of the measured bf16 peak {peak:,.0f} GFLOP/s; "
              f"{settings.train_batch} x {settings.train_seq}, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return ok, figure


def check_decode(settings: Settings, device: torch.device, compile: bool) -> list[Row]:
    """Greedy decoding tokens/s at batch 1 and 8 (static cache, eager and compiled) against the bandwidth bound."""
    bandwidth = generate_bench.measure_bandwidth(device, settings.bandwidth_mib)[0]
    torch.manual_seed(0)
    model = tformer.build_model(ModelConfig.preset(settings.decode_preset)).to(device).eval()
    step_bytes = model.num_parameters() * generate_bench.BYTES_PER_PARAMETER
    bound = bandwidth * 1e9 / step_bytes  # steps per second when every weight is read once per step
    log(f"memory bandwidth (read) {bandwidth:.1f} GB/s: at most {bound:.0f} decoding steps/s")
    generator = torch.Generator().manual_seed(1)
    paths = ("tformer", generate_bench.COMPILED) if compile else ("tformer",)
    rows = []
    for batch in (1, 8):
        row = generate_bench.Row(f"greedy-b{batch}", batch, 1)
        prompt = torch.randint(0, model.config.vocab_size, (batch, settings.prompt_len), generator=generator)
        prompt = prompt.to(device)
        expected = tformer.generate(model, prompt, torch.ones_like(prompt), max_new_tokens=settings.new_tokens,
                                    eos_token_id=[], use_cache=False).cpu()
        for library in paths:
            name = f"decode b{batch} {'compiled' if library == generate_bench.COMPILED else 'static'}"
            rows.append(run_check(name, _decode_row, library, model, prompt, row, expected, settings, device,
                                  batch * bound))
    return rows


def _decode_row(library: str, model: nn.Module, prompt: Tensor, row: generate_bench.Row, expected: Tensor,
                settings: Settings, device: torch.device, bound: float) -> tuple[bool, str]:
    first, out = generate_bench.timed_generate(library, model, prompt, row, settings.new_tokens, device)
    same = tuple(out.shape) == tuple(expected.shape) and torch.equal(out.cpu(), expected)
    rates = [row.batch * settings.new_tokens / generate_bench.timed_generate(
        library, model, prompt, row, settings.new_tokens, device)[0] for _ in range(settings.repeats)]
    rate = statistics.median(rates)
    figure = (f"{rate:,.0f} tokens/s = {100 * rate / bound:.1f} % of the bandwidth bound {bound:,.0f}; "
              f"first run {first:.1f} s; ids {'==' if same else '!='} uncached")
    return same, figure


def run_check(name: str, check: Callable[..., tuple[bool, str]], *args: object) -> Row:
    """Run one check; an exception becomes a failed row with its one-line reason (Skipped: a skipped row)."""
    log(f"{name} ...")
    started = time.perf_counter()
    try:
        ok, figure = check(*args)
        row = Row(name, "pass" if ok else "fail", figure, ok)
    except gpu_check_runs.Skipped as skipped:
        row = Row(name, "skipped", str(skipped), True)
    except Exception as error:  # noqa: BLE001 - a check's failure is a row of the table, never a crash
        row = Row(name, "error", one_line(error), False)
    row.seconds = time.perf_counter() - started
    log(f"  {row.result}: {row.figure} ({row.seconds:.1f} s)")
    return row


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else '(no message)'}"[:300]


def _rows_of(name: str, produce: Callable[[], list[Row]]) -> list[Row]:
    """The rows of a check that makes several; an exception before they exist becomes one failed row `name`."""
    started = time.perf_counter()
    try:
        return produce()
    except Exception as error:  # noqa: BLE001 - see run_check
        row = Row(name, "error", one_line(error), False, time.perf_counter() - started)
        log(f"{name}: {row.figure}")
        return [row]


def run_all(groups: list[str], settings: Settings, device: torch.device, compile: bool) -> list[Row]:
    rows: list[Row] = []
    if "parity" in groups:
        for name, config in parity_configs(settings.quick).items():
            rows += _rows_of(f"parity {name}", lambda c=config, n=name: parity_rows(n, c, device, settings.parity_seq))
    if "cache" in groups:
        for name, config in parity_configs(settings.quick).items():
            if config.family != "bert":  # BERT does not generate
                rows.append(run_check(f"generate {name} cached == uncached", gpu_check_cache.check_cached_generation,
                                      config, device, 8 if settings.quick else 24))
    if "train" in groups:
        rows.append(run_check(f"train {settings.train_preset} bf16", check_train, settings, device))
    if "decode" in groups:
        rows += _rows_of("decode", lambda: check_decode(settings, device, compile))
    checks = {"finetune": [("finetune sst2", gpu_check_runs.check_finetune)],
              "ddp": [("ddp 2 processes", gpu_check_runs.check_ddp), ("fsdp 2 processes", gpu_check_runs.check_fsdp)],
              "fp16": [("train fp16 (GradScaler, fused AdamW)", gpu_check_runs.check_fp16)]}
    for group, named in checks.items():
        if group in groups:
            rows += [run_check(name, check, device) for name, check in named]
    return rows


def format_table(rows: list[Row], device: torch.device, settings: Settings, seconds: float) -> str:
    hardware = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    failed = [row.check for row in rows if not row.passed]
    lines = ["## GPU check", "",
             f"torch {torch.__version__}, tformer {tformer.__version__}, Python {platform.python_version()}; "
             f"device {device.type}: {hardware}; {'--quick (tiny shapes)' if settings.quick else 'full shapes'}; "
             f"{seconds:.0f} s in all", "",
             "| check | result | figure | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {r.result} | {r.figure.replace('|', '/')} | {r.seconds:.1f} |" for r in rows]
    lines += ["", f"{len(rows) - len(failed)} of {len(rows)} checks passed or skipped" +
              (f"; failed: {', '.join(failed)}." if failed else ".")]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (seconds instead of minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups among: {', '.join(GROUPS)}")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the compiled decoding rows")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in GROUPS]
    if unknown or not args.only:
        parser.error(f"--only: unknown group {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(GROUPS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch build sees no CUDA device; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    settings = Settings.make(args.quick, device)
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round float32 products to 10 bits of mantissa
    torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    rows = run_all(args.only, settings, device, args.compile)
    seconds = time.perf_counter() - started
    print(format_table(rows, device, settings, seconds))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "device": str(device), "quick": settings.quick, "torch": torch.__version__, "seconds": round(seconds, 1),
            "passed": all(row.passed for row in rows), "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
