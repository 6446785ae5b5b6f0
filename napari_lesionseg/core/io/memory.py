"""Refuse a file whose header claims more pixels than this computer can hold, before allocating them.

A damaged or hostile header (a NIfTI claiming 100000³ voxels) would otherwise end in a MemoryError deep inside the
reader, or in the system killing the process; the user gets a message naming the claimed size instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import LesionSegError


def available_memory() -> int:
    """Bytes that can be allocated without swapping: MemAvailable on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def check_fits_in_memory(shape: Sequence[int], dtype, what: str, copies: int = 2) -> None:
    """Raise LesionSegError when `copies` arrays of `shape` × `dtype` exceed the available memory.

    copies: how many arrays of that size reading holds at once (the data and its reordered copy)."""
    voxels = 1
    for n in shape:
        voxels *= max(int(n), 0)
    need = voxels * np.dtype(dtype).itemsize
    avail = available_memory()
    if need * copies > avail:
        dims = " × ".join(str(int(n)) for n in shape)
        raise LesionSegError(
            f"{what}: its header claims {dims} voxels of {np.dtype(dtype).name} ({human_bytes(need)}), more than "
            f"this computer's free memory ({human_bytes(avail)}) can hold. Is the file damaged? A scan this large "
            "must be cropped or downsampled first.")
