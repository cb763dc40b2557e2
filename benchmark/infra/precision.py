"""Which floating-point format the convolutions run in: ``precision=auto|fp32|bf16``.

bf16 autocast (weights, optimizer state and the loss stay float32; convolutions and the
feature maps between them run in bfloat16) is the fast path wherever the hardware multiplies
bf16 natively: CUDA GPUs with bf16 support, and CPUs with Intel AMX tiles (Sapphire Rapids and
later), where oneDNN's bf16 convolutions measured 2.5-3.4x the float32 ones on one core
(``python -m benchmark.bench``). Elsewhere bf16 is emulated and slower than float32, so
``auto`` picks bf16 only where it is native. One implementation for both pipelines.
"""

from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where this CPU has AMX tiles that oneDNN uses for bf16 convolutions."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
                    and torch._C._cpu._init_amx())  # private, but the one probe torch has; absent means "no"
    except (AttributeError, RuntimeError):
        return False


def resolve(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``device``; ``auto``: bf16 where the hardware has it natively."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """The context the forward passes run in: bf16 autocast, or nothing for fp32 (a resolved precision)."""
    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
