"""Choosing a probability threshold from labelled images: the one maximising IoU, or G-mean.

Pixels are pooled over all given images. Instead of re-thresholding the arrays for every candidate, the
probabilities of positive and of negative pixels are histogrammed once (`bins` equal bins on [0, 1]); a
reverse cumulative sum then gives, for every candidate threshold t (a bin edge, "positive when p >= t"),
the true positives TP(t) and false positives FP(t) at once. From these:

* IoU(t) = TP / (TP + FP + FN), with FN = P - TP;
* G-mean(t) = sqrt(sensitivity x specificity) = sqrt(TP/P x (N - FP)/N).

The two optima differ widely on imbalanced data (lesions are a small fraction of pixels): G-mean weighs
sensitivity and specificity equally and so prefers a low threshold; IoU pays for every false-positive
pixel and so prefers a high one. Cost: one pass of `np.histogram` per image, O(bins) afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import LesionSegError

__all__ = ["ThresholdCurves", "ThresholdChoice", "threshold_curves", "best_thresholds"]


@dataclass
class ThresholdCurves:
    thresholds: np.ndarray
    """candidate thresholds (bin edges); a pixel is positive when its probability >= threshold"""
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int

    @property
    def fn(self) -> np.ndarray:
        return self.n_pos - self.tp

    @property
    def iou(self) -> np.ndarray:
        denom = self.tp + self.fp + self.fn
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, self.tp / np.maximum(denom, 1), 1.0)

    @property
    def sensitivity(self) -> np.ndarray:
        return self.tp / self.n_pos if self.n_pos else np.ones_like(self.tp, dtype=float)

    @property
    def specificity(self) -> np.ndarray:
        return (self.n_neg - self.fp) / self.n_neg if self.n_neg else np.ones_like(self.fp, dtype=float)

    @property
    def gmean(self) -> np.ndarray:
        return np.sqrt(self.sensitivity * self.specificity)


@dataclass
class ThresholdChoice:
    iou_threshold: float
    iou: float
    gmean_threshold: float
    gmean: float
    n_pixels: int
    n_positive: int


def _as_list(x) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        return [x]
    return [np.asarray(a) for a in x]


def threshold_curves(
    probabilities: np.ndarray | Iterable[np.ndarray],
    truths: np.ndarray | Iterable[np.ndarray],
    bins: int = 1000,
    valid: np.ndarray | Iterable[np.ndarray] | None = None,
) -> ThresholdCurves:
    """TP and FP counts at `bins + 1` thresholds 0, 1/bins, ..., 1 from probability maps and masks.

    probabilities: one array or a list of arrays with values in [0, 1] (NaNs are ignored).
    truths: matching ground-truth masks (nonzero = lesion).
    valid: optional matching boolean masks of the pixels to count (e.g. only labelled slices).
    """
    probs = _as_list(probabilities)
    gts = _as_list(truths)
    valids = _as_list(valid) if valid is not None else [None] * len(probs)
    if len(probs) != len(gts) or len(probs) != len(valids):
        raise LesionSegError("give one ground-truth mask per probability map")
    if bins < 2:
        raise ValueError("bins must be >= 2")
    pos_hist = np.zeros(bins, np.int64)
    neg_hist = np.zeros(bins, np.int64)
    for p, g, v in zip(probs, gts, valids):
        if p.shape != g.shape:
            raise LesionSegError(f"probability map {p.shape} and mask {g.shape} differ in shape")
        p = np.asarray(p, np.float32).ravel()
        g = (np.asarray(g) != 0).ravel()
        # bin k holds p in [k/bins, (k+1)/bins); p == 1 goes to the last bin; ignored pixels to bin `bins`
        scaled = np.multiply(p, np.float32(bins))
        np.clip(scaled, 0, bins - 1, out=scaled)
        drop = ~np.isfinite(p)
        if drop.any():
            scaled[drop] = 0
        idx = scaled.astype(np.int32)
        if v is not None:
            drop |= ~np.asarray(v, bool).ravel()
        if drop.any():
            idx[drop] = bins
        # one pass over all pixels, one over the (few) lesion pixels; background = all - lesion
        all_hist = np.bincount(idx, minlength=bins + 1)[:bins]
        pos = np.bincount(idx[g], minlength=bins + 1)[:bins]
        pos_hist += pos
        neg_hist += all_hist - pos
    # threshold t_k = k / bins: positives are bins k..bins-1 -> reverse cumulative sums; t = 1 + eps -> none
    tp = np.concatenate([np.cumsum(pos_hist[::-1])[::-1], [0]])
    fp = np.concatenate([np.cumsum(neg_hist[::-1])[::-1], [0]])
    thresholds = np.arange(bins + 1) / bins
    return ThresholdCurves(thresholds, tp, fp, int(pos_hist.sum()), int(neg_hist.sum()))


def _argbest(values: np.ndarray, thresholds: np.ndarray) -> int:
    """Index of the maximum; among ties the middle of the widest plateau's first run (a stable choice)."""
    best = np.nanmax(values)
    hits = np.flatnonzero(np.isclose(values, best, rtol=0, atol=1e-12))
    # first run of consecutive indices
    run_end = 0
    while run_end + 1 < len(hits) and hits[run_end + 1] == hits[run_end] + 1:
        run_end += 1
    return int(hits[run_end // 2])


def best_thresholds(probabilities, truths, bins: int = 1000, valid=None) -> ThresholdChoice:
    """Thresholds maximising pixel IoU and pixel G-mean, pooled over all images.

    Thresholds are multiples of 1/bins in [0, 1]; "positive" means probability >= threshold.
    Raises LesionSegError when the masks hold no lesion pixel or no background pixel.
    """
    c = threshold_curves(probabilities, truths, bins=bins, valid=valid)
    if c.n_pos == 0:
        raise LesionSegError("the ground-truth masks contain no lesion pixel: nothing to choose a threshold on")
    if c.n_neg == 0:
        raise LesionSegError("the ground-truth masks contain no background pixel")
    iou = c.iou
    gm = c.gmean
    # thresholds 0 (everything positive) and 1+ (nothing) are legal but never interesting for G-mean
    i = _argbest(iou, c.thresholds)
    g = _argbest(gm, c.thresholds)
    return ThresholdChoice(
        iou_threshold=float(c.thresholds[i]), iou=float(iou[i]),
        gmean_threshold=float(c.thresholds[g]), gmean=float(gm[g]),
        n_pixels=c.n_pos + c.n_neg, n_positive=c.n_pos,
    )
