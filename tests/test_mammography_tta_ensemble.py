"""The rule of the session-21 mammography comparison (benchmarks/mammography_tta_ensemble.py): a candidate ships only
if it finds at least 2 more held-out mini-MIAS masses at ≤ 0.5 false regions per image, without 5 more mass-free
images with a false region or a worse CDD-CESM result; the ensemble B only when it beats A by 2 masses as well."""

from __future__ import annotations

import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def mte():
    return load_repo_script("benchmarks/mammography_tta_ensemble.py")


def _fig(found: int, fp: float = 0.37, free: int = 60, cdd: int = 7, cdd_dice: float = 0.24) -> dict:
    return {"mias_found": found, "fp_per_image": fp, "mass_free_with_false_region": free, "cdd_found": cdd,
            "cdd_mass_dice": cdd_dice}


def test_two_more_masses_and_nothing_worse_ships_the_flips(mte):
    assert mte.verdict(_fig(22), _fig(24, fp=0.45, free=64), None)["ship"] == "A"


@pytest.mark.parametrize("a", [
    _fig(23),                       # one mass more: within the noise of 33
    _fig(25, fp=0.52),              # over the goal's 0.5 false regions per image
    _fig(25, free=66),              # six more mass-free images with a false region
    _fig(25, cdd=5),                # two fewer digital-mammogram regions
    _fig(25, cdd_dice=0.20),        # digital Dice down by 0.04
])
def test_a_failed_condition_ships_nothing(mte, a):
    assert mte.verdict(_fig(22), a, None)["ship"] is None


def test_the_ensemble_ships_only_when_it_beats_the_flips_by_two_masses(mte):
    ref = _fig(22)
    assert mte.verdict(ref, _fig(24), _fig(25))["ship"] == "A"     # costs twice the time for one mass
    assert mte.verdict(ref, _fig(24), _fig(26))["ship"] == "B"
    assert mte.verdict(ref, _fig(22), _fig(24))["ship"] == "B"     # the flips alone fail
    assert mte.verdict(ref, _fig(22), _fig(23))["ship"] is None


def test_figures_count_masses_and_mass_free_images_from_pooled_rows(mte):
    pooled = {"mias": {"sensitivity_at_threshold": 0.6667, "n_mass": 33, "fp_per_image_at_threshold": 0.37,
                       "false_region_rate_mass_free": 0.3429, "n_mass_free": 175, "sensitivity_at_0.5_fp": 0.6667,
                       "mean_dice_mass": 0.43},
              "cdd_digital": {"sensitivity_at_threshold": 0.5385, "n_mass": 13, "mean_dice_mass": 0.24}}
    f = mte.figures({"cv_pooled": pooled, "threshold": 0.95, "folds": {"fold1": {"threshold": 0.9}}})
    assert (f["mias_found"], f["mass_free_with_false_region"], f["cdd_found"]) == (22, 60, 7)
