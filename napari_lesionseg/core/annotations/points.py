"""Points → masks: disks of a given radius, `exp(-a·d)` probability maps, and clicks that grow/shrink a mask.

Coordinates are array indices in napari axis order ((y, x) or (z, y, x)); distances are in millimetres when a
spacing is given (so a "3 mm disk" is round on anisotropic voxels), in pixels otherwise.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..errors import LesionSegError
from .frame import one_blas_thread


def _spacing(spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    sp = np.atleast_1d(np.asarray(spacing, float))
    sp = np.repeat(sp, ndim) if sp.size == 1 else sp[-ndim:]
    if sp.size != ndim or (sp <= 0).any():
        raise LesionSegError(f"Invalid pixel spacing {spacing!r}.")
    return sp


def check_points(points, shape: tuple[int, ...], what: str = "Point") -> np.ndarray:
    """(N, D) float array of points inside the image; a clear error for an empty list or a point outside."""
    pts = np.asarray(points, float)
    if pts.size == 0:
        raise LesionSegError("There are no points: click on each lesion (Points layer) first.")
    pts = np.atleast_2d(pts)
    if pts.shape[1] != len(shape):
        raise LesionSegError(f"Points have {pts.shape[1]} coordinates but the image is {len(shape)}-D ({shape}).")
    if not np.isfinite(pts).all():
        raise LesionSegError("A point has a non-finite coordinate.")
    bad = np.flatnonzero(((pts < -0.5) | (pts > np.asarray(shape) - 0.5)).any(1))
    if len(bad):
        i = int(bad[0])
        raise LesionSegError(f"{what} {i + 1} at {np.round(pts[i], 1).tolist()} lies outside the image "
                             f"(shape {list(shape)}).")
    return pts


def _local_box(p, reach_px, shape):
    lo = np.maximum(np.floor(p - reach_px).astype(int), 0)
    hi = np.minimum(np.ceil(p + reach_px).astype(int) + 1, shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _distance_in_box(p, box, sp) -> np.ndarray:
    grids = np.ogrid[box]
    return np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, p, sp)))


def points_to_disks(shape: tuple[int, ...], points, radius: float, spacing=None, labels: bool = True) -> np.ndarray:
    """Disks (balls in 3D) of `radius` around each point: mm when spacing is given, else pixels.

    labels=True: point i gets value i+1 (the first point wins where disks overlap); False: one binary mask.
    """
    if not radius or radius <= 0:
        raise LesionSegError(f"The disk radius must be positive (got {radius}).")
    shape = tuple(int(s) for s in shape)
    pts = check_points(points, shape)
    sp = _spacing(spacing, len(shape))
    out = np.zeros(shape, np.int32 if labels else bool)
    for i, p in enumerate(pts):
        box = _local_box(p, radius / sp, shape)
        disk = _distance_in_box(p, box, sp) <= radius
        if not disk.any():  # radius below half a pixel: still mark the pixel the point is on
            disk = _distance_in_box(p, box, sp) <= _distance_in_box(p, box, sp).min()
        view = out[box]
        if labels:
            view[disk & (view == 0)] = i + 1
        else:
            view[disk] = True
    return out


def points_to_heatmap(shape: tuple[int, ...], points, a: float, spacing=None, floor: float = 1e-4) -> np.ndarray:
    """Probability map max_i exp(-a · d_i) (d in mm with spacing, else pixels): 1 on each point, falling off.

    `a` sets the width: the map halves every ln(2)/a. Values below `floor` are set to 0 (keeps it sparse).
    """
    if not a or a <= 0:
        raise LesionSegError(f"The heat-map decay a must be positive (got {a}).")
    shape = tuple(int(s) for s in shape)
    pts = check_points(points, shape)
    sp = _spacing(spacing, len(shape))
    reach = np.log(1 / floor) / a
    out = np.zeros(shape, np.float32)
    for p in pts:
        box = _local_box(p, reach / sp, shape)
        v = np.exp(-a * _distance_in_box(p, box, sp)).astype(np.float32)
        v[v < floor] = 0
        np.maximum(out[box], v, out=out[box])
    return out


def _walk(sub, seeds, sp, beta) -> np.ndarray:
    from skimage.segmentation import random_walker

    if not (seeds == 0).any() or not (seeds == 2).any():
        return seeds == 1
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore")
        p = random_walker(sub, seeds, beta=beta, mode="cg_j", tol=1e-3, spacing=sp / sp.min(), return_full_prob=True)
    return (p[0] > 0.5) & (seeds >= 0)


def _keep_seeded(m: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    lab, _ = ndi.label(m)
    keep = np.unique(lab[seeds == 1])
    return np.isin(lab, keep[keep > 0])


def clicks_to_mask(image, positive: Sequence = (), negative: Sequence = (), *, mask=None, spacing=None,
                   reach: float | None = None, beta: float = 1000.0) -> np.ndarray:
    """Grow or shrink a lesion mask from the image with clicks: positive = "this is lesion", negative = "not".

    Shrink (negative clicks on a mask): inside the mask, a random walker between each negative click and the part
    of the mask farthest from it decides what goes — a leak into a neighbouring structure leaves with its click.
    Grow (positive clicks): a random walker from the clicks (and the mask) outwards, up to `reach` (mm with
    spacing, else pixels; default 1/8 of the image's smaller side), wherever the image is alike.
    """
    img = np.asarray(image, np.float32)
    sp = _spacing(spacing, img.ndim)
    shape = img.shape
    pos = check_points(positive, shape, "Positive click") if len(positive) else np.zeros((0, img.ndim))
    neg = check_points(negative, shape, "Negative click") if len(negative) else np.zeros((0, img.ndim))
    base = np.zeros(shape, bool) if mask is None else np.asarray(mask, bool)
    if base.shape != shape:
        raise LesionSegError(f"The mask {base.shape} does not match the image {shape}.")
    if not len(pos) and not base.any():
        raise LesionSegError("Add at least one positive click on the lesion (or start from a mask).")
    if reach is None:
        reach = float(min(np.asarray(shape) * sp)) / 8
    click_r = max(float(sp.max()) * 1.5, reach / 20)
    fg = points_to_disks(shape, pos, click_r, sp, labels=False) if len(pos) else np.zeros(shape, bool)
    bg = points_to_disks(shape, neg, click_r, sp, labels=False) if len(neg) else np.zeros(shape, bool)

    anchor = base | fg | bg
    idx = np.argwhere(anchor)
    box = tuple(slice(max(int(a - r), 0), min(int(b + r) + 1, s))
                for a, b, r, s in zip(idx.min(0), idx.max(0), np.ceil(reach / sp) + 2, shape))
    sub = ndi.gaussian_filter(img[box], sigma=np.clip(1.0 * sp.min() / sp, 0.3, 2))
    lo, hi = np.percentile(sub, [1, 99])
    if hi - lo < 1e-6:
        raise LesionSegError("The image is flat around the clicks: there is no lesion boundary to follow.")
    sub = np.clip((sub - lo) / (hi - lo), 0, 1)
    cur = base[box].copy()
    fgb, bgb = fg[box], bg[box]

    if len(neg) and cur.any():
        seeds = np.where(cur, 0, -1).astype(np.int32)
        d_neg = ndi.distance_transform_edt(~bgb, sampling=sp)
        far = cur & (d_neg > 0.5 * d_neg[cur].max())
        seeds[far | (fgb & cur)] = 1
        seeds[bgb & cur] = 2
        cur = _keep_seeded(_walk(sub, seeds, sp, beta), seeds) & ~bgb
        if not cur.any():
            raise LesionSegError("The negative clicks remove the whole lesion.")
    if len(pos):
        seeds = np.zeros(sub.shape, np.int32)
        seeds[ndi.distance_transform_edt(~(cur | fgb), sampling=sp) > reach] = 2
        seeds[ndi.binary_erosion(cur, iterations=2) | fgb] = 1
        seeds[bgb] = 2
        grown = _keep_seeded(_walk(sub, seeds, sp, beta), seeds)
        cur = ndi.binary_fill_holes(cur | grown) & ~bgb
    out = base.copy()
    out[box] = cur
    return out
