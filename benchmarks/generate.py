"""Generation throughput of `tformer.generate` against `transformers` generate, same weights, same process.

What it measures: new tokens per second of one whole `generate` call (prompt prefill included) with the KV cache
(use_cache=True), for the `gpt2` preset in float32 and eval mode, in four rows: greedy decoding and beam search
(num_beams=4, num_return_sequences=1), each at batch 1 and batch 8. tformer runs as a user calls it by default
("tformer": greedy decoding on the static cache, eager; beam search on the dynamic cache) and, in the greedy rows,
with compile=True as well ("tformer compiled": the static cache's one-token step through torch.compile; its
compilation falls in the untimed first run, whose time is shown). `transformers` runs its default generate.

Every row makes exactly --new-tokens new tokens per returned sequence from a --prompt-len-token prompt of random
ids (no padding), so tokens/s is batch x new tokens / seconds (beam search counts the returned sequences, not the
beams).

How: the `transformers` model (GPT2LMHeadModel, sdpa) is built at random and loaded into tformer through
`save_pretrained` / `tformer.from_pretrained`, as in benchmarks/forward.py (whose helpers this script imports). No
end token may stop a sequence early: tformer gets eos_token_id=[], and the `transformers` model gets an empty
GenerationConfig (as tests/generation/conftest.py does), so it has no eos, pad, min-length or other processor of
its own. Before any timing, each row runs once per library (untimed; it doubles as the warm-up and compiles the
compiled path) and all must return identical token ids of the full length, so all do the same work. Then --repeats
rounds run; in each round every row runs once per library, back to back, each library going first in turn, so the
noise of a shared machine hits all alike. The headline is the median and min-max of the per-round ratios
tformer / transformers (> 1: tformer is faster); the ratio of the two medians is shown too.

The decode-bound limit: at batch 1 one decoding step has to read every weight once, so memory bandwidth bounds it.
The script measures the read bandwidth in-process (a sum over a --bandwidth-mib float32 buffer, far larger than any
L3; a copy is shown for reference), once before the first round and once after each round, and divides the model's
bytes (parameters x 4, the tied lm_head counted once) by the median: the least time one step can take, hence the
most tokens/s greedy decoding can reach at batch 1, which the greedy batch-1 rows are compared with. Progress goes
to stderr, the table to stdout.

Run (from the repository root; nothing is downloaded):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate.py --rows greedy-b1 --new-tokens 32 --repeats 5
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate.py --device cuda
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate.py --no-compile    # without the compiled tformer runs
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate.py --preset gpt2-tiny --prompt-len 8 --new-tokens 4 \
        --rows greedy-b1 --repeats 1 --json rows.json    # seconds: what the tests of the scripts run

At the defaults (all four rows, 128 new tokens after a 32-token prompt, 1 parity/warm-up run + 3 timed rounds) it
takes about 7 minutes on a quiet 2-core CPU (one greedy batch-1 run is about 4.4 s, one beam-4 batch-8 run about
24 s there; 20 minutes when the host was oversubscribed) and needs about 4 GB of memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from torch import Tensor, nn

import tformer
from forward import CASES, build_pair, cpu_model, log

BYTES_PER_PARAMETER = 4  # float32
REFERENCE = "transformers"
GPT2_PRESETS = tuple(name for name in tformer.PRESETS if name.startswith("gpt2"))  # forward.py: GPT2LMHeadModel
COMPILED = "tformer compiled"


@dataclass(frozen=True)
class Row:
    """One setting of the table: how many prompts and how many beams."""

    name: str
    batch: int
    num_beams: int

    @property
    def search(self) -> str:
        return "greedy" if self.num_beams == 1 else f"beam {self.num_beams}"

    def libraries(self, compile: bool) -> tuple[str, ...]:
        """What runs in this row: tformer as called by default, compiled tformer (greedy only), transformers."""
        return ("tformer", COMPILED, REFERENCE) if compile and self.num_beams == 1 else ("tformer", REFERENCE)


ROWS = {row.name: row for row in (Row("greedy-b1", 1, 1), Row("greedy-b8", 8, 1),
                                  Row("beam4-b1", 1, 4), Row("beam4-b8", 8, 4))}


@dataclass
class Result:
    """Timings of one row: tokens/s per timed run, per library, in round order."""

    row: Row
    tokens_per_s: dict[str, list[float]]


def _spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(library: str, model: nn.Module, input_ids: Tensor, row: Row, new_tokens: int) -> Tensor:
    """Token ids (batch, prompt + new_tokens) from one library's generate, no end token, KV cache on."""
    attention_mask = torch.ones_like(input_ids)
    if library.startswith("tformer"):
        return tformer.generate(model, input_ids, attention_mask, max_new_tokens=new_tokens, num_beams=row.num_beams,
                                num_return_sequences=1, eos_token_id=[], use_cache=True,
                                compile=library == COMPILED)
    with torch.no_grad():
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, num_beams=row.num_beams,
                              num_return_sequences=1, use_cache=True)


def timed_generate(library: str, model: nn.Module, input_ids: Tensor, row: Row, new_tokens: int,
                   device: torch.device) -> tuple[float, Tensor]:
    _synchronize(device)
    start = time.perf_counter()
    out = generate(library, model, input_ids, row, new_tokens)
    _synchronize(device)
    return time.perf_counter() - start, out


def check_same_tokens(row: Row, outputs: dict[str, Tensor], expected_shape: tuple[int, int]) -> None:
    """Both libraries must return the same ids of the full length, or the timings would not compare the same work."""
    for library, out in outputs.items():
        if tuple(out.shape) != expected_shape:
            raise RuntimeError(f"{row.name}: {library} returned shape {tuple(out.shape)}, expected {expected_shape} "
                               "(an end token stopped it early?)")
    theirs = outputs[REFERENCE].cpu()
    for library, out in outputs.items():
        ours = out.cpu()
        if not torch.equal(ours, theirs):
            r, c = (ours != theirs).nonzero()[0].tolist()
            raise RuntimeError(f"{row.name}: {library} and transformers generate different tokens (first at row {r}, "
                               f"position {c}: {int(ours[r, c])} vs {int(theirs[r, c])}); the timings would not "
                               "compare the same work")


def measure_bandwidth(device: torch.device, mib: int, repeats: int = 5) -> tuple[float, float]:
    """(read, copy) memory bandwidth in GB/s, best of `repeats`: a sum over a float32 buffer of `mib` MiB, and a
    copy into a second one (bytes read + written). Best of a few, because a slower pass only means interference."""
    n = mib * 2**20 // 4
    source = torch.ones(n, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    read, copy = [], []
    for _ in range(repeats + 1):  # the first pass only faults the pages in
        _synchronize(device)
        start = time.perf_counter()
        source.sum()
        _synchronize(device)
        middle = time.perf_counter()
        target.copy_(source)
        _synchronize(device)
        end = time.perf_counter()
        read.append(4 * n / (middle - start) / 1e9)
        copy.append(2 * 4 * n / (end - middle) / 1e9)
    del source, target
    return max(read[1:]), max(copy[1:])


def run(rows: list[Row], new_tokens: int, prompt_len: int, repeats: int, device: torch.device,
        bandwidth_mib: int, compile: bool, preset: str = "gpt2",
        ) -> tuple[list[Result], list[tuple[float, float]], int, dict[str, float]]:
    bandwidth = [measure_bandwidth(device, bandwidth_mib)]
    log(f"memory bandwidth: read {bandwidth[-1][0]:.1f} GB/s, copy {bandwidth[-1][1]:.1f} GB/s")
    log(f"{preset}: building the transformers model, saving it and loading it into tformer")
    ours, reference = build_pair(dataclasses.replace(CASES["gpt2"], preset=preset))
    # transformers' generate must apply no processor of its own (no eos, pad, min length...): only what we pass.
    reference.generation_config = transformers.GenerationConfig()
    models = {"tformer": ours.to(device).eval(), COMPILED: ours, REFERENCE: reference.to(device).eval()}
    parameters = ours.num_parameters()
    generator = torch.Generator().manual_seed(1)
    prompts = {row.name: torch.randint(0, ours.config.vocab_size, (row.batch, prompt_len), generator=generator)
               .to(device) for row in rows}

    first_run: dict[str, float] = {}  # seconds of each row's untimed first run (compilation included)
    for row in rows:
        outputs = {}
        for library in row.libraries(compile):
            seconds, outputs[library] = timed_generate(library, models[library], prompts[row.name], row, new_tokens,
                                                       device)
            first_run[f"{row.name} {library}"] = seconds
            log(f"  {row.name} parity/warm-up {library:<16} {seconds:7.2f} s")
        check_same_tokens(row, outputs, (row.batch, prompt_len + new_tokens))
        log(f"  {row.name}: identical token ids {tuple(outputs['tformer'].shape)}")

    results = [Result(row, {library: [] for library in row.libraries(compile)}) for row in rows]
    for round_ in range(repeats):
        for result in results:
            row = result.row
            libraries = row.libraries(compile)
            shift = round_ % len(libraries)  # each library goes first in turn
            for library in libraries[shift:] + libraries[:shift]:
                seconds, _ = timed_generate(library, models[library], prompts[row.name], row, new_tokens, device)
                tokens_per_s = row.batch * new_tokens / seconds
                result.tokens_per_s[library].append(tokens_per_s)
                log(f"  round {round_ + 1} {row.name:<9} {library:<16} {seconds:7.2f} s  {tokens_per_s:8.2f} tokens/s")
        bandwidth.append(measure_bandwidth(device, bandwidth_mib))
        log(f"memory bandwidth: read {bandwidth[-1][0]:.1f} GB/s, copy {bandwidth[-1][1]:.1f} GB/s")
    del models, ours, reference
    gc.collect()
    return results, bandwidth, parameters, first_run


def compared(results: list[Result]) -> list[tuple[Result, str, list[float], list[float], list[float]]]:
    """(result, tformer path, tformer tokens/s, transformers tokens/s, per-round ratios) for each tformer path."""
    lines = []
    for result in results:
        theirs = result.tokens_per_s[REFERENCE]
        for library, ours in result.tokens_per_s.items():
            if library != REFERENCE:
                path = ("compiled static cache" if library == COMPILED
                        else "static cache" if result.row.num_beams == 1 else "dynamic cache")
                lines.append((result, path, ours, theirs, [a / b for a, b in zip(ours, theirs, strict=True)]))
    return lines


def write_json(path: Path, results: list[Result], args: argparse.Namespace) -> None:
    """The table's rows as JSON (for benchmarks/compare_commits.py): per row and tformer path, every round."""
    rows = [{"row": f"{result.row.name} {tformer_path}", "tformer_tokens_per_s": ours,
             "transformers_tokens_per_s": theirs, "ratios": rounds, "ratio": statistics.median(rounds)}
            for result, tformer_path, ours, theirs, rounds in compared(results)]
    path.write_text(json.dumps({"benchmark": "generate", "preset": args.preset, "tformer": tformer.__file__,
                                "torch": torch.__version__, "device": args.device, "rows": rows}, indent=2) + "\n")


def format_table(results: list[Result], bandwidth: list[tuple[float, float]], parameters: int,
                 device: torch.device, new_tokens: int, prompt_len: int, repeats: int, bandwidth_mib: int,
                 first_run: dict[str, float], preset: str = "gpt2") -> str:
    hardware = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    lines = [
        "## Generation tokens/s, tformer vs transformers",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, tformer {tformer.__version__}, "
        f"Python {platform.python_version()}",
        f"device {device.type}: {hardware}; {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"{preset} preset ({parameters:,} parameters), float32, eval mode, use_cache=True; prompt {prompt_len} random "
        f"ids, {new_tokens} new tokens, no end token; 1 parity/warm-up run + {repeats} timed rounds per library, "
        "interleaved",
        "",
        "| row | search | batch | tformer path | tformer tokens/s median [min–max] | "
        "transformers tokens/s median [min–max] | ratio, per round: median [min–max] | ratio of medians |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result, path, ours, theirs, rounds in compared(results):
        lines.append(f"| {result.row.name} | {result.row.search} | {result.row.batch} | {path} | "
                     f"{_spread(ours, 2)} | {_spread(theirs, 2)} | {_spread(rounds, 2)} | "
                     f"{statistics.median(ours) / statistics.median(theirs):.2f} |")
    lines += ["", "tokens/s = batch x new tokens / seconds of the whole generate call (prefill included; beam search "
              "counts returned sequences); ratio = tformer / transformers, above 1 means tformer is faster; per round: "
              "the adjacent runs of each round. Every path returned the token ids of transformers in every row."]
    compiled = {name: seconds for name, seconds in first_run.items() if name.endswith(COMPILED)}
    if compiled:
        lines.append("First (untimed) run of the compiled path, compilation included: " + ", ".join(
            f"{name.split()[0]} {seconds:.1f} s" for name, seconds in compiled.items()) + ".")

    read = [r for r, _ in bandwidth]
    copy = [c for _, c in bandwidth]
    model_bytes = parameters * BYTES_PER_PARAMETER
    step_s = model_bytes / (statistics.median(read) * 1e9)
    limit = 1 / step_s
    lines += ["", f"Decode-bound limit: memory bandwidth (read: sum over a {bandwidth_mib} MiB float32 buffer, best of "
              f"5, {len(read)} measurements) {_spread(read, 1)} GB/s (copy, read + write: {_spread(copy, 1)} GB/s); "
              f"model {parameters:,} parameters x {BYTES_PER_PARAMETER} B = {model_bytes / 1e6:.1f} MB, so one "
              f"batch-1 decoding step takes at least {step_s * 1e3:.1f} ms: at most {limit:.1f} tokens/s."]
    for result in results:
        if result.row.name == "greedy-b1":
            medians = {library: statistics.median(values) for library, values in result.tokens_per_s.items()}
            shares = [f"{library} {value:.2f} tokens/s = {100 * value / limit:.0f} %"
                      for library, value in medians.items()]
            lines.append(f"greedy batch 1, share of that limit: {', '.join(shares)}.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated rows among: {', '.join(ROWS)} (default: all)")
    parser.add_argument("--new-tokens", type=int, default=128, help="new tokens per sequence (default: 128)")
    parser.add_argument("--prompt-len", type=int, default=32, help="prompt tokens per sequence (default: 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: torch's choice, here {torch.get_num_threads()})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the compiled tformer runs of the greedy rows")
    parser.add_argument("--preset", default="gpt2", choices=GPT2_PRESETS,
                        help="the GPT-2 preset generating (default: gpt2; gpt2-tiny for quick tests)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the rows (every round) as JSON to this file (benchmarks/compare_commits.py)")
    parser.add_argument("--bandwidth-mib", type=int, default=1024,
                        help="MiB of the buffer the memory bandwidth is measured on (default: 1024)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        shown = repr(unknown[0]) if unknown else "(none)"
        parser.error(f"--rows: unknown row {shown}; choose from {', '.join(ROWS)}")
    args.rows = [ROWS[name] for name in dict.fromkeys(names)]
    for name in ("new_tokens", "prompt_len", "repeats", "threads", "bandwidth_mib"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}={value} must be at least 1")
    max_positions = tformer.ModelConfig.preset(args.preset).max_positions
    if args.prompt_len + args.new_tokens - 1 > max_positions:
        parser.error(f"--prompt-len {args.prompt_len} + --new-tokens {args.new_tokens} - 1 exceeds {args.preset}'s "
                     f"{max_positions} positions")
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
    results, bandwidth, parameters, first_run = run(args.rows, args.new_tokens, args.prompt_len, args.repeats,
                                                    device, args.bandwidth_mib, args.compile, args.preset)
    print(format_table(results, bandwidth, parameters, device, args.new_tokens, args.prompt_len, args.repeats,
                       args.bandwidth_mib, first_run, args.preset))
    if args.json is not None:
        write_json(args.json, results, args)
    log(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
