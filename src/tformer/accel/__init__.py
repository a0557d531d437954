"""accel: speed-ups that hold on one platform only, applied to a model in one place, off with one flag.

`apply(model)` (in place, idempotent) gives each `nn.Linear` the CPU paths of `cpu_linear.py` (the few-rows
product at inference, the bf16 fallback in training) with the same parameters and state dict; `applied(model)`
does it for a `with` block. `tformer.generate` runs with it applied (`during_call`) and the Trainer applies it to
the model it trains; the compiled decoding step (`compiled_decode.py`) uses its reduction backend when it is on.
`TFORMER_ACCEL=0` (or `enabled=False`) switches all of it off: plain PyTorch, exactly. `layers/` and `models/`
never import this package.
"""

from tformer.accel.compiled_decode import compile_available, run_step
from tformer.accel.cpu_linear import AcceleratedLinear
from tformer.accel.transform import ENV_FLAG, AcceleratedMaskedLMHead, applied, apply, during_call, enabled

__all__ = ["ENV_FLAG", "AcceleratedLinear", "AcceleratedMaskedLMHead", "applied", "apply", "compile_available",
           "during_call", "enabled", "run_step"]
