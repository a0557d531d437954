"""The fast path: a static (pre-allocated) KV cache, eager and compiled, gives what the dynamic cache gives."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

import tformer
from tests.generation.conftest import Pair
from tformer import accel
from tformer.accel import compiled_decode
from tformer.accel.compiled_decode import CompiledSteps
from tformer.generation import DecoderState
from tformer.generation.static import StaticDecoderState

ATOL = 1e-5


def _generate(pair: Pair, **kwargs: Any) -> Any:
    kwargs = {"max_new_tokens": 8, "eos_token_id": [], "return_scores": True, **kwargs}
    return tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, **kwargs)


def test_static_and_dynamic_cache_give_the_same_logits_at_every_step(pair: Pair) -> None:
    fast = StaticDecoderState(pair.ours, pair.input_ids, pair.attention_mask, copies=2, max_new_tokens=10)
    dynamic = DecoderState(pair.ours, pair.input_ids, pair.attention_mask, copies=2, use_cache=True)
    with torch.no_grad():
        for step in range(10):
            a, b = fast.next_logits(), dynamic.next_logits()
            assert (a - b).abs().max() < ATOL, step
            sampled = torch.multinomial(a.softmax(-1), 1, generator=torch.Generator().manual_seed(step)).squeeze(1)
            fast.append(sampled)
            dynamic.append(sampled)
    assert torch.equal(fast.tokens, dynamic.tokens)


@pytest.mark.parametrize("args", [dict(), dict(do_sample=True, seed=0, temperature=1.5, num_return_sequences=2),
                                  dict(do_sample=True, seed=3, top_k=5, top_p=0.9),
                                  dict(eos_token_id=5, max_new_tokens=20)],
                         ids=["greedy", "sampling", "top-k-top-p", "eos"])
def test_static_cache_gives_the_ids_and_scores_of_the_dynamic_cache(pair: Pair, args: dict[str, Any]) -> None:
    """Greedy and seeded sampling over a left-padded batch: same ids, same scores."""
    fast = _generate(pair, **{"cache_implementation": "static", **args})
    dynamic = _generate(pair, **{"cache_implementation": "dynamic", **args})
    default = _generate(pair, **args)
    assert torch.equal(fast.sequences, dynamic.sequences) and torch.equal(default.sequences, fast.sequences)
    assert (fast.scores - dynamic.scores).abs().max() < ATOL


def test_static_cache_is_refused_where_it_does_not_apply(pair: Pair) -> None:
    with pytest.raises(ValueError, match="cache_implementation"):
        _generate(pair, cache_implementation="paged")
    with pytest.raises(ValueError, match="use_cache=False"):
        _generate(pair, cache_implementation="static", use_cache=False)


@pytest.mark.parametrize("args", [dict(num_beams=3), dict(num_beams=2, do_sample=True, seed=1)],
                         ids=["beam", "beam-sampling"])
def test_beam_search_on_the_static_cache_gives_the_dynamic_ids_and_scores(pair: Pair, args: dict[str, Any]) -> None:
    """Beams reordered in place in the static cache: the N-best lists of the dynamic cache."""
    fast = _generate(pair, cache_implementation="static", num_return_sequences=2, **args)
    dynamic = _generate(pair, cache_implementation="dynamic", num_return_sequences=2, **args)
    assert torch.equal(fast.sequences, dynamic.sequences)
    assert (fast.scores - dynamic.scores).abs().max() < ATOL


def test_prompt_ids_are_checked_once_at_the_start(pair: Pair) -> None:
    bad = pair.input_ids.clone()
    bad[0, 0] = pair.ours.config.vocab_size
    with pytest.raises(ValueError, match=f"token id {pair.ours.config.vocab_size}"):
        tformer.generate(pair.ours, bad, pair.attention_mask, max_new_tokens=2)


def test_a_failing_compiler_falls_back_with_one_warning(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    steps = CompiledSteps()
    monkeypatch.setattr(steps, "compiled", lambda *args: broken)
    monkeypatch.setattr(compiled_decode, "STEPS", steps)
    expected = _generate(pair, compile=False)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable .*No working C\\+\\+ compiler") as record:
        fallback = _generate(pair, compile=True)
    assert len(record) == 1
    assert torch.equal(fallback.sequences, expected.sequences)
    assert not compiled_decode.compile_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _generate(pair, compile=True)  # once failed, the process stays eager without warning again


@pytest.fixture
def fresh_dynamo() -> Any:
    """dynamo's caches emptied before and after: the stand-in graphs must not use up the step's recompile limit."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(("accel_flag", "few_rows_slow"), [("1", True), ("1", False), ("0", True)],
                         ids=["accel", "accel-cpu-without-slow-few-rows", "accel-off"])
@pytest.mark.usefixtures("fresh_dynamo")
def test_compile_true_compiles_once_per_model_and_gives_the_eager_tokens(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, accel_flag: str, few_rows_slow: bool) -> None:
    """Two generate calls, one compilation (kept per model, not per call); the accel flag and the CPU pick the
    backend. The backend here is a counting stand-in that runs the traced graph eagerly (the real one: the slow
    test below)."""
    monkeypatch.setenv("TFORMER_ACCEL", accel_flag)
    monkeypatch.setattr(compiled_decode, "few_rows_slow", lambda: few_rows_slow)
    backends: list[str] = []

    def counting(name: str) -> Any:
        def backend(graph: Any, example_inputs: Any) -> Any:
            backends.append(name)
            return graph.forward
        return backend

    monkeypatch.setattr(compiled_decode, "inductor_backend", counting("accel"))
    monkeypatch.setattr(compiled_decode, "STEPS", CompiledSteps())
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda step, backend, **kw: real_compile(
        step, backend=counting("inductor") if backend == "inductor" else backend, **kw))
    eager = _generate(pair, max_new_tokens=6)
    for _ in range(2):
        compiled = _generate(pair, max_new_tokens=6, compile=True)
        assert torch.equal(compiled.sequences, eager.sequences)
        assert (compiled.scores - eager.scores).abs().max() < ATOL
    assert backends == ["accel" if accel_flag == "1" and few_rows_slow else "inductor"]
    assert compiled_decode.compile_available()


@pytest.mark.slow
def test_compiled_step_gives_the_ids_and_logits_of_the_eager_step(pair: Pair) -> None:
    """torch.compile (inductor, single-row products as reductions) on this CPU: same ids, logits within 1e-4."""
    if not compiled_decode.compile_available():
        pytest.skip("torch.compile failed earlier in this process")
    single = dict(input_ids=pair.input_ids[1:], attention_mask=pair.attention_mask[1:])  # left-padded, one row
    for inputs in (single, dict(input_ids=pair.input_ids, attention_mask=pair.attention_mask)):
        args = dict(max_new_tokens=8, eos_token_id=[], return_scores=True)
        eager = tformer.generate(pair.ours, **inputs, **args)
        compiled = tformer.generate(pair.ours, **inputs, **args, compile=True)
        assert compiled_decode.compile_available(), "torch.compile failed on this machine"
        assert torch.equal(compiled.sequences, eager.sequences)
        assert (compiled.scores - eager.scores).abs().max() < 1e-4
        graphs = counters["stats"]["unique_graphs"]
        fast = StaticDecoderState(pair.ours, inputs["input_ids"], inputs["attention_mask"], copies=1,
                                  max_new_tokens=6, compile=True)
        slow = StaticDecoderState(pair.ours, inputs["input_ids"], inputs["attention_mask"], copies=1,
                                  max_new_tokens=6)
        # The model as generate() runs it (accel applied for the call), so the step compiled there is the one reused.
        with torch.no_grad(), accel.applied(pair.ours):
            for _ in range(6):
                a, b = fast.next_logits(), slow.next_logits()
                assert (a - b).abs().max() < 1e-4
                fast.append(a.argmax(-1))
                slow.append(a.argmax(-1))
        # Same model, rows and cache size, another buffer width: the compiled step is reused, not recompiled.
        assert counters["stats"]["unique_graphs"] == graphs
