"""The line's own frame: a square grid centred on a diameter line, rotated so the line is horizontal.

Both line-to-mask methods work in this frame. Whatever the image's size, pixel spacing or the line's angle, the
lesion then always spans the same columns of the same small grid (the line from column S/4 to 3S/4 on the
middle row): the learned model sees one canonical problem and the classical one needs no per-image scale.
The frame is built in millimetres, so anisotropic pixels are handled by the same affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import LesionSegError

FRAME_SIZE = 128
"""Side of the canonical grid; the line covers half of it."""


@dataclass
class LineFrame:
    """Affine map between the canonical grid (row, col) and 2D array indices (y, x) of one slice."""

    centre: np.ndarray  # array indices (y, x) of the line's midpoint
    u: np.ndarray  # unit vector along the line, in mm (y, x)
    v: np.ndarray  # unit vector across the line, in mm (y, x)
    step_mm: float  # size of one canonical pixel in mm
    spacing: np.ndarray  # mm per array pixel (y, x)
    size: int = FRAME_SIZE

    @classmethod
    def from_line(cls, p0, p1, spacing=(1.0, 1.0), size: int = FRAME_SIZE) -> "LineFrame":
        p0 = np.asarray(p0, float)[-2:]
        p1 = np.asarray(p1, float)[-2:]
        sp = np.asarray(spacing, float)[-2:]
        d_mm = (p1 - p0) * sp
        length = float(np.hypot(*d_mm))
        if not np.isfinite(length) or length < 1e-6:
            raise LesionSegError("The line has zero length: draw it across the lesion, from one edge to the other.")
        u = d_mm / length
        v = np.array([u[1], -u[0]])
        return cls(centre=(p0 + p1) / 2, u=u, v=v, step_mm=length / (size / 2), spacing=sp, size=size)

    @property
    def length_mm(self) -> float:
        return self.step_mm * self.size / 2

    def line_ends(self) -> np.ndarray:
        """The line's two ends on the grid (row, col): the middle row, columns S/4 and 3S/4."""
        c = (self.size - 1) / 2
        return np.array([[c, c - self.size / 4], [c, c + self.size / 4]])

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) with array_index = A @ (row, col) + b."""
        c = (self.size - 1) / 2
        A = np.stack([self.v * self.step_mm / self.spacing, self.u * self.step_mm / self.spacing], axis=1)
        b = self.centre - A @ np.array([c, c])
        return A, b

    def to_array(self, rc: np.ndarray) -> np.ndarray:
        A, b = self.matrix()
        return np.asarray(rc, float) @ A.T + b

    def to_frame(self, yx: np.ndarray) -> np.ndarray:
        A, b = self.matrix()
        return (np.asarray(yx, float) - b) @ np.linalg.inv(A).T

    def sample(self, image2d: np.ndarray, order: int = 1, cval: float | None = None) -> np.ndarray:
        """The image resampled on the canonical grid (pixels outside the image take `cval`, default the median)."""
        A, b = self.matrix()
        box = self.footprint(image2d.shape[-2:], margin=4)
        if box[0].stop <= box[0].start or box[1].stop <= box[1].start:
            return np.full((self.size,) * 2, 0.0 if cval is None else cval, np.float32)
        crop = np.asarray(image2d[box], np.float32)
        if cval is None:
            cval = float(np.median(crop[::4, ::4]))
        b = b - np.array([box[0].start, box[1].start])
        if order > 0 and min(self.step_mm / self.spacing) > 1.5:
            # Shrinking a lot: smooth first so the small grid does not alias speckle.
            sigma = np.clip(0.4 * self.step_mm / self.spacing, 0, 8)
            crop = ndi.gaussian_filter(crop, sigma)
        return ndi.affine_transform(crop, A, offset=b, output_shape=(self.size,) * 2,
                                    order=order, mode="constant", cval=cval)

    def footprint(self, shape: tuple[int, int], margin: float = 1.0, within=None) -> tuple[slice, slice]:
        """Bounding box (clipped to the image) of the part of the array the grid covers.

        within: (r0, r1, c0, c1) to cover only that window of the grid (e.g. where a mask can be).
        """
        r0, r1, c0, c1 = (0, self.size - 1, 0, self.size - 1) if within is None else within
        corners = self.to_array(np.array([[r0, c0], [r0, c1], [r1, c0], [r1, c1]], float))
        lo = np.maximum(np.floor(corners.min(0) - margin), 0).astype(int)
        hi = np.minimum(np.ceil(corners.max(0) + margin) + 1, shape).astype(int)
        return slice(lo[0], hi[0]), slice(lo[1], hi[1])

    def paste(self, frame_values: np.ndarray, shape: tuple[int, int], order: int = 1, within=None):
        """Bring a map on the canonical grid back to the array: (values on the footprint box, the box)."""
        box = self.footprint(shape, within=within)
        A, b = self.matrix()
        M = np.linalg.inv(A)
        start = np.array([box[0].start, box[1].start], float)
        vals = ndi.affine_transform(np.asarray(frame_values, np.float32), M, offset=M @ (start - b),
                                    output_shape=(box[0].stop - box[0].start, box[1].stop - box[1].start),
                                    order=order, mode="constant", cval=0.0)
        return vals, box


def longest_diameter(mask2d: np.ndarray, spacing=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints (y, x) of the longest chord of a 2D mask, in mm when spacing is given (RECIST's long axis)."""
    from scipy.spatial import ConvexHull, QhullError

    m = np.asarray(mask2d, bool)
    pts = np.argwhere(m ^ ndi.binary_erosion(m)).astype(float)
    if len(pts) < 2:
        raise LesionSegError("The mask is empty: there is no diameter to measure.")
    sp = np.asarray(spacing, float)
    try:
        hull = pts[ConvexHull(pts * sp).vertices]
    except (QhullError, ValueError):
        hull = pts
    d = ((hull[:, None, :] - hull[None, :, :]) * sp) ** 2
    i, j = np.unravel_index(np.argmax(d.sum(-1)), d.shape[:2])
    return hull[i], hull[j]


def short_axis(mask2d: np.ndarray, p0, p1, spacing=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray] | None:
    """RECIST's short axis: the longest chord of the mask perpendicular to the line p0–p1."""
    fr = LineFrame.from_line(p0, p1, spacing)
    m = fr.sample(np.asarray(mask2d, np.float32), order=1, cval=0.0) > 0.5
    cols = np.flatnonzero(m.any(0))
    if len(cols) == 0:
        return None
    best, ends = -1, None
    for c in cols:
        rows = np.flatnonzero(m[:, c])
        if rows[-1] - rows[0] > best:
            best, ends = rows[-1] - rows[0], (np.array([rows[0], c], float), np.array([rows[-1], c], float))
    return fr.to_array(ends[0]), fr.to_array(ends[1])


def one_blas_thread():
    """Context manager: one BLAS thread. The random walker's conjugate gradient does hundreds of dot products on
    small vectors; OpenBLAS threads spinning for them on a busy CPU make a 0.1 s solve take seconds."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - listed in the dependencies
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
