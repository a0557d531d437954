"""Forward + backward training throughput of tformer against Hugging Face `transformers`, same weights, same process.

What it measures: tokens per second of one training step without the optimizer — forward pass, the loss computed
by the library itself, `loss.backward()` — for the `gpt2` and `bert-base` presets, float32, train mode with every
dropout set to 0 (so both libraries do the same work). The reference is `transformers` with
attn_implementation="sdpa" (GPT2LMHeadModel, BertForPreTraining).

How: the `transformers` model is built at random (seeded; its zero biases and unit LayerNorms are nudged so that
they take part in the check), saved with `save_pretrained` to a temporary folder and loaded with
`tformer.from_pretrained`. On the benchmark batch (random token ids; GPT: labels = input_ids; BERT: two
segments, masked-LM labels on ~15 % of the positions and -100 elsewhere, plus next_sentence_label; no padding
and so no attention mask) the logits and losses of the two models must agree to 1e-4 before anything is timed.
Then both run `--warmup` untimed steps and `--steps` timed steps each, interleaved step by step (tformer,
transformers, tformer, ...) so that the noise of a shared machine hits both alike. Gradients are zeroed
(set to None) between steps, outside the timed region. The table gives the median and min-max tokens/s of each
library and the ratio tformer / transformers (> 1: tformer is faster) two ways: the median and min-max of the
per-round ratios (each round pairs two adjacent steps, so slow phases of the machine cancel; the headline) and the
ratio of the two medians. Progress goes to stderr, the table to stdout.

Run (from the repository root; nothing is downloaded):

    .venv/bin/python benchmarks/forward.py
    .venv/bin/python benchmarks/forward.py --models gpt2 --batch 2 --seq-len 128 --steps 10 --threads 2
    .venv/bin/python benchmarks/forward.py --device cuda

At the defaults (gpt2 4 x 256, bert-base 8 x 128, 2 warm-up + 6 timed steps per library) it takes 5-10 minutes
on a 2-core CPU (one step is 5-25 s there) and needs about 4.5 GB of memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers
from torch import Tensor, nn

import tformer
from tformer import ModelConfig

PARITY_TOLERANCE = 1e-4
LIBRARIES = ("tformer", "transformers")


@dataclass(frozen=True)
class Case:
    """One model to compare: the tformer preset, its `transformers` twin, the batch, and where the logits are."""

    preset: str
    batch: int  # default batch size
    seq_len: int  # default sequence length
    build_reference: Callable[[ModelConfig], nn.Module]  # a random-init `transformers` model matching the preset
    make_batch: Callable[[ModelConfig, int, int, torch.Generator], dict[str, Tensor]]
    logit_fields: dict[str, tuple[str, ...]]  # library -> output attributes compared for parity


def _gpt2_reference(config: ModelConfig) -> nn.Module:
    hf_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_positions, n_embd=config.d_model,
        n_layer=config.n_layers, n_head=config.n_heads, n_inner=config.ffn_dim, activation_function="gelu_new",
        layer_norm_epsilon=config.layer_norm_eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        initializer_range=config.init_std, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        tie_word_embeddings=config.tie_word_embeddings, attn_implementation="sdpa",
    )
    return transformers.GPT2LMHeadModel(hf_config)


def _bert_reference(config: ModelConfig) -> nn.Module:
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, intermediate_size=config.ffn_dim, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=config.max_positions,
        type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
        initializer_range=config.init_std, pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings, attn_implementation="sdpa",
    )
    return transformers.BertForPreTraining(hf_config)


def _gpt2_batch(config: ModelConfig, batch: int, seq_len: int, generator: torch.Generator) -> dict[str, Tensor]:
    input_ids = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator)
    return {"input_ids": input_ids, "labels": input_ids.clone()}  # both libraries shift the labels inside


def _bert_batch(config: ModelConfig, batch: int, seq_len: int, generator: torch.Generator) -> dict[str, Tensor]:
    input_ids = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 2:] = 1
    masked = torch.rand((batch, seq_len), generator=generator) < 0.15
    masked[:, 1] = True  # at least one masked-LM target per row
    return {
        "input_ids": input_ids, "token_type_ids": token_type_ids,
        "labels": torch.where(masked, input_ids, torch.full_like(input_ids, -100)),
        "next_sentence_label": torch.randint(0, 2, (batch,), generator=generator),
    }


CASES = {
    "gpt2": Case("gpt2", 4, 256, _gpt2_reference, _gpt2_batch,
                 {"tformer": ("logits",), "transformers": ("logits",)}),
    "bert-base": Case("bert-base", 8, 128, _bert_reference, _bert_batch,
                      {"tformer": ("logits", "nsp_logits"),
                       "transformers": ("prediction_logits", "seq_relationship_logits")}),
}


@dataclass
class Result:
    """Timings of one case: tokens/s per timed step, per library, in the order they ran."""

    preset: str
    batch: int
    seq_len: int
    parity: float  # max |difference| of logits and losses on the benchmark batch
    tokens_per_s: dict[str, list[float]]


def _nudge_constant_parameters(model: nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Zero biases and unit LayerNorms would let a mix-up of them pass the parity check: add a little noise."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() and bool(parameter.min() == parameter.max()):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


def build_pair(case: Case) -> tuple[nn.Module, nn.Module]:
    """(tformer model, transformers model) holding the same weights, dropout 0, float32, on the CPU."""
    config = ModelConfig.preset(case.preset, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    torch.manual_seed(0)
    reference = case.build_reference(config).float()
    _nudge_constant_parameters(reference)
    attention = reference.config._attn_implementation
    if attention != "sdpa":
        raise RuntimeError(f"transformers picked attn_implementation={attention!r}, the benchmark needs 'sdpa'")
    with tempfile.TemporaryDirectory(prefix=f"tformer-bench-{case.preset}-") as folder:
        reference.save_pretrained(folder)
        ours = tformer.from_pretrained(folder).float()
    expected = config.replace(d_ff=config.ffn_dim).to_dict()  # the preset leaves d_ff None, meaning 4 * d_model
    loaded = ours.config.replace(d_ff=ours.config.ffn_dim).to_dict()
    differing = [k for k, v in expected.items() if loaded[k] != v]
    if differing:
        raise RuntimeError(f"the loaded tformer config differs from preset {case.preset!r} in {differing}")
    return ours, reference


def check_parity(case: Case, models: dict[str, nn.Module], inputs: dict[str, Tensor]) -> float:
    """Max |difference| of the logits (and losses) of the two libraries on `inputs`; raises above tolerance."""
    outputs = {}
    with torch.no_grad():
        for library, model in models.items():
            out = model(**inputs)
            outputs[library] = [getattr(out, name) for name in case.logit_fields[library]] + [out.loss]
    worst = 0.0
    for ours, theirs in zip(outputs["tformer"], outputs["transformers"], strict=True):
        if ours.shape != theirs.shape:
            raise RuntimeError(f"{case.preset}: output shapes differ, {tuple(ours.shape)} vs {tuple(theirs.shape)}")
        worst = max(worst, (ours.float() - theirs.float()).abs().max().item())
    if not worst < PARITY_TOLERANCE:
        raise RuntimeError(f"{case.preset}: tformer and transformers disagree by {worst:.2e} "
                           f"(tolerance {PARITY_TOLERANCE:.0e}); the timings would not compare the same model")
    return worst


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: nn.Module, inputs: dict[str, Tensor], device: torch.device) -> float:
    """Seconds for forward + loss + backward (gradients zeroed first, outside the timing)."""
    model.zero_grad(set_to_none=True)
    _synchronize(device)
    start = time.perf_counter()
    loss = model(**inputs).loss
    loss.backward()
    _synchronize(device)
    return time.perf_counter() - start


def run_case(case: Case, batch: int, seq_len: int, steps: int, warmup: int, device: torch.device) -> Result:
    log(f"{case.preset}: building the transformers model, saving it and loading it into tformer")
    ours, reference = build_pair(case)
    models = {"tformer": ours.to(device).train(), "transformers": reference.to(device).train()}
    generator = torch.Generator().manual_seed(1)
    inputs = {k: v.to(device) for k, v in case.make_batch(ours.config, batch, seq_len, generator).items()}
    parity = check_parity(case, models, inputs)
    log(f"{case.preset}: logits agree, max |diff| {parity:.1e}; {warmup} warm-up + {steps} timed steps per library")
    tokens = batch * seq_len
    timings: dict[str, list[float]] = {library: [] for library in LIBRARIES}
    for step in range(warmup + steps):
        for library in LIBRARIES:
            seconds = train_step(models[library], inputs, device)
            timed = step >= warmup
            if timed:
                timings[library].append(tokens / seconds)
            log(f"  {case.preset} {'step' if timed else 'warm-up'} {step + 1 - (warmup if timed else 0)} "
                f"{library:<12} {seconds:7.3f} s  {tokens / seconds:9.1f} tokens/s")
    del models, ours, reference
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Result(case.preset, batch, seq_len, parity, timings)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def format_table(results: list[Result], device: torch.device, steps: int, warmup: int) -> str:
    hardware = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    lines = [
        "## Forward + backward tokens/s, tformer vs transformers (sdpa)",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, tformer {tformer.__version__}, "
        f"Python {platform.python_version()}",
        f"device {device.type}: {hardware}; {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"float32, train mode, dropout 0, loss + backward, no optimizer; {warmup} warm-up + {steps} timed steps "
        "per library, interleaved",
        "",
        "| model | batch x seq | max abs diff | tformer tokens/s median [min–max] | "
        "transformers tokens/s median [min–max] | ratio, per round: median [min–max] | ratio of medians |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours, theirs = r.tokens_per_s["tformer"], r.tokens_per_s["transformers"]
        rounds = [a / b for a, b in zip(ours, theirs, strict=True)]
        lines.append(
            f"| {r.preset} | {r.batch} x {r.seq_len} | {r.parity:.1e} | {_spread(ours, 1)} | {_spread(theirs, 1)} | "
            f"{_spread(rounds, 2)} | {statistics.median(ours) / statistics.median(theirs):.2f} |"
        )
    lines += ["", "ratio = tformer / transformers tokens/s, above 1 means tformer is faster; per round: the two "
              "adjacent steps of each round; max abs diff: logits and losses on the benchmark batch."]
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt2,bert-base",
                        help=f"comma-separated presets among: {', '.join(CASES)} (default: both)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: gpt2 4, bert-base 8)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: gpt2 256, "
                                                                   "bert-base 128)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per library (default: 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per library first (default: 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: torch's choice, here {torch.get_num_threads()})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in CASES]
    if unknown or not args.models:
        shown = repr(unknown[0]) if unknown else "(none)"
        parser.error(f"--models: unknown preset {shown}; choose from {', '.join(CASES)}")
    for name in ("batch", "seq_len", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be at least 1")
    if args.warmup < 0:
        parser.error(f"--warmup={args.warmup} must be 0 or more")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch build sees no CUDA device; use --device cpu")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    results = []
    for name in args.models:
        case = CASES[name]
        results.append(run_case(case, args.batch or case.batch, args.seq_len or case.seq_len, args.steps,
                                args.warmup, device))
    print(format_table(results, device, args.steps, args.warmup))
    log(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
