"""Region-level detection (FROC points) used to report the mammography model: a hit is a predicted region that
overlaps a lesion; every other region is a false positive."""

from __future__ import annotations

import numpy as np

from napari_lesionseg.core.metrics import detection_counts, sensitivity_at_fp


def _disk(shape, r0, c0, rad):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    return (rr - r0) ** 2 + (cc - c0) ** 2 <= rad**2


def test_counts_hits_and_false_positive_regions():
    truth = _disk((64, 64), 20, 20, 6)
    prob = np.zeros((64, 64), np.float32)
    prob[_disk((64, 64), 22, 22, 5)] = 0.9  # on the lesion
    prob[_disk((64, 64), 50, 50, 4)] = 0.6  # elsewhere
    hits, fps, n = detection_counts(prob, truth, [0.5, 0.7, 0.95])
    assert n == 1
    assert hits.tolist() == [1, 1, 0]
    assert fps.tolist() == [1, 0, 0]


def test_sensitivity_at_a_false_positive_budget():
    shape = (64, 64)
    t1, t2, normal = _disk(shape, 20, 20, 6), _disk(shape, 40, 40, 6), np.zeros(shape, bool)
    p1 = np.where(_disk(shape, 20, 20, 5), 0.9, 0.0)         # found with confidence
    p2 = np.where(_disk(shape, 40, 40, 5), 0.4, 0.0)         # found only at a low threshold
    pn = np.where(_disk(shape, 10, 50, 4), 0.5, 0.0)         # a false positive on a normal image
    out = sensitivity_at_fp([p1, p2, pn], [t1, t2, normal], fp_per_image=(0.0, 0.5))
    assert out[0.0][0] == 0.5 and out[0.0][1] > 0.5           # above 0.5 only the confident lesion, no FP
    assert out[0.5][0] == 1.0 and out[0.5][1] <= 0.4          # one FP in three images buys the second lesion
