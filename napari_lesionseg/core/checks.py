"""Checks of what a user hands in, with messages a clinician can act on (Qt-free; CLI and docks share them).

- `check_image_size`: an image too small for a model or the line tool (a 1×1 or 1×500 image gave an empty mask
  with no word).
- `check_mask_like`: a "mask" that is really a scan (measuring a scan reported 254 "lesions").
- `replace_non_finite`: NaN/Inf voxels become background (the finite minimum) before a model sees them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import LesionSegError

MIN_IMAGE_SIDE = 16
"""Fewest pixels along each in-plane axis for segmenting or the line tool: the networks halve an image five
times, and a lesion outline needs a few pixels across."""

MAX_SEMANTIC_CLASSES = 8
"""A mask with at most this many distinct non-zero values is accepted without looking further (lesion classes)."""

SCATTERED_PIECES = 20
"""A label value split into more separate pieces than this is an intensity, not a lesion (see `check_mask_like`)."""


def check_image_size(shape, what: str, purpose: str) -> None:
    """Refuse an image whose last two (in-plane) axes are shorter than MIN_IMAGE_SIDE pixels."""
    plane = tuple(int(n) for n in tuple(shape)[-2:])
    if len(plane) < 2 or min(plane) < MIN_IMAGE_SIDE:
        size = " × ".join(str(n) for n in plane)
        raise LesionSegError(
            f"{what} is {size} pixels: too small for {purpose}. It needs at least {MIN_IMAGE_SIDE} × "
            f"{MIN_IMAGE_SIDE} pixels (is this the right file?)."
        )


def check_mask_like(mask: np.ndarray, name: str) -> np.ndarray:
    """The mask as integers, or LesionSegError when it looks like an image rather than a mask.

    The rule: a mask holds whole numbers, none negative; a mask with more than MAX_SEMANTIC_CLASSES distinct
    non-zero values (one value per lesion or nucleus) is accepted only if its labels are solid regions. In a scan
    each grey value is scattered over the whole image, so when at least two of its three commonest non-zero values
    are each split into more than SCATTERED_PIECES separate pieces, it is refused.
    """
    m = np.asarray(mask)
    if m.dtype == bool:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        finite = np.isfinite(m)
        if not finite.all() or not np.all(np.mod(m, 1) == 0):
            raise LesionSegError(f"{name} holds non-integer values: is it a probability map or a scan? "
                                 "Threshold it into a mask first (lesion > 0, background 0).")
        m = m.astype(np.int64)
    elif not np.issubdtype(m.dtype, np.integer):
        raise LesionSegError(f"{name} ({m.dtype}) is not a mask: give a label image (background 0, lesions 1, 2, …).")
    if m.size and m.min() < 0:
        raise LesionSegError(f"{name} holds negative values: a mask has background 0 and lesions 1, 2, …; "
                             "is this a scan rather than a mask?")
    values, counts = np.unique(m, return_counts=True)
    keep = values != 0
    values, counts = values[keep], counts[keep]
    if len(values) <= MAX_SEMANTIC_CLASSES:
        return m
    structure = ndimage.generate_binary_structure(m.ndim, m.ndim)
    commonest = values[np.argsort(counts)[::-1][:3]]
    pieces = [int(ndimage.label(m == v, structure=structure)[1]) for v in commonest]
    if sum(p > SCATTERED_PIECES for p in pieces) >= 2:
        raise LesionSegError(
            f"{name} does not look like a mask: it has {len(values)} different values and its commonest values "
            f"are scattered in {', '.join(map(str, pieces))} separate pieces, as the grey levels of a scan are. A "
            "mask holds 0 for background and one value per lesion, each a solid region. Did you give the scan "
            "instead of the mask?"
        )
    return m


def replace_non_finite(data: np.ndarray, what: str) -> tuple[np.ndarray, str | None]:
    """(data with NaN/±Inf set to the finite minimum, a warning) — or (data, None) when all values are finite.

    Such voxels (outside the field of view, failed fits) are treated as background; the input array is not changed.
    """
    a = np.asarray(data)
    if not np.issubdtype(a.dtype, np.floating):
        return a, None
    bad = ~np.isfinite(a)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return a, None
    finite = a[~bad]
    if finite.size == 0:
        raise LesionSegError(f"{what} holds no finite value (all NaN or infinite): there is nothing to segment.")
    low = float(finite.min())
    out = np.where(bad, np.asarray(low, a.dtype), a)
    share = 100.0 * n_bad / a.size
    return out, (f"{what} has {n_bad} NaN or infinite values ({share:.2g}% of it); they were treated as background "
                 f"(set to the lowest finite value, {low:.4g}) for segmenting.")

