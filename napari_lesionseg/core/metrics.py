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
