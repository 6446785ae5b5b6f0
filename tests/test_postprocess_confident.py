"""`PostProcessing(keep_most_confident=True)`: keep the one component holding the highest probability (the option
benchmarks/us_postprocess_nested.py measured for `ultrasound-lesion`)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.inference.threshold import PostProcessing, apply_threshold, postprocess


def _disk(shape, c, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r


def _two_regions():
    """A big region the model is unsure of (0.6) and a small one it is sure of (0.95)."""
    probs = np.zeros((60, 60), np.float32)
    big, small = _disk((60, 60), (35, 35), 12), _disk((60, 60), (8, 8), 3)
    probs[big], probs[small] = 0.6, 0.95
    return probs, big, small


def test_keep_most_confident_keeps_the_surest_component_and_keep_largest_the_biggest():
    probs, big, small = _two_regions()
    out = np.zeros(probs.shape, np.uint8)
    apply_threshold(probs, 0.5, out, post=PostProcessing(keep_most_confident=True), spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, small)
    apply_threshold(probs, 0.5, out, post=PostProcessing(keep_largest=True), spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, big)


def test_components_under_the_minimum_size_are_dropped_before_the_surest_is_picked():
    probs, big, _small = _two_regions()  # the small disk is 29 px
    out = np.zeros(probs.shape, np.uint8)
    apply_threshold(probs, 0.5, out, post=PostProcessing(min_size_mm2=50.0, keep_most_confident=True),
                    spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, big)


def test_keep_most_confident_on_a_multiclass_map_uses_the_foreground_probability():
    probs, big, small = _two_regions()
    fg = probs
    three = np.stack([1 - fg, fg * 0.7, fg * 0.3])  # background, class 1, class 2
    out = np.zeros(fg.shape, np.uint8)
    apply_threshold(three, 0.5, out, multiclass=True, post=PostProcessing(keep_most_confident=True),
                    spacing=(1.0, 1.0))
    np.testing.assert_array_equal(out > 0, small)
    assert set(np.unique(out[small])) == {1}


def test_keep_most_confident_needs_the_probabilities_and_excludes_keep_largest():
    with pytest.raises(ValueError):
        PostProcessing(keep_largest=True, keep_most_confident=True)
    with pytest.raises(ValueError):
        postprocess(np.ones((5, 5), np.uint8), PostProcessing(keep_most_confident=True))
