"""benchmarks/us_cascade_pilot.py: each region of an automatic mask is redrawn by the prompt network (line or box),
separate regions stay separate, and the summary counts what cv_ultrasound_lesion.py counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import us_cascade_pilot as ucp  # noqa: E402

from napari_lesionseg.core.annotations import line_model  # noqa: E402
from napari_lesionseg.core.metrics import dice  # noqa: E402


def _two_dark_lesions():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :260]
    a = (((yy - 70) / 20) ** 2 + ((xx - 70) / 30) ** 2) < 1
    b = (((yy - 140) / 18) ** 2 + ((xx - 190) / 24) ** 2) < 1
    img = 170 + 12 * rng.standard_normal(a.shape)
    img[a | b] = 50 + 12 * rng.standard_normal((a | b).sum())
    # a rough automatic mask: the right place and extent, the wrong shape (each lesion's inscribed diamond)
    rough = (np.abs(yy - 70) / 20 + np.abs(xx - 70) / 30 < 1) | (np.abs(yy - 140) / 18 + np.abs(xx - 190) / 24 < 1)
    return img.astype(np.float32), a, b, rough


@pytest.mark.parametrize("variant", ["line", "box"])
def test_each_region_of_a_rough_mask_is_redrawn_on_its_lesion(variant):
    if line_model.prompt_card_path("prompt_unet") is None:
        pytest.skip("prompt_unet is not installed")
    img, a, b, rough = _two_dark_lesions()
    from scipy import ndimage as ndi

    out = ucp.refine(img, rough, variant)
    assert dice(out, a | b) > max(0.8, dice(rough, a | b))
    labels, n = ndi.label(out)
    assert n == 2  # one mask per region, not one blob across both
    assert not ucp.refine(img, np.zeros_like(rough), variant).any()  # nothing to refine: nothing drawn


def test_the_summary_counts_dice_misses_and_false_regions():
    rows = [{"has_lesion": True, "base_dice": 0.9, "line_dice": 0.05, "box_dice": 0.8, "base_fp": False,
             "line_fp": False, "box_fp": False},
            {"has_lesion": False, "base_dice": None, "line_dice": None, "box_dice": None, "base_fp": True,
             "line_fp": True, "box_fp": False}]
    s = ucp.summary(rows)
    assert s["n_lesion"] == 1 and s["n_normal"] == 1
    assert s["base"] == {"mean_dice": 0.9, "misses": 0, "normals_false_region": 1}
    assert s["line"]["misses"] == 1 and s["box"]["normals_false_region"] == 0


def test_a_speck_the_network_refuses_is_kept_as_it_was():
    if line_model.prompt_card_path("prompt_unet") is None:
        pytest.skip("prompt_unet is not installed")
    img, _a, _b, _rough = _two_dark_lesions()
    speck = np.zeros(img.shape, bool)
    speck[10, 10] = True  # one pixel: no line can be drawn across it
    np.testing.assert_array_equal(ucp.refine(img, speck, "line"), speck)
