"""Turning kept probabilities into a mask, cheaply: the threshold slider calls only this, never the model.

`apply_threshold` writes into the existing label array (no new volume per slider move); post-processing
(fill holes, drop small components, keep the largest or the most confident component) runs only when asked for:
by the user (the Segment dock's clean-up row); cards carry no default (none passed the nested test in
benchmarks/us_postprocess_nested.py), and `keep_most_confident` is so far only that benchmark's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PostProcessing:
    fill_holes: bool = False
    min_size_mm2: float = 0.0
    """Drop connected components smaller than this (mm² in 2D, mm³ in 3D)."""
    keep_largest: bool = False
    keep_most_confident: bool = False
    """Keep only the component that holds the highest probability (a model that draws a false region beside or
    instead of the lesion is usually surest of the lesion). Needs the probabilities; exclusive with keep_largest."""

    def __post_init__(self):
        if self.keep_largest and self.keep_most_confident:
            raise ValueError("keep_largest and keep_most_confident each keep one component: choose one")

    @property
    def active(self) -> bool:
        return self.fill_holes or self.min_size_mm2 > 0 or self.keep_largest or self.keep_most_confident


def apply_threshold(probs: np.ndarray, threshold: float, out: np.ndarray, multiclass: bool = False,
                    post: PostProcessing | None = None, spacing: tuple[float, ...] | None = None,
                    region: tuple[slice, ...] | None = None) -> np.ndarray:
    """Write the mask for `threshold` into `out` (label 1 = lesion). Multi-class ((K, ...) with background first):
    where the foreground probability 1 − p(background) is at least `threshold`, the most probable foreground class
    (1…K−1), else 0 — so the slider grows and shrinks the mask as in the binary case. `region` restricts the
    update to part of the array."""
    region = region or tuple(slice(None) for _ in range(out.ndim))
    if multiclass:
        p = probs[(slice(None),) + region]
        labels = (p[1:].argmax(0) + 1).astype(out.dtype)
        labels[(1.0 - p[0]) < threshold] = 0
        out[region] = labels
    elif out.dtype in (np.uint8, np.int8):
        # A uint8 label array viewed as bool: the comparison writes 0/1 bytes in place, as fast as `prob > t`
        # (casting bool → uint8 through ufunc buffers costs 15–140 % more, measured in benchmarks/bench_volume.py).
        np.greater_equal(probs[region], threshold, out=out[region].view(np.bool_))
    else:
        np.greater_equal(probs[region], threshold, out=out[region], casting="unsafe")
    if post is not None and post.active:
        fg = None
        if post.keep_most_confident:
            fg = 1.0 - probs[(0,) + region] if multiclass else probs[region]
        out[region] = postprocess(out[region], post, spacing, probs=fg)
    return out


def postprocess(mask: np.ndarray, post: PostProcessing, spacing: tuple[float, ...] | None = None,
                probs: np.ndarray | None = None) -> np.ndarray:
    """The cleaned mask (a new array). `probs`, the foreground probability on the mask's grid, is needed only by
    keep_most_confident."""
    from scipy import ndimage as ndi

    if post.keep_most_confident and (probs is None or np.shape(probs) != mask.shape):
        raise ValueError("keep_most_confident needs the foreground probabilities on the mask's grid")

    out = mask.copy()
    labels = np.unique(out[out > 0])
    result = np.zeros_like(out)
    unit = float(np.prod(spacing)) if spacing is not None and len(spacing) == out.ndim else 1.0
    for lab in labels:
        m = out == lab
        if post.fill_holes:
            m = ndi.binary_fill_holes(m) if m.ndim == 2 else np.stack([ndi.binary_fill_holes(s) for s in m])
        comp, n = ndi.label(m)
        if n:
            sizes = ndi.sum_labels(np.ones_like(comp), comp, index=np.arange(1, n + 1)) * unit
            keep = sizes >= post.min_size_mm2
            if post.keep_largest and keep.any():
                keep = np.zeros_like(keep)
                keep[int(np.argmax(sizes))] = True
            elif post.keep_most_confident and keep.any():
                peaks = np.where(keep, ndi.maximum(probs, comp, index=np.arange(1, n + 1)), -np.inf)
                keep = np.zeros_like(keep)
                keep[int(np.argmax(peaks))] = True
            m = np.isin(comp, np.nonzero(keep)[0] + 1)
        result[m & (result == 0)] = lab
    return result
