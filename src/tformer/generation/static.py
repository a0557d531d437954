"""The fast path of decoding: a static KV cache and a compiled decoding step, for every family that generates.

`StaticDecoderState` does what `DecoderState` does, with fixed shapes: the tokens live in a buffer of the final
length, the keys/values in a `StaticKVCache` sized once, and each decoding step feeds one token per row at a
tensor position (`cache_position`). Nothing in a step depends on a Python-side length or reads a value back from
the device, so the one-token step can be compiled once with torch.compile and replayed for every token. Beam
search reorders the rows in place (same shapes).

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

from tformer.generation.state import Source, decoder_logits, prompt_of

SLOT_BUCKET = 64  # cache sizes are rounded up to this, so prompts of similar lengths share one compiled step
MATVEC_MAX_ROWS = 1  # matrix products with at most this many rows become reductions in the compiled step

_compiled_step: Callable[..., Tensor] | None = None
_compile_failed: str | None = None  # why torch.compile did not work here, once it failed


def can_use_static_cache(model: nn.Module) -> bool:
    """True for models that offer a pre-allocated cache (GPT, EncoderDecoder)."""
    return callable(getattr(model, "new_static_cache", None))


def _logits_step(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None,
                 cache_position: Tensor, cache: Any, source: Source | None = None) -> Tensor:
    """One forward over the new tokens at slots `cache_position`: float32 logits (rows, vocab) of the last one."""
    return decoder_logits(model, input_ids, attention_mask, position_ids, cache, cache_position, source)


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
    """Rows (batch * copies, length) continued one token per step with a `StaticKVCache`.

    The same interface as `DecoderState` (`tokens`, `length`, `next_logits`, `append`, `reorder`). The prompt is
    read once (prefill, eagerly: its length varies); every later step feeds the last token of each row at slot
    `length - 1`, compiled when `compile` is true. An encoder-decoder's decoder starts from its start token.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 max_new_tokens: int, compile: bool = False, decoder_start_token_id: int | None = None) -> None:
        self.model, self.compile = model, compile
        prompt = prompt_of(model, input_ids, attention_mask, copies, decoder_start_token_id)
        self.source = prompt.source
        rows, prompt_len = prompt.tokens.shape
        device = input_ids.device
        slots = prompt_len + max_new_tokens - 1  # the last new token is never fed back
        slots = -(-slots // SLOT_BUCKET) * SLOT_BUCKET
        self.cache = model.new_static_cache(rows, slots, device=device)
        self.buffer = prompt.tokens.new_zeros(rows, prompt_len + max_new_tokens)
        self.buffer[:, :prompt_len] = prompt.tokens
        self._length = prompt_len
        self.prefilled = False
        self.mask: Tensor | None = None
        self.positions: Tensor | None = None  # the position of each row's next token (rows, 1), padding only
        if prompt.mask is not None and prompt.position_ids is not None:
            self.mask = torch.ones(rows, slots, dtype=torch.long, device=device)
            self.mask[:, :prompt_len] = prompt.mask
            self.prompt_positions = prompt.position_ids
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
            return _logits_step(self.model, self.buffer[:, :prompt_len], self.mask, positions, slots, self.cache,
                                self.source)
        # A fresh (rows, 1) contiguous input: the same strides whatever the buffer's width, so no recompile.
        last = self.buffer[:, self._length - 1:self._length].clone(memory_format=torch.contiguous_format)
        logits = _run_step(self.compile, self.model, last, self.mask, self.positions, self.slot, self.cache,
                           self.source)
        self.slot.add_(1)
        if self.positions is not None:
            self.positions.add_(1)
        return logits

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,); beam search first names each row's parent row (rows,)."""
        if parents is not None:
            self.reorder(parents)
        self.buffer[:, self._length] = next_tokens
        self._length += 1

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows named by `rows` (rows,), in place: the tokens, masks, positions and cache of each
        surviving beam's parent (the encoded source needs none: a beam's parent is a beam of the same input)."""
        self.buffer.copy_(self.buffer.index_select(0, rows))
        for kept in (self.mask, self.positions):
            if kept is not None:
                kept.copy_(kept.index_select(0, rows))
        self.cache.reorder(rows)
