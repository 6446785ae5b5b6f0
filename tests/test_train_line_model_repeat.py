"""`scripts/train_line_model.py --repeat SOURCE=R`: a pilot can leave a source out (R = 0) or change how often its
lesions are drawn, and a misspelt source stops the run before it trains."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def tlm():
    return load_repo_script("scripts/train_line_model.py")


def test_repeat_overrides_only_the_named_source(tlm):
    table = tlm.repeat_table(["mri_slices=0", "cdd_cesm=2.5"])
    assert table["mri_slices"] == 0 and table["cdd_cesm"] == 2.5 and table["busi"] == tlm.REPEAT["busi"]
    assert tlm.REPEAT["mri_slices"] == 6  # the shipped recipe's table is untouched


def test_a_source_at_zero_is_never_drawn(tlm):
    lesions = [SimpleNamespace(source=s) for s in ("busi", "mri_slices", "busi", "mri_slices", "cdd_cesm")]
    order = tlm.epoch_order(np.random.default_rng(0), lesions, tlm.repeat_table(["mri_slices=0"]))
    drawn = {lesions[i].source for i in order}
    assert "mri_slices" not in drawn and {"busi", "cdd_cesm"} <= drawn
    assert sum(lesions[i].source == "mri_slices" for i in tlm.epoch_order(np.random.default_rng(0), lesions)) == 12


@pytest.mark.parametrize("bad", ["ispy=0", "mri_slices", "mri_slices=", "mri_slices=x", "busi=-1"])
def test_an_unknown_source_or_missing_value_stops_the_run(tlm, bad):
    with pytest.raises(SystemExit, match="SOURCE=R"):
        tlm.repeat_table([bad])


def _lesions():
    return [SimpleNamespace(source=s) for s in ["busi"] * 30 + ["monuseg"] * 216 + ["cdd_cesm"] * 3]


def test_epochs_never_step_past_the_schedule_whatever_the_seed(tlm):
    """Fractional repeats (monuseg 0.5) make each epoch's length random: the schedule is sized on seed 0's epoch
    plus one step per epoch, and a seed whose epochs run longer stops at the schedule's end (seed 1 of the prompt
    network crashed at step 1051 of 1050 before this)."""
    train = _lesions()
    steps = tlm.total_steps(train, tlm.REPEAT, 16, 25)
    for seed in range(12):
        out = list(tlm.batches(np.random.default_rng(seed), train, tlm.REPEAT, 16, steps, 25))
        n_steps = sum(not end for end, _ in out)
        assert n_steps <= steps
        assert sum(end for end, _ in out) <= 25
        assert n_steps == steps or sum(end for end, _ in out) == 25
    assert any(sum(not e for e, _ in tlm.batches(np.random.default_rng(s), train, tlm.REPEAT, 16, 10 ** 6, 25))
               > steps for s in range(12))  # without the cap, some seeds would have stepped past the schedule


def test_steps_mode_runs_exactly_the_steps_it_was_given(tlm):
    out = list(tlm.batches(np.random.default_rng(0), _lesions(), tlm.REPEAT, 16, 37, None))
    assert sum(not end for end, _ in out) == 37 and out[-1] == (True, None)
    assert all(len(idx) <= 16 for end, idx in out if not end)
