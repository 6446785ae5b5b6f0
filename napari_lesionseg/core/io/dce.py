"""DCE-MRI helpers: subtraction (post − pre) and percentage enhancement, as derived scans on the same grid.

Enhancing lesions are what a radiologist looks for; they stand out far better in post − pre than in either phase.
Both results carry the post-contrast scan's Geometry (affine and header), so masks drawn on them save correctly.
"""

from __future__ import annotations

import numpy as np

from ..errors import LesionSegError
from .scan import Scan


def _phase_arrays(post: Scan, pre: Scan) -> tuple[np.ndarray, np.ndarray]:
    if post.multiscale or pre.multiscale or post.rgb or pre.rgb:
        raise LesionSegError("Subtraction needs two grayscale MRI phases, not slides or colour images.")
    a, b = np.asarray(post.data), np.asarray(pre.data)
    if a.shape != b.shape:
        raise LesionSegError(f"The two phases have different shapes {a.shape} and {b.shape}; they must share one grid.")
    ga, gb = post.geometry, pre.geometry
    if ga.nifti_affine is not None and gb.nifti_affine is not None:
        if not np.allclose(ga.nifti_affine, gb.nifti_affine, atol=1e-3):
            raise LesionSegError("The two phases are not on the same grid (different affines); register them first.")
    elif not np.allclose(ga.spacing, gb.spacing, rtol=1e-4):
        raise LesionSegError(f"The two phases have different spacings {ga.spacing} and {gb.spacing}.")
    return a, b


def subtraction_array(post: np.ndarray, pre: np.ndarray) -> np.ndarray:
    return np.asarray(post, dtype=np.float32) - np.asarray(pre, dtype=np.float32)


def percentage_enhancement_array(post: np.ndarray, pre: np.ndarray, min_pre: float | None = None) -> np.ndarray:
    """100 · (post − pre) / pre, set to 0 where pre is background (≤ `min_pre`, default 5% of pre's 99th percentile)."""
    pre_f = np.asarray(pre, dtype=np.float32)
    post_f = np.asarray(post, dtype=np.float32)
    if min_pre is None:
        p99 = float(np.percentile(pre_f, 99)) if pre_f.size else 0.0
        min_pre = max(0.05 * p99, 1e-6)
    out = np.zeros_like(pre_f)
    ok = pre_f > min_pre
    out[ok] = 100.0 * (post_f[ok] - pre_f[ok]) / pre_f[ok]
    return out


def _derived(post: Scan, data: np.ndarray, name: str, kind: str) -> Scan:
    geom = post.geometry.copy(extra={**post.geometry.extra, "derived": kind})
    lo, hi = np.percentile(data, [1, 99.5]) if data.size else (0.0, 1.0)
    return Scan(data=data, geometry=geom, modality="mri", name=name, axes=post.axes,
                contrast_limits=(float(min(lo, 0.0)), float(hi if hi > lo else lo + 1)),
                metadata={"derived": kind})


def subtraction(post: Scan, pre: Scan) -> Scan:
    """post − pre (float32) on post's geometry."""
    a, b = _phase_arrays(post, pre)
    return _derived(post, subtraction_array(a, b), f"{post.name} - {pre.name}", "subtraction")


def percentage_enhancement(post: Scan, pre: Scan, min_pre: float | None = None) -> Scan:
    """Relative enhancement in % on post's geometry (background where pre is dark is 0)."""
    a, b = _phase_arrays(post, pre)
    return _derived(post, percentage_enhancement_array(a, b, min_pre), f"{post.name} enhancement %", "enhancement")


def phases_from_4d(scan: Scan) -> list[Scan]:
    """Split a (t, z, y, x) DCE scan into one 3D Scan per phase (pre first), all on the same geometry."""
    if scan.axes != "tzyx":
        raise LesionSegError(f"Expected a 4D (time, z, y, x) scan, got axes {scan.axes!r}.")
    return [Scan(data=np.asarray(scan.data[t]), geometry=scan.geometry, modality=scan.modality,
                 name=f"{scan.name} phase {t}", axes="zyx") for t in range(scan.data.shape[0])]
