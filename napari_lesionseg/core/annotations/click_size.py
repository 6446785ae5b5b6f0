"""A lesion's size from one click at its centre: the scale-normalised Laplacian-of-Gaussian (LoG) at the click.

A click says where a lesion is, not how large: the prompt network given a click alone draws a frame-sized blob
whatever the frame, so the size has to come from the image. The classical answer is the scale at which the
normalised blob response σ²·∇²G_σ ∗ I at the click peaks (Lindeberg's scale selection; a disk of radius r responds
most at σ = r/√2). It learns nothing. Lesions are dark on ultrasound and bright on contrast MRI and mammograms,
so the sign of the response that counts comes from the modality (both signs when it is not known).

Choices (made on fold 0 of `scripts/prompt_lesions.py`'s patient split, `benchmarks/eval_click.py`): which local
maximum of the response over scales wins (`FIRST_PEAK`: the strongest for dark lesions, the first reaching 40 %
of it for bright ones), times `SIZE_GAIN` (the LoG peak sits inside an irregular lesion's edge).

The response at the click only needs one dot product per scale on a small grid, sampled from an image pyramid
(block means), so the whole search takes a few milliseconds on any image size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

RADII = np.geomspace(0.012, 0.3, 24)
"""Blob radii tried, as fractions of the image's smaller side (0.6 side diameter down to 2.4 %)."""
FIRST_PEAK = {1: 1.0, -1: 0.4}
"""Per polarity, the first local maximum whose response reaches this fraction of the largest one wins: for dark
lesions (ultrasound) the strongest (their dark cores and speckle make smaller peaks), for bright ones the first
reaching 40 % (the strongest is often the whole bright breast around a mammographic mass)."""
SIZE_GAIN = 1.16
"""Diameter estimate = 2 × the selected blob radius × this (fold-0 calibration; BUSI LoG peaks were 24 % small)."""
POLARITY = {"ultrasound": 1, "mri": -1, "mammography": -1}
"""+1: lesions darker than their surround; -1: brighter. Other or unknown modalities: the stronger of both."""
_HALF = 12  # sample grid half-width: ±4σ in steps of σ/3


def _pyramid(image2d: np.ndarray, levels: int) -> list[np.ndarray]:
    """Image, then 2×2 block means of it, repeatedly (each level is the previous one at half resolution)."""
    out = [np.asarray(image2d, np.float32)]
    for _ in range(levels):
        a = out[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        if min(h, w) < 8:
            break
        a = a[:h, :w]
        out.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    return out


def _kernel() -> np.ndarray:
    g = np.arange(-_HALF, _HALF + 1) / 3.0  # in units of σ
    rho2 = g[:, None] ** 2 + g[None, :] ** 2
    k = (rho2 - 2) * np.exp(-rho2 / 2)
    return (k - k.mean()) / np.abs(k).sum()


def blob_responses(image2d: np.ndarray, centre, spacing=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(diameters in pixels along x, normalised LoG response at `centre` for each): > 0 for a dark blob.

    spacing (mm per pixel, y x) keeps the blob round on anisotropic pixels; the diameters are in x pixels.
    """
    sp = np.asarray(spacing, float)[-2:]
    aspect = sp / sp[1]  # y pixels are aspect[0] times as long as x pixels
    img = np.asarray(image2d, np.float32)
    side = float(min(img.shape[0] * aspect[0], img.shape[1]))
    radii = RADII * side
    pyr = _pyramid(img, 8)
    kern = _kernel()
    g = np.arange(-_HALF, _HALF + 1, dtype=float)
    c = np.asarray(centre, float)[-2:]
    out = np.empty(len(radii))
    for i, r in enumerate(radii):
        step = r / np.sqrt(2) / 3  # grid step σ/3, x pixels
        level = int(np.clip(np.floor(np.log2(max(step, 1.0))), 0, len(pyr) - 1))
        f = 2.0 ** level
        ys = ((c[0] + 0.5) / f - 0.5) + g[:, None] * step / aspect[0] / f
        xs = ((c[1] + 0.5) / f - 0.5) + g[None, :] * step / f
        vals = ndi.map_coordinates(pyr[level], [np.broadcast_to(ys, (len(g), len(g))),
                                                np.broadcast_to(xs, (len(g), len(g)))], order=1, mode="nearest")
        out[i] = float((kern * vals).sum())
    return 2 * radii, out


def _first_strong_peak(curve: np.ndarray, fraction: float) -> int | None:
    peaks = [i for i in range(1, len(curve) - 1)
             if curve[i] > 0 and curve[i] >= curve[i - 1] and curve[i] >= curve[i + 1]]
    if not peaks:
        return None
    top = max(curve[i] for i in peaks)
    return next(i for i in peaks if curve[i] >= fraction * top)


def lesion_diameter(image2d: np.ndarray, centre, spacing=(1.0, 1.0), modality: str | None = None) -> float | None:
    """Estimated diameter (x pixels) of the lesion centred at `centre`, or None when no blob responds there.

    modality picks the polarity (`POLARITY`); unknown, or no blob of that polarity: the stronger peak of both.
    """
    diam, resp = blob_responses(image2d, centre, spacing)
    pol = POLARITY.get(modality or "")
    for signs in ([pol], [1, -1]) if pol else ([1, -1],):  # the modality's polarity; both if it finds nothing
        best = None
        for sign in signs:
            curve = sign * resp
            i = _first_strong_peak(curve, FIRST_PEAK[sign])
            if i is None and curve.max() > 0:
                i = int(np.argmax(curve))
            if i is not None and (best is None or curve[i] > best[1]):
                best = (i, curve[i])
        if best is not None:
            return float(diam[best[0]] * SIZE_GAIN)
    return None
