"""Overlap metrics used by training, evaluation and the threshold helpers."""

from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Dice of two binary masks; `empty` when both are empty (a correct 'no lesion')."""
    p = np.asarray(pred, bool)
    t = np.asarray(truth, bool)
    s = p.sum() + t.sum()
    if s == 0:
        return float(empty)
    return float(2.0 * np.logical_and(p, t).sum() / s)


def iou(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    p = np.asarray(pred, bool)
    t = np.asarray(truth, bool)
    u = np.logical_or(p, t).sum()
    if u == 0:
        return float(empty)
    return float(np.logical_and(p, t).sum() / u)


def detection_counts(prob: np.ndarray, truth: np.ndarray, thresholds) -> tuple[np.ndarray, np.ndarray, int]:
    """Region-level detection on one image, for each threshold: lesions hit (a predicted region overlaps them) and
    false-positive regions (overlapping no lesion). Coarse targets (mammography circles) make overlap the fair test."""
    from scipy import ndimage as ndi

    lesions, n_les = ndi.label(np.asarray(truth) > 0)
    hits = np.zeros(len(thresholds), int)
    fps = np.zeros(len(thresholds), int)
    for i, t in enumerate(thresholds):
        regions, n_reg = ndi.label(prob >= t)
        if not n_reg:
            continue
        touched = np.unique(regions[lesions > 0])
        fps[i] = n_reg - np.count_nonzero(touched)
        hits[i] = len(np.unique(lesions[(regions > 0) & (lesions > 0)]))
    return hits, fps, n_les


def sensitivity_at_fp(probs, truths, fp_per_image=(0.25, 0.5, 1.0, 2.0),
                      thresholds=None) -> dict[float, tuple[float, float]]:
    """FROC points: for each allowed number of false-positive regions per image, the best lesion sensitivity of any
    threshold that stays within it, and that threshold. Images without lesions count in the per-image rate."""
    thresholds = np.linspace(0.05, 0.95, 19) if thresholds is None else np.asarray(thresholds)
    hits = np.zeros(len(thresholds))
    fps = np.zeros(len(thresholds))
    n_les = 0
    for p, t in zip(probs, truths):
        h, f, n = detection_counts(p, t, thresholds)
        hits += h
        fps += f
        n_les += n
    fp_rate = fps / max(len(probs), 1)
    sens = hits / max(n_les, 1)
    out = {}
    for rate in fp_per_image:
        ok = fp_rate <= rate
        if ok.any():
            i = int(np.argmax(np.where(ok, sens, -1)))
            out[float(rate)] = (float(sens[i]), float(thresholds[i]))
        else:
            out[float(rate)] = (0.0, float("nan"))
    return out
