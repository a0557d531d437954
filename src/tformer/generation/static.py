"""The fast path of decoder-only greedy decoding and sampling: a static KV cache and a compiled decoding step.

`StaticDecoderState` does what `DecoderState` does for greedy decoding and sampling, with fixed shapes: the
tokens live in a buffer of the final length, the keys/values in a `StaticKVCache` sized once, and each decoding
step feeds one token per row at a tensor position (`cache_position`). Nothing in a step depends on a Python-side
length or reads a value back from the device, so the one-token step can be compiled once with torch.compile and
replayed for every token.

The compiled step goes through inductor with one change: a matrix product with a single row (batch-1 decoding,
where every weight is read once per token and memory bandwidth is the limit) becomes a multiply-and-sum that
inductor turns into a vectorised reduction over both cores, instead of a one-core BLAS matrix-vector product.
Where torch.compile cannot run (no C++ compiler, an unsupported platform), the step runs eagerly after a one-line
warning, with the same results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

SLOT_BUCKET = 64  # cache sizes are rounded up to this, so prompts of similar lengths share one compiled step
MATVEC_MAX_ROWS = 1  # matrix products with at most this many rows become reductions in the compiled step

_compiled_step: Callable[..., Tensor] | None = None
_compile_failed: str | None = None  # why torch.compile did not work here, once it failed


def can_use_static_cache(model: nn.Module) -> bool:
    """True for decoder-only models that offer a pre-allocated cache (GPT)."""
    return callable(getattr(model, "new_static_cache", None)) and not callable(getattr(model, "encode", None))


def _logits_step(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None,
                 cache_position: Tensor, cache: Any) -> Tensor:
    """One forward over the new tokens at slots `cache_position`: float32 logits (rows, vocab) of the last one."""
    out = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                cache_position=cache_position, logits_to_keep=1)
    return out.logits[:, -1].float()


def _matvec_as_reduction(a: Tensor, b: Tensor) -> Tensor | Any:
    """a (rows, k) @ b (k, n) with few rows as sum(a[:, :, None] * b, 1): one fused reduction kernel."""
    if a.size(0) <= MATVEC_MAX_ROWS and a.dtype == b.dtype == torch.float32 and a.device.type == "cpu":
        return (a[:, :, None] * b[None, :, :]).sum(dim=1)
    return NotImplemented


def _inductor_backend(graph: Any, example_inputs: Any) -> Any:
    """inductor, with single-row matrix products (and their bias) written as reductions."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    aten = torch.ops.aten
    table = dict(select_decomp_table())
    default_mm, default_addmm = table.get(aten.mm.default), table.get(aten.addmm.default)

    def mm(a: Tensor, b: Tensor, *args: Any, **kwargs: Any) -> Any:
        out = _matvec_as_reduction(a, b) if not args and not kwargs else NotImplemented
        return out if out is not NotImplemented or default_mm is None else default_mm(a, b, *args, **kwargs)

    def addmm(bias: Tensor, a: Tensor, b: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Any:
        out = _matvec_as_reduction(a, b) if beta == 1 and alpha == 1 else NotImplemented
        if out is not NotImplemented:
            return out + bias
        return NotImplemented if default_addmm is None else default_addmm(bias, a, b, beta=beta, alpha=alpha)

    table[aten.mm.default], table[aten.addmm.default] = mm, addmm
    return compile_fx(graph, example_inputs, decompositions=table)


def compile_available() -> bool:
    """False once torch.compile has failed in this process (the fast path then runs eagerly)."""
    return _compile_failed is None


def _step(compile: bool) -> Callable[..., Tensor]:
    global _compiled_step
    if not compile or _compile_failed is not None:
        return _logits_step
    if _compiled_step is None:
        _compiled_step = torch.compile(_logits_step, backend=_inductor_backend, fullgraph=True, dynamic=False)
    return _compiled_step


def _run_step(compile: bool, *args: Any) -> Tensor:
    global _compile_failed
    step = _step(compile)
    if step is _logits_step:
        return step(*args)
    try:
        return step(*args)
    except Exception as error:  # no C++ compiler, unsupported platform...: the eager step gives the same result
        _compile_failed = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        warnings.warn(f"torch.compile is unavailable ({_compile_failed[:200]}); generating without it",
                      RuntimeWarning, stacklevel=4)
        return _logits_step(*args)


class StaticDecoderState:
    """Decoder-only rows (batch * copies, length) continued one token per step with a `StaticKVCache`.

    The same interface as `DecoderState` for greedy decoding and sampling (`tokens`, `length`, `next_logits`,
    `append`); no beam reordering. The prompt is read once (prefill, eagerly: its length varies); every later step
    feeds the last token of each row at slot `length - 1`, compiled when `compile` is true.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 max_new_tokens: int, compile: bool = False) -> None:
        self.model, self.compile = model, compile
        rows, prompt_len = input_ids.size(0) * copies, input_ids.size(1)
        device = input_ids.device
        slots = prompt_len + max_new_tokens - 1  # the last new token is never fed back
        slots = -(-slots // SLOT_BUCKET) * SLOT_BUCKET
        self.cache = model.new_static_cache(rows, slots, device=device)
        self.buffer = input_ids.new_zeros(rows, prompt_len + max_new_tokens)
        self.buffer[:, :prompt_len] = input_ids.repeat_interleave(copies, dim=0)
        self._length = prompt_len
        self.prefilled = False
        padded = attention_mask is not None and not bool(attention_mask.all())  # once, at the start
        self.mask: Tensor | None = None
        self.positions: Tensor | None = None  # the position of each row's next token (rows, 1), padding only
        if padded:
            assert attention_mask is not None
            self.mask = torch.ones(rows, slots, dtype=torch.long, device=device)
            self.mask[:, :prompt_len] = attention_mask.repeat_interleave(copies, dim=0)
            # Left padding: each row's first real token is position 0 (pads are clamped to 0; no one sees them).
            self.prompt_positions = (self.mask[:, :prompt_len].cumsum(-1) - 1).clamp(min=0)
            self.positions = self.prompt_positions[:, -1:] + 1
        self.slot = torch.tensor([prompt_len], device=device)  # where the next fed token goes (advanced in place)

    @property
    def tokens(self) -> Tensor:
        return self.buffer[:, :self._length]

    @property
    def length(self) -> int:
        return self._length

    def next_logits(self) -> Tensor:
        """float32 logits (rows, vocab) of the token that follows each row."""
        if not self.prefilled:
            self.prefilled = True
            prompt_len = self._length
            slots = torch.arange(prompt_len, device=self.buffer.device)
            positions = self.prompt_positions if self.positions is not None else None
            return _logits_step(self.model, self.buffer[:, :prompt_len], self.mask, positions, slots, self.cache)
        last = self.buffer[:, self._length - 1:self._length].clone()  # a fresh (rows, 1) input of fixed layout
        logits = _run_step(self.compile, self.model, last, self.mask, self.positions, self.slot, self.cache)
        self.slot.add_(1)
        if self.positions is not None:
            self.positions.add_(1)
        return logits

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,)."""
        if parents is not None:
            raise ValueError("the static fast path does not reorder rows (beam search uses the dynamic cache)")
        self.buffer[:, self._length] = next_tokens
        self._length += 1
