"""The prompt network's part in a 3D lesion from one line: each slice's outline, and the slices past the walker.

`lines._mask_3d` grows the drawn slice's mask (the network's, when it is installed: pyradiomics breast1 slice Dice
0.91 against the classical 0.75) through the volume with a spacing-aware 3D random walker, which decides how far
the lesion runs. Then, every slice prompted as a reader would (the longest diameter of the mask there or next to it):
- `consensus_slices`: on every other slice of the walker's mask, the walker's probability and the network's vote
  in equal parts (`NETWORK_WEIGHT`; one plain network pass, batched over the slices);
- `extend_slices`: past the walker's first and last slice the network continues slice by slice, prompted by the
  previous slice's mask, while the new mask lies mostly on the previous one (≥ `MIN_OVERLAP` of it), is not much
  larger (≤ `MAX_GROWTH`), still stands out from its surroundings (≥ `MIN_CONTRAST` of the drawn slice's contrast,
  same polarity) and stays within the walker's ellipsoid (± `Z_REACH` × the line's length in mm).

Chosen on all three labelled volumes together (benchmarks/eval_line3d.py: breast1, brain1, the Duke box), never
one; a step is kept when the mean Dice over each volume's prompts (line, box, click) is not lower on any volume.
Measured, line on the largest slice / mean over prompts: walker alone 0.773 / 0.779 (breast1), 0.536 / 0.487
(brain1); with the vote 0.788 / 0.794 and 0.576 / 0.504; the vote with the network's 4 test-time views instead of
one pass scored the same (0.790, 0.539) at 4× the cost. Tried and not kept: the network alone propagating from the
drawn slice (breast1 0.72–0.74; Duke's volume swung from 0.7 to 4 mL with small changes of its stopping rule), and
each slice cut to what both call lesion (breast1 +0.02, brain1 box −0.04 and −0.01 over all prompts), and (session
27, rule written first) each slice's prompt given the mask's RECIST short axis too, which lifts 2D lines on MRI:
mean over prompts, line breast1 0.794 → 0.799 but brain1 0.504 → 0.492, box brain1 0.413 → 0.402, click breast1
0.756 → 0.748 (in 3D the walker's width is the walker's guess, not a reader's).
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
NETWORK_WEIGHT = 0.5
"""The network's share of the vote on every slice of the walker's mask (equal parts; not tuned)."""
BATCH = 16
"""Slices per network pass (memory stays bounded for a lesion through a hundred slices)."""
MIN_SLICE_PX = 10
"""Slices of the walker's mask smaller than this keep the walker's mask (too small to prompt)."""


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
    from ..errors import LesionSegError
    from .frame import longest_diameter
    from .lines import Line

    try:
        p0, p1 = longest_diameter(mask2d, spacing2)
    except LesionSegError:  # a pixel or two: nothing to prompt with
        return None
    if np.hypot(*(np.asarray(p1) - p0)) < 1.0:
        return None
    return Line(np.asarray(p0, float), np.asarray(p1, float))


def _network_frames(volume: np.ndarray, prompts: dict[int, np.ndarray], spacing, network: str | None,
                    tta: bool = True) -> list[tuple]:
    """[(slice, frame, line, probability on the frame)] for {slice: a mask whose longest diameter is the prompt},
    one batched network pass (tta=False: one plain view, 4× faster). Slices whose prompt is too short or whose
    crop is flat are left out."""
    from .frame import LineFrame
    from .line_model import frame_input, load_line_model, model_dir, predict_frames

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
        return []
    probs = np.concatenate([predict_frames(np.stack(inputs[i:i + BATCH]), name=network, tta=tta)
                            for i in range(0, len(inputs), BATCH)])
    return [(*job, p) for job, p in zip(jobs, probs)]


def network_masks(volume: np.ndarray, prompts: dict[int, np.ndarray], spacing, network: str | None) -> dict:
    """{slice: the network's mask on that slice} for {slice: a mask whose longest diameter is the prompt}."""
    from .lines import _mask_from_frame_probability

    return {k: _mask_from_frame_probability(p, frame, volume.shape[1:], line)
            for k, frame, line, p in _network_frames(volume, prompts, spacing, network)}


def consensus_slices(volume: np.ndarray, mask: np.ndarray, walker_prob: np.ndarray, box, z0: int, spacing,
                     network: str | None) -> np.ndarray:
    """Every slice of the walker's mask but the drawn one, redrawn where the walker's probability and the
    network's (prompted by that slice's longest diameter, one plain pass) average above 0.5, in equal parts;
    the parts touching the walker's mask on that slice, holes filled. walker_prob: the walker's probability on
    `box` (its region of the volume). A slice where the vote leaves nothing keeps the walker's mask."""
    todo = {int(k): mask[k] for k in np.flatnonzero(mask.sum((1, 2)) >= MIN_SLICE_PX) if k != z0}
    out = mask.copy()
    for k, frame, _line, p in _network_frames(volume, todo, spacing, network, tta=False):
        net, fbox = frame.paste(p, volume.shape[1:])
        vote = np.zeros(volume.shape[1:], np.float32)
        vote[fbox] = NETWORK_WEIGHT * net
        vote[box[1:]] += (1 - NETWORK_WEIGHT) * walker_prob[k - box[0].start]
        lab, _ = ndi.label(vote > 0.5)
        keep = np.unique(lab[mask[k]])
        keep = keep[keep > 0]
        if len(keep):
            out[k] = ndi.binary_fill_holes(np.isin(lab, keep))
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
