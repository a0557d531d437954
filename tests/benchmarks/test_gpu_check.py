"""benchmarks/gpu_check.py on the CPU: every check runs (--quick) and reports one row; failures become rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.benchmarks.conftest import BENCHMARKS

FAMILIES = ("gpt2", "gpt1", "bert", "encoder-decoder", "marian")


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), *args, "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    return done, json.loads(out.read_text()) if out.exists() else {}


@pytest.mark.slow  # 30-70 s on two shared cores: five parity families, generation, a training step, a fine-tune
def test_cpu_quick_run_reports_every_check_and_passes(tmp_path: Path) -> None:
    done, result = _run(tmp_path, "--device", "cpu", "--quick", "--no-compile")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["check"]: row for row in result["rows"]}
    parity = [f"parity {family} {precision}" for family in FAMILIES for precision in ("fp32", "bf16")]
    cache = [f"generate {family} cached == uncached" for family in FAMILIES if family != "bert"]
    expected = [*parity, *cache, "train gpt2-tiny bf16", "decode b1 static", "decode b8 static", "finetune sst2",
                "ddp 2 processes", "fsdp 2 processes", "train fp16 (GradScaler, fused AdamW)"]
    assert list(rows) == expected
    for name in parity:
        assert rows[name]["result"] == "pass" and "vs float64 CPU" in rows[name]["figure"]
    for name in (*cache, "train gpt2-tiny bf16", "decode b1 static", "decode b8 static", "finetune sst2"):
        assert rows[name]["result"] == "pass", rows[name]
    assert "MFU" in rows["train gpt2-tiny bf16"]["figure"] and "ids == uncached" in rows["decode b8 static"]["figure"]
    assert "head change" in rows["finetune sst2"]["figure"]
    for name in ("ddp 2 processes", "fsdp 2 processes", "train fp16 (GradScaler, fused AdamW)"):
        assert rows[name]["result"] == "skipped" and "--device cpu" in rows[name]["figure"]
    assert result["passed"] and result["device"] == "cpu" and result["quick"]
    table = done.stdout.splitlines()
    assert "| check | result | figure | seconds |" in table
    assert sum(line.startswith("| parity ") for line in table) == len(parity)
    assert table[-1] == f"{len(expected)} of {len(expected)} checks passed or skipped."


def test_a_failing_check_is_a_row_with_its_reason_and_the_exit_status_is_1(tmp_path: Path, monkeypatch) -> None:
    import gpu_check

    def broken() -> tuple[bool, str]:
        raise RuntimeError("CUDA error: no kernel image\nsecond line")

    def skipped() -> tuple[bool, str]:
        raise gpu_check.gpu_check_runs.Skipped("needs 2 GPUs, this machine has 1")

    rows = [gpu_check.run_check("broken", broken), gpu_check.run_check("two gpus", skipped),
            gpu_check.run_check("fine", lambda: (True, "1.0 tokens/s"))]
    assert [(r.result, r.passed) for r in rows] == [("error", False), ("skipped", True), ("pass", True)]
    assert rows[0].figure == "RuntimeError: CUDA error: no kernel image"
    monkeypatch.setattr(gpu_check, "run_all", lambda *args: rows)
    assert gpu_check.main(["--device", "cpu", "--json", str(tmp_path / "rows.json")]) == 1
    written = json.loads((tmp_path / "rows.json").read_text())
    assert not written["passed"] and [r["result"] for r in written["rows"]] == ["error", "skipped", "pass"]


def test_parity_fails_beyond_its_tolerance() -> None:
    import gpu_check

    config = gpu_check.parity_configs(quick=True)["gpt2"]
    torch.manual_seed(0)
    model = gpu_check.tformer.build_model(config).eval()
    inputs = gpu_check.parity_inputs(config, 16)
    reference = gpu_check._kept_logits(model, inputs, None)
    assert gpu_check._parity(model, inputs, reference, None, gpu_check.FP32_TOLERANCE, "itself")[0]
    shifted = reference.clone()
    shifted[0, 0] += 1e-3  # one logit off by more than the float32 bar
    ok, figure = gpu_check._parity(model, inputs, shifted, None, gpu_check.FP32_TOLERANCE, "shifted")
    assert not ok and "max abs diff 1.0e-03" in figure


def test_parity_inputs_pad_the_second_row_and_only_kept_positions_count() -> None:
    import gpu_check

    config = gpu_check.parity_configs(quick=True)["bert"]
    inputs = gpu_check.parity_inputs(config, 16)
    assert inputs["attention_mask"][0].all() and inputs["attention_mask"][1].tolist() == [1] * 12 + [0] * 4
    assert (inputs["input_ids"][1, 12:] == config.pad_token_id).all()
    model = gpu_check.tformer.build_model(config).eval()
    assert gpu_check._kept_logits(model, inputs, None).shape == (16 + 12, config.vocab_size)


@pytest.mark.slow  # a torchrun launch of two gloo processes and one plain run: 20-40 s on two cores
def test_the_data_parallel_check_compares_two_processes_with_one(monkeypatch) -> None:
    import gpu_check_runs

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ok, figure = gpu_check_runs.compare_parallel_runs("ddp", "cpu")  # the GPU check's code, on gloo
    assert ok, figure
    assert figure.startswith("gloo, 2 processes: loss ") and "(6 logged)" in figure
    assert "largest loss gap to 1 process" in figure


def test_the_cache_check_fails_when_cached_ids_differ(monkeypatch) -> None:
    import gpu_check
    import gpu_check_cache

    config = gpu_check.parity_configs(quick=True)["gpt2"]
    ids, mask = gpu_check_cache.padded_prompts(config, 3, 12)
    assert mask[:2].all() and mask[2].tolist() == [0] * 3 + [1] * 9  # decoder-only prompts: left padding
    source_mask = gpu_check_cache.padded_prompts(gpu_check.parity_configs(quick=True)["marian"], 3, 12)[1]
    assert source_mask[2].tolist() == [1] * 9 + [0] * 3  # an encoder's source: right padding
    real = gpu_check_cache.tformer.generate

    def off_by_one_when_cached(model, input_ids, attention_mask, **kwargs):  # noqa: ANN001, ANN202
        out = real(model, input_ids, attention_mask, **kwargs)
        if kwargs["use_cache"] and kwargs["num_beams"] == 4:
            out[0, -1] = (out[0, -1] + 1) % config.vocab_size
        return out

    monkeypatch.setattr(gpu_check_cache.tformer, "generate", off_by_one_when_cached)
    ok, figure = gpu_check_cache.check_cached_generation(config, torch.device("cpu"), 4)
    assert not ok and figure.startswith("greedy ==, beam4 != uncached")
