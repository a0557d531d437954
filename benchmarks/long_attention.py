"""Long inputs without the N^2 term, measured: memory and time of full, local, compressed and LMLML attention.

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") report that their T-D runs out of memory
past about 4,000 tokens on a 16 GB GPU and their T-DMCA (local and memory-compressed layers, `LMLML`) reads
11,000. This benchmark puts the same question to tformer on this machine: for one fixed small decoder-only model
(5 layers, d_model 256, 4 heads of 64, d_ff 1024, vocabulary 8,000, sinusoidal positions, dropout off, batch 1,
float32; local blocks of 256 seeing one block back, compression 3) and sequence lengths N from 512 to 32,768
(doubling), it measures

* a training step (forward, loss, backward): peak memory above the baseline and the median step time;
* decoding: the N-token prompt prefilled through the model's cache (in chunks), then one token at a time: the
  prefill's peak and time, the cache's size, the peak while decoding and the median time per token;

for five kinds: `full` (torch's fused scaled_dot_product_attention, which on CPU and CUDA is a flash-style kernel:
memory linear in N, time N^2), `full-explicit` (the N x N weights materialised, as the paper's T-D did),
`local` (every layer L), `compressed` (every layer M) and `lmlml`. Each point runs in a fresh process
(long_attention_point.py) so that one point's memory cannot leak into the next; a point that passes the budget
(--budget-gb, default 8, peak minus the idle baseline) is stopped and reported "over budget", and the longer
lengths of that kind are not run. The report gives the longest length each kind fits: the paper's 4,000 vs
11,000 analogue.

CPU memory is the resident set (VmHWM, reset per point), not tracemalloc, which does not see torch's allocations;
CUDA memory is torch.cuda.max_memory_allocated. Writes results.md, results.json and long_attention.png to --out.

    PYTHONPATH=src .venv/bin/python benchmarks/long_attention.py --out /tmp/long          # the whole run
    PYTHONPATH=src .venv/bin/python benchmarks/long_attention.py --quick --out /tmp/lq    # well under a minute
    PYTHONPATH=src .venv/bin/python benchmarks/long_attention.py --kinds full,lmlml --lengths 4096,16384
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from long_attention_options import MODEL, PATTERNS, parse_args
from long_attention_point import RESULT
from long_attention_report import STOPPED, markdown, plot

POINT = Path(__file__).resolve().with_name("long_attention_point.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def point_spec(args: Any, kind: str, mode: str, length: int) -> dict[str, Any]:
    return dict(kind=kind, mode=mode, length=length, pattern=PATTERNS[kind], vocab_size=args.vocab_size,
                d_model=args.d_model, n_heads=args.n_heads, n_layers=MODEL["n_layers"], d_ff=args.d_ff,
                block_size=args.block_size, look_back=args.look_back, compression=args.compression,
                decode_tokens=args.decode_tokens, prefill_chunk=args.prefill_chunk, repeats=args.repeats,
                device=args.device, threads=args.threads, budget_bytes=int(args.budget_gb * 1e9))


def run_point(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One point in a fresh Python process: its RESULT line, or why there is none."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    began = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(POINT), json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "wall_s": timeout}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if lines:
        result = json.loads(lines[-1][len(RESULT):])
    elif done.returncode in (-9, 137):
        result = {"status": "over budget", "how": "killed (out of memory)"}
    else:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        result = {"status": "failed", "why": f"exit {done.returncode}: {last[:300]}"}
    result["wall_s"] = time.perf_counter() - began
    return result


def run_points(args: Any, log: Any = print) -> list[dict[str, Any]]:
    """Every (mode, kind, length) point; past a stopped point, a kind's longer lengths are not run."""
    points = []
    for mode in args.modes:
        for kind in args.kinds:
            stopped: dict[str, Any] | None = None
            for length in args.lengths:
                key = dict(mode=mode, kind=kind, length=length)
                if stopped is not None:
                    points.append({**key, "status": stopped["status"], "skipped": True})
                    continue
                result = {**key, **run_point(point_spec(args, kind, mode, length), args.point_timeout)}
                points.append(result)
                log(f"{mode:6} {kind:13} N={length:>6}: {result['status']}"
                    + (f" ({result.get('why', result.get('how', ''))})" if result["status"] != "ok" else "")
                    + f" [{result['wall_s']:.1f} s]")
                if result["status"] in (*STOPPED, "unavailable", "failed"):
                    stopped = result
    return points


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({where}), {memory:.0f} GB RAM, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def header(args: Any, wall: float) -> list[str]:
    return ["## Long inputs: memory and time against sequence length", "",
            f"Command: `{' '.join(['benchmarks/long_attention.py', *sys.argv[1:]])}`  ",
            f"Machine: {machine()}; device {args.device}, threads {args.threads or 'torch default'}  ",
            f"Model: GPT (T-D), 5 layers, d_model {args.d_model}, {args.n_heads} heads, d_ff {args.d_ff}, vocabulary "
            f"{args.vocab_size:,}, sinusoidal positions, dropout 0, batch 1, float32; local blocks of "
            f"{args.block_size} seeing {args.look_back} block(s) back, compression {args.compression}  ",
            f"Memory: {'torch.cuda.max_memory_allocated' if args.device == 'cuda' else 'resident set (VmHWM)'} "
            f"minus the baseline (model, gradients, one warm-up step), MiB; budget {args.budget_gb:g} GB per point; "
            f"timed steps per training point: {args.repeats}  ",
            f"Wall time of the whole run: {wall:.0f} s"]


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    points = run_points(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    report = markdown(points, args, header(args, time.perf_counter() - began))
    print(report)
    out = Path(args.out)
    (out / "results.md").write_text(report + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"options": {k: v for k, v in vars(args).items()},
                                                  "points": points}, indent=1), encoding="utf-8")
    drew = plot(points, args, out / "long_attention.png")
    print(f"\nwrote {out}/results.md, results.json" + (" and long_attention.png" if drew else
                                                         " (no plot: matplotlib is not installed)"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
