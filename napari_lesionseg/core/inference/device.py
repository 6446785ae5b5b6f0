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
