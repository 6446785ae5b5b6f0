"""The MRI prompt-network pilot of session 22 (benchmarks/prompt_mri_pilot.py): its go/no-go needs the candidate at
least as good as the better reference in 3D on breast1 and brain1 and clearly better on one, its slices not worse,
its Duke mask inside the box and its ISPY1 line Dice near the CV figure; and a network folder is used only inside
its block."""

from __future__ import annotations

import os

import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def pilot():
    return load_repo_script("benchmarks/prompt_mri_pilot.py")


def _net(breast1_3d: float, brain1_3d: float, slices=(0.76, 0.82), inside=1.0, ispy1=0.63) -> dict:
    return {"line_3d": {"breast1": {"mean_over_prompts": breast1_3d}, "brain1": {"mean_over_prompts": brain1_3d},
                        "duke_153": {"inside_box": inside}},
            "slices_line": {"breast1": {"mean": slices[0]}, "brain1": {"mean": slices[1]}},
            "ispy1": {"line": {"mean": ispy1}}}


REFS = [_net(0.794, 0.504), _net(0.780, 0.520)]


def test_a_clear_gain_on_one_volume_without_loss_elsewhere_is_a_go(pilot):
    v = pilot.verdict(_net(0.830, 0.521), REFS)
    assert v["go"] and all(v["clauses"].values())


def test_below_the_better_reference_on_one_volume_is_a_no_go(pilot):
    v = pilot.verdict(_net(0.850, 0.515), REFS)  # +0.06 on breast1, but brain1 under the better reference
    assert not v["go"] and not v["clauses"]["1_3d_breast1_brain1"]


def test_a_tie_with_the_references_is_a_no_go(pilot):
    assert not pilot.verdict(_net(0.795, 0.521), REFS)["clauses"]["1_3d_breast1_brain1"]


@pytest.mark.parametrize("kwargs, clause", [({"slices": (0.70, 0.80)}, "2_slices"),
                                            ({"inside": 0.9}, "3_duke_inside_box"),
                                            ({"ispy1": 0.60}, "4_ispy1_line")])
def test_each_other_clause_can_fail_alone(pilot, kwargs, clause):
    v = pilot.verdict(_net(0.830, 0.521, **kwargs), REFS)
    assert not v["go"] and [k for k, ok in v["clauses"].items() if not ok] == [clause]


def test_network_dir_sets_the_folder_only_inside_the_block(pilot, monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONSEG_LINE_MODEL_DIR", "/previous")
    with pilot.network_dir(str(tmp_path)):
        assert os.environ["LESIONSEG_LINE_MODEL_DIR"] == str(tmp_path)
    assert os.environ["LESIONSEG_LINE_MODEL_DIR"] == "/previous"
    with pilot.network_dir(None):
        assert "LESIONSEG_LINE_MODEL_DIR" not in os.environ
    assert os.environ["LESIONSEG_LINE_MODEL_DIR"] == "/previous"
