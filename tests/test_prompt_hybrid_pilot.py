"""benchmarks/prompt_hybrid_pilot.py: the blend weight is chosen on the other fold only, and the rule needs a gain
with its interval above 0, clean MRI slices not worse, and the time limit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import prompt_hybrid_pilot as php  # noqa: E402


def _rows(dice_of_fold):
    """Four patients per fold, one lesion each; Dice per w from dice_of_fold(fold)."""
    return [{"source": "mri_slices", "patient": f"P{k}{i}", "name": f"l{k}{i}", "fold": k,
             "dice": list(dice_of_fold(k)), "seconds": 0.1} for k in (0, 1) for i in range(4)]


def test_the_weight_applied_to_a_fold_is_chosen_on_the_other_fold():
    # fold 0 likes the classical end, fold 1 the network: each fold gets the other's choice, so nested loses
    rows = _rows(lambda k: [0.60, 0.61, 0.62, 0.63, 0.70] if k == 0 else [0.70, 0.60, 0.60, 0.60, 0.60])
    res = php.nested(rows, "mri_slices")
    assert res["w_chosen_per_fold"] == {"f0": 0.0, "f1": 1.0}
    n = res["nested_vs_network"]
    assert n["reference"] == pytest.approx(0.65) and n["candidate"] == pytest.approx(0.60)


def test_ties_go_to_the_network():
    assert php.best_weight(_rows(lambda k: [0.7] * len(php.WEIGHTS))) == 0


def test_rule_needs_gain_above_noise_slices_and_time():
    gain = _rows(lambda k: [0.60, 0.63, 0.63, 0.63, 0.60] if k == 0 else [0.61, 0.64, 0.64, 0.64, 0.61])
    res = {"mri_slices": php.nested(gain, "mri_slices") | {"median_seconds": 0.15}}
    good_slices = {"breast1": [[0.80, 0.80, 0.80, 0.80, 0.70]] * 3, "brain1": [[0.80] * 5] * 3}
    assert php.verdict(res, good_slices)["mri"]["go"]
    bad_slices = {"breast1": [[0.80, 0.75, 0.75, 0.75, 0.70]] * 3, "brain1": [[0.80] * 5] * 3}
    assert php.verdict(res, bad_slices)["mri"]["clauses"]["2_slices_not_worse"] is False
    slow = {"mri_slices": res["mri_slices"] | {"median_seconds": 0.3}}
    assert php.verdict(slow, good_slices)["mri"]["clauses"]["3_time"] is False
    small = _rows(lambda k: [0.60, 0.605, 0.605, 0.605, 0.60])
    res_small = {"mri_slices": php.nested(small, "mri_slices") | {"median_seconds": 0.1}}
    assert php.verdict(res_small, good_slices)["mri"]["clauses"]["1_nested_gain"] is False


def test_blend_ends_reproduce_the_network_and_the_classical_line(monkeypatch):
    """w = 0 is today's learned line, w = 1 the classical one (synthetic bright disk; the installed network)."""
    from napari_lesionseg.core.annotations.line_model import line_model_available
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.metrics import dice

    if not line_model_available():
        pytest.skip("no prompt network installed")
    yy, xx = np.mgrid[:96, :96]
    mask = (yy - 48) ** 2 / 14 ** 2 + (xx - 50) ** 2 / 20 ** 2 <= 1
    img = (40 + 120 * mask + np.random.default_rng(0).normal(0, 8, mask.shape)).astype(np.float32)
    les = type("L", (), {"image": img, "mask": mask, "p0": np.array([48.0, 30.0]), "p1": np.array([48.0, 70.0])})
    d, seconds = php.blend_dice(les)
    assert d[0] == pytest.approx(dice(line_to_mask(img, les.p0, les.p1, method="learned"), mask))
    assert d[-1] == pytest.approx(dice(line_to_mask(img, les.p0, les.p1, method="classical"), mask))
    assert d[0] > 0.8 and seconds > 0
