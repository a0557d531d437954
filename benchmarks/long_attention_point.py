"""One point of benchmarks/long_attention.py, in a fresh process: a training step or decoding at one length.

`python long_attention_point.py '<json spec>'` prints one line `RESULT {...}` (JSON) and exits 0, whether the
point fitted or went over its budget. Memory on CPU is the process's resident set (VmRSS / VmHWM of
/proc/self/status, the peak reset through /proc/self/clear_refs, else getrusage's ru_maxrss), minus the baseline
measured just before the point: the model, its gradients and one small warm-up step are in the baseline, so the
figure is what the step itself adds. tracemalloc would not do: it sees Python's allocations, not torch's. On
CUDA it is torch.cuda.max_memory_allocated minus memory_allocated before the point.

Over budget: a watcher thread stops the point once the resident set exceeds baseline + budget (torch releases
the GIL inside its ops, so the thread runs while they do), and RLIMIT_AS (address space) is set as a backstop
a few GB above that, where an allocation fails with a RuntimeError instead of the machine running out of memory.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

RESULT = "RESULT "
_STATUS = Path("/proc/self/status")


def _status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _trim() -> None:
    """Hand freed heap back to the OS (glibc), so the resident set is what is live."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def emit(result: dict[str, Any]) -> None:
    print(RESULT + json.dumps(result), flush=True)


class CpuMeter:
    """Peak resident memory of this process above a baseline, with a watcher that stops it past the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.baseline = 0
        self.resettable = True
        self._watching = False

    def rss(self) -> int:
        return _status_kb("VmRSS") * 1024

    def reset_peak(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
        except OSError:
            self.resettable = False  # then the peak is the process's lifetime peak (ru_maxrss)

    def peak(self) -> int:
        if self.resettable:
            return _status_kb("VmHWM") * 1024 - self.baseline
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.baseline

    def now(self) -> int:
        return self.rss() - self.baseline

    def start(self) -> None:
        _trim()
        self.baseline = self.rss()
        self.reset_peak()
        limit = _status_kb("VmSize") * 1024 + self.budget + (4 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            used = self.rss() - self.baseline
            if used > self.budget:
                emit({"status": "over budget", "seen_bytes": used, "how": "resident set passed the budget"})
                os._exit(0)
            time.sleep(0.005)


class CudaMeter:
    """torch.cuda.max_memory_allocated above the memory allocated before the point; the budget as a memory cap."""

    def __init__(self, budget: int) -> None:
        import torch

        self.torch, self.budget, self.baseline, self.resettable = torch, budget, 0, True

    def reset_peak(self) -> None:
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        self.torch.cuda.synchronize()
        return self.torch.cuda.max_memory_allocated() - self.baseline

    def now(self) -> int:
        return self.torch.cuda.memory_allocated() - self.baseline

    def start(self) -> None:
        cuda = self.torch.cuda
        gc.collect()
        cuda.empty_cache()
        self.baseline = cuda.memory_allocated()
        total = cuda.get_device_properties(0).total_memory
        cuda.set_per_process_memory_fraction(min(1.0, (self.baseline + self.budget) / total))
        self.reset_peak()


def build(spec: dict[str, Any]) -> Any:
    """The point's model: a GPT (T-D) of the spec's size, dropout off, sinusoidal positions (no table to grow)."""
    from tformer.config import ModelConfig
    from tformer.models import build_model

    fields = dict(family="gpt", vocab_size=spec["vocab_size"], d_model=spec["d_model"], n_heads=spec["n_heads"],
                  n_layers=spec["n_layers"], d_ff=spec["d_ff"], positions="sinusoidal",
                  max_positions=spec["length"] + spec["decode_tokens"] + 1, dropout=0.0, attention_dropout=0.0,
                  attention="explicit" if spec["kind"] == "full-explicit" else "fused")
    if spec["pattern"] is not None:
        fields.update(attention_pattern=spec["pattern"], local_block_size=spec["block_size"],
                      local_look_back=spec["look_back"], compression=spec["compression"])
    return build_model(ModelConfig(**fields)).to(spec["device"])


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def train_point(model: Any, ids: Any, spec: dict[str, Any], meter: CpuMeter | CudaMeter) -> dict[str, Any]:
    """Peak memory and median time of a training step (forward, loss, backward) on `ids` (1, N)."""
    model.train()
    warm = ids[:, : min(ids.size(1), 64)]
    model(warm, labels=warm).loss.backward()  # gradients allocated, threads and kernels started: in the baseline
    meter.start()
    times = []
    for _ in range(spec["repeats"]):
        began = time.perf_counter()
        model(ids, labels=ids).loss.backward()
        _sync(spec["device"])
        times.append(time.perf_counter() - began)
    return {"status": "ok", "peak_bytes": meter.peak(), "step_s": statistics.median(times), "times_s": times}


def _prefill(model: Any, ids: Any, chunk: int) -> tuple[Any, Any]:
    cache = model.new_cache()
    for start in range(0, ids.size(1), chunk):
        logits = model(ids[:, start:start + chunk], cache=cache, logits_to_keep=1).logits
    return cache, logits[:, -1].argmax(-1, keepdim=True)


def decode_point(model: Any, ids: Any, spec: dict[str, Any], meter: CpuMeter | CudaMeter) -> dict[str, Any]:
    """Prefill the prompt `ids` (1, N) through the cache in chunks, then decode greedily one token at a time."""
    import torch

    model.eval()
    with torch.no_grad():
        warm_cache, token = _prefill(model, ids[:, : min(ids.size(1), 64)], spec["prefill_chunk"])
        model(token, cache=warm_cache)
        del warm_cache
        meter.start()
        began = time.perf_counter()
        cache, token = _prefill(model, ids, spec["prefill_chunk"])
        _sync(spec["device"])
        prefill_s, prefill_peak = time.perf_counter() - began, meter.peak()
        _trim()
        cache_bytes = meter.now()
        meter.reset_peak()
        times = []
        for _ in range(spec["decode_tokens"]):
            began = time.perf_counter()
            token = model(token, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
            _sync(spec["device"])
            times.append(time.perf_counter() - began)
        decode_peak = meter.peak()  # the cache is held from the reset on: the peak includes it
    return {"status": "ok", "prefill_s": prefill_s, "prefill_peak_bytes": prefill_peak, "cache_bytes": cache_bytes,
            "decode_peak_bytes": decode_peak, "token_ms": 1000 * statistics.median(times)}


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    try:
        model = build(spec)
    except TypeError as error:  # ModelConfig without attention_pattern: the stack is not merged here
        return {"status": "unavailable", "why": f"{error} (this tformer has no attention_pattern)"}
    ids = torch.randint(spec["vocab_size"], (1, spec["length"]), device=spec["device"])
    meter = CudaMeter(spec["budget_bytes"]) if spec["device"] == "cuda" else CpuMeter(spec["budget_bytes"])
    measure = train_point if spec["mode"] == "train" else decode_point
    try:
        result = measure(model, ids, spec, meter)
    except (RuntimeError, MemoryError) as error:  # RLIMIT_AS / the CUDA cap refused an allocation
        if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
            raise
        return {"status": "over budget", "how": str(error).splitlines()[0][:200]}
    result["resettable_peak"] = meter.resettable
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: long_attention_point.py '<json spec>' (benchmarks/long_attention.py writes it)",
              file=sys.stderr)
        return 2
    emit(run_point(json.loads(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
