"""Device choice (CUDA → MPS → CPU), mixed precision on GPU, and the out-of-memory fallback policy."""

from __future__ import annotations

import contextlib

import torch


def available_devices() -> list[str]:
    devs = ["auto"]
    if torch.cuda.is_available():
        devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devs.append("mps")
    devs.append("cpu")
    return devs


def resolve_device(name: str | None = "auto") -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        from ..errors import LesionSegError

        raise LesionSegError(f"Unknown device {name!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        from ..errors import LesionSegError

        raise LesionSegError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    return dev


def autocast(device: torch.device):
    """Mixed precision where it pays (CUDA: fp16, MPS: fp16); plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "mps":
        return torch.autocast("mps", dtype=torch.float16)
    return contextlib.nullcontext()


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def training_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for training, or None for plain fp32. "auto": fp16 on CUDA (with a gradient scaler),
    bf16 on a CPU with native bf16 (AVX-512 BF16/AMX: with channels-last, 2.4x the images/s of fp32 at 224 px,
    benchmarks/bench_training_throughput.py), fp32 elsewhere (MPS, older CPUs)."""
    if precision == "fp32":
        return None
    if precision not in ("auto", "bf16", "fp16"):
        from ..errors import LesionSegError

        raise LesionSegError(f"Unknown precision {precision!r}; choose auto, fp32, bf16 or fp16.")
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu":
        supported = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
        return torch.bfloat16 if supported and precision in ("auto", "bf16") else None
    return None
