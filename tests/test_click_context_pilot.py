"""The size-free click pilot: click samples in frames of unknown size (`--click-context`), the nested frames the
pilot segments a click in, and the rules that pick one of them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import click_context_pilot as ccp  # noqa: E402

from napari_lesionseg.core.annotations import line_model  # noqa: E402
from napari_lesionseg.core.training.prompt_samples import lesions_from_components, make_sample  # noqa: E402


def _disk_lesion(radius=20):
    img = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    yy, xx = np.ogrid[:300, :300]
    m = (yy - 150) ** 2 + (xx - 140) ** 2 < radius ** 2
    return lesions_from_components("busi", "p", "n", img, [m])[0]


def _lesion_shares(click_context, n=150):
    rng = np.random.default_rng(1)
    les = _disk_lesion()
    return np.array([make_sample(rng, les, kind="click", click_context=click_context)[1].mean() for _ in range(n)])


def test_click_context_widens_the_click_frames_and_the_default_is_unchanged():
    # a disk whose diameter spans half the frame fills pi/16 of it; default frames are 2 x diameter x exp(N(0, .3))
    default = _lesion_shares(None)
    assert 0.12 < np.median(default) < 0.3
    wide = _lesion_shares((0.8, 4.0))  # frames 1.6-8 x the diameter: the disk fills 0.012-0.31 of the frame
    assert wide.min() > 0.01 and wide.max() < 0.32
    assert np.median(wide) < 0.5 * np.median(default)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    les = _disk_lesion()
    a = make_sample(rng_a, les, kind="line")
    b = make_sample(rng_b, les, kind="line", click_context=(0.8, 4.0))  # only click samples change
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_mask_touching_the_frame_border_is_cut_by_the_frame():
    m = np.zeros((128, 128), bool)
    m[40:80, 40:80] = True
    assert not ccp.cut_by_frame(m)
    m[60:70, 0:40] = True
    assert ccp.cut_by_frame(m)


def test_the_rules_pick_the_smallest_frame_that_holds_the_lesion():
    full = np.zeros((128, 128), bool)
    inside = np.zeros((128, 128), bool)
    inside[50:78, 50:78] = True
    masks = [full | True, inside, inside, inside]  # the first frame is all lesion (cut), then it sits inside
    probs = [np.where(m, 0.9, 0.1) for m in masks]
    on_image = [np.pad(m, 10) for m in masks]
    assert ccp.pick_first_inside(masks, probs, on_image) == 1
    assert ccp.pick_first_inside_stable(masks, probs, on_image) == 1
    assert ccp.pick_confident(masks, probs, on_image) == 1
    assert ccp.pick_first_inside([full] * 3, [np.zeros((128, 128))] * 3, [full] * 3) == 2  # none: the largest


def test_a_click_on_a_dark_blob_gives_the_blob_from_some_frame():
    if line_model.prompt_card_path("prompt_unet") is None:
        pytest.skip("prompt_unet is not installed")
    from napari_lesionseg.core.metrics import dice

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:240, :240]
    blob = ((yy - 120) / 30) ** 2 + ((xx - 110) / 40) ** 2 < 1
    img = (170 + 12 * rng.standard_normal(blob.shape)).astype(np.float32)
    img[blob] = 50 + 12 * rng.standard_normal(blob.sum())
    out = ccp.new_click(img, np.array([120.0, 110.0]))
    frames = out.pop("oracle_frames")
    assert len(frames) == len(ccp.FRAME_SIDES) and all(f.shape == img.shape for f in frames)
    assert max(dice(f, blob) for f in frames) > 0.8
    assert set(out) == set(ccp.RULES)
