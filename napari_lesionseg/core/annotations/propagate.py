"""The prompt network's part in a 3D lesion from one line: each slice's in-plane boundary, and the slices beyond.

`lines._mask_3d` grows the drawn slice's mask through the volume with a spacing-aware 3D random walker: it
decides how far the lesion runs through the slices. The walker follows grey levels only, so away from the drawn
slice its outline is rough (and on the drawn slice the network is far better: pyradiomics breast1 slice Dice 0.91
against the classical 0.75). Two steps here, both prompted exactly as a reader would on each slice (the longest
diameter of the mask next to it):
- `trim_slices`: on every other slice of the walker's mask the network draws the lesion's boundary; the slice
  keeps what both call lesion (the network never adds to the walker's extent);
- `extend_slices`: past the walker's last slice at either end, the network continues slice by slice, prompted by
  the previous slice's mask, while the new mask lies mostly on the previous one (≥ `MIN_OVERLAP` of it), is not
  much larger (≤ `MAX_GROWTH`), still stands out from its surroundings (≥ `MIN_CONTRAST` of the drawn slice's
  contrast) and stays within the ellipsoid the walker is bounded by (± `Z_REACH` × the line's length in mm).
Measured (benchmarks/eval_line3d.py): every choice here was compared on all three labelled volumes together
(breast1, brain1, the Duke box); the network propagating alone from the drawn slice was tried and not kept
(Duke's volume swung from 0.7 to 4 mL with small changes of its stopping rule).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

MIN_OVERLAP = 0.5
"""An extending slice's mask must lie at least this much on the previous slice's mask (a lesion moves little)."""
MAX_GROWTH = 1.3
"""…and be at most this many times its area (from the largest slice a lesion narrows)."""
MIN_CONTRAST = 0.5
"""…and its mean minus its 3 mm ring's mean must be at least this share of the drawn slice's."""
Z_REACH = 0.75
"""Through slices no further than this × the line's length (mm) from the drawn slice: the walker's ellipsoid."""
TRIM_TTA = False
"""Trim with one plain network pass per slice (4 test-time views cost 4×: 2.5 s for Duke's 15 slices on a busy CPU)."""
MIN_TRIM_PX = 10
"""Slices of the walker's mask smaller than this are left as they are (too small to prompt)."""


def ring_contrast(image2d: np.ndarray, mask2d: np.ndarray, spacing2, ring_mm: float = 3.0) -> float:
    """Mean inside the mask minus the mean of a ring `ring_mm` wide around it (0 for an empty mask)."""
    if not mask2d.any():
        return 0.0
    it = max(1, int(round(ring_mm / float(np.min(spacing2)))))
    ring = ndi.binary_dilation(mask2d, iterations=it) & ~mask2d
    if not ring.any():
        return 0.0
    return float(image2d[mask2d].mean() - image2d[ring].mean())


def _line_of(mask2d: np.ndarray, spacing2):
    """The prompt a reader would draw on a slice showing `mask2d`: its longest diameter (a `lines.Line`)."""
    from .frame import longest_diameter
    from .lines import Line

    p0, p1 = longest_diameter(mask2d, spacing2)
    if np.hypot(*(np.asarray(p1) - p0)) < 1.0:
        return None
    return Line(np.asarray(p0, float), np.asarray(p1, float))


def network_masks(volume: np.ndarray, prompts: dict[int, np.ndarray], spacing, network: str | None,
                  tta: bool = True) -> dict:
    """{slice: the network's mask on that slice} for {slice: a mask whose longest diameter is the prompt}; one
    batched network pass for all slices. Slices whose prompt is too short or whose crop is flat are left out."""
    from .frame import LineFrame
    from .line_model import frame_input, load_line_model, model_dir, predict_frames
    from .lines import _mask_from_frame_probability

    sp2 = np.asarray(spacing, float)[-2:]
    card = load_line_model(network, str(model_dir()))[1] if network else None
    jobs, inputs = [], []
    for k, prev in prompts.items():
        line = _line_of(prev, sp2)
        if line is None:
            continue
        frame = LineFrame.from_line(line.p0, line.p1, sp2)
        x = frame_input(volume[k], frame, card=card, line=frame.to_array(frame.line_ends()))
        lo, hi = np.percentile(x[0], [1, 99])
        if hi - lo < 1e-6:  # a flat crop (as `lines._check_contrast`): nothing to follow
            continue
        jobs.append((k, frame, line))
        inputs.append(x)
    if not inputs:
        return {}
    probs = predict_frames(np.stack(inputs), name=network, tta=tta)
    return {k: _mask_from_frame_probability(p, frame, volume.shape[1:], line)
            for (k, frame, line), p in zip(jobs, probs)}


def trim_slices(volume: np.ndarray, mask: np.ndarray, z0: int, spacing, network: str | None) -> np.ndarray:
    """Every slice of the 3D mask but the drawn one, cut to what the network also calls lesion there (prompted by
    that slice's own longest diameter). A slice where the network finds something else (less than
    `MIN_OVERLAP` of its mask on the walker's) keeps the walker's mask."""
    todo = {int(k): mask[k] for k in np.flatnonzero(mask.sum((1, 2)) >= MIN_TRIM_PX) if k != z0}
    out = mask.copy()
    for k, net in network_masks(volume, todo, spacing, network, tta=TRIM_TTA).items():
        both = net & mask[k]
        if net.any() and both.sum() >= MIN_OVERLAP * net.sum():
            out[k] = both
    return out


def extend_slices(volume: np.ndarray, mask: np.ndarray, z0: int, spacing, length_mm: float,
                  network: str | None) -> np.ndarray:
    """The 3D mask continued past its first and last slice by the network, slice by slice (rules: module doc)."""
    sp = np.asarray(spacing, float)
    zs = np.flatnonzero(mask.any((1, 2)))
    c0 = ring_contrast(volume[z0], mask[z0], sp[1:])
    if not len(zs) or c0 == 0:
        return mask
    out = mask.copy()
    for step, start in ((-1, int(zs.min())), (1, int(zs.max()))):
        prev, k = mask[start], start + step
        while 0 <= k < volume.shape[0] and abs(k - z0) * sp[0] <= Z_REACH * length_mm:
            new = network_masks(volume, {k: prev}, sp, network).get(k)
            if new is None or not new.any() or (new & prev).sum() < MIN_OVERLAP * new.sum() \
                    or new.sum() > MAX_GROWTH * prev.sum():
                break
            if np.sign(c0) * ring_contrast(volume[k], new, sp[1:]) < MIN_CONTRAST * abs(c0):
                break
            out[k] = new
            prev, k = new, k + step
    return out
