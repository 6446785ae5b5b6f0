"""Threshold helpers: IoU-optimal and G-mean-optimal thresholds, checked against the analytic optimum and brute force."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.thresholds import best_thresholds, threshold_curves


def _imbalanced(n_pos=2000, n_neg=200_000):
    """Positives uniform on [0.2, 1), negatives uniform on [0, 0.8): 1% lesion pixels.

    G-mean^2 = (1 - t)/0.8 * t/0.8 on [0.2, 0.8] peaks at t = 0.5; IoU is tiny below 0.8 (every step down adds
    ~100 false positives per true positive) and (1 - t)/0.8 above it, so it peaks at t = 0.8.
    """
    pos = (np.arange(n_pos) + 0.5) / n_pos * 0.8 + 0.2
    neg = (np.arange(n_neg) + 0.5) / n_neg * 0.8
    prob = np.concatenate([pos, neg]).astype(np.float32)
    truth = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
    order = np.random.default_rng(0).permutation(len(prob))
    return prob[order].reshape(404, 500), truth[order].reshape(404, 500)


def _brute_force(prob, truth, thresholds):
    best_iou = best_g = (-1, None)
    for t in thresholds:
        pred = prob >= t
        tp = np.sum(pred & truth)
        fp = np.sum(pred & ~truth)
        fn = np.sum(~pred & truth)
        iou = tp / (tp + fp + fn)
        g = np.sqrt(tp / truth.sum() * (np.sum(~truth) - fp) / np.sum(~truth))
        best_iou = max(best_iou, (iou, t), key=lambda x: x[0])
        best_g = max(best_g, (g, t), key=lambda x: x[0])
    return best_iou, best_g


def test_iou_and_gmean_thresholds_differ_as_predicted():
    prob, truth = _imbalanced()
    c = best_thresholds(prob, truth, bins=1000)
    assert c.iou_threshold == pytest.approx(0.8, abs=0.002)
    assert c.gmean_threshold == pytest.approx(0.5, abs=0.01)
    assert c.iou == pytest.approx(0.25, abs=0.005)
    assert c.gmean == pytest.approx(0.625, abs=0.005)
    assert c.iou_threshold - c.gmean_threshold > 0.25


def test_matches_brute_force_on_random_maps_split_over_images():
    rng = np.random.default_rng(1)
    probs, truths = [], []
    for _ in range(3):
        truth = np.zeros((64, 64), bool)
        truth[20:40, 25:45] = True
        prob = np.clip(rng.normal(0.3, 0.15, truth.shape) + 0.35 * truth, 0, 1)
        probs.append(prob)
        truths.append(truth)
    c = best_thresholds(probs, truths, bins=100)
    (iou, t_iou), (g, t_g) = _brute_force(np.stack(probs), np.stack(truths), np.arange(101) / 100)
    assert c.iou == pytest.approx(iou, abs=1e-9) and c.iou_threshold == pytest.approx(t_iou)
    assert c.gmean == pytest.approx(g, abs=1e-9) and c.gmean_threshold == pytest.approx(t_g)


def test_curves_counts_and_valid_mask():
    prob = np.array([[0.1, 0.6], [0.9, np.nan]])
    truth = np.array([[0, 1], [1, 1]])
    c = threshold_curves(prob, truth, bins=10)
    assert c.n_pos == 2 and c.n_neg == 1  # the NaN pixel is ignored
    assert c.tp[5] == 2 and c.fp[5] == 0 and c.fp[1] == 1
    valid = np.array([[True, True], [False, True]])
    c2 = threshold_curves(prob, truth, bins=10, valid=valid)
    assert c2.n_pos == 1


def test_no_lesion_pixels_is_a_user_error():
    with pytest.raises(LesionSegError):
        best_thresholds(np.random.rand(8, 8), np.zeros((8, 8)))
    with pytest.raises(LesionSegError):
        best_thresholds(np.random.rand(8, 8), np.zeros((4, 4)))
