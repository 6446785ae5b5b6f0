"""benchmarks/prompt_modality_pilot.py and `train_line_model --modality-channels`: the modality reaches a network
that was trained with it (one-hot channels after the prompt channels), never one that was not, and the rule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import prompt_modality_pilot as pmp  # noqa: E402
import train_line_model as tlm  # noqa: E402

from napari_lesionseg.core.annotations import line_model as lm  # noqa: E402
from napari_lesionseg.core.annotations.frame import LineFrame  # noqa: E402


def test_modality_channels_are_one_hot():
    x = tlm.modality_channels("mammography", 8)
    assert x.shape == (4, 8, 8) and (x[tlm.MODALITIES.index("mammography")] == 1).all() and x.sum() == 64


def test_the_modality_reaches_only_a_network_trained_with_it():
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    frame = LineFrame.from_line(np.array([32.0, 20.0]), np.array([32.0, 44.0]), np.ones(2))
    plain = {"prompt_channels": list(lm.PROMPT_CHANNELS)}
    with_modality = dict(plain, modality_channels=list(tlm.MODALITIES))
    original = lm.frame_input
    with pmp.given_modality("mri"):
        assert lm.frame_input(img, frame, card=plain).shape[0] == 5
        x = lm.frame_input(img, frame, card=with_modality)
        assert x.shape[0] == 9 and (x[5 + tlm.MODALITIES.index("mri")] == 1).all() and x[5:].sum() == x[0].size
    assert lm.frame_input is original  # the wrapper is gone after the block


def _row(diff, lo):
    return {"difference": diff, "ci95": [lo, lo + 0.02]}


def test_rule_needs_a_sure_gain_no_loss_and_clean_slices_kept():
    table = {f"{s}/{p}": _row(0.0, -0.01) for s in pmp.SOURCES for p in pmp.PROMPTS}
    assert not pmp.verdict(table, None, None)["go"]
    table["mri_slices/line"] = _row(0.02, 0.005)
    slices, ref = {"breast1": 0.76, "brain1": 0.82}, {"breast1": 0.765, "brain1": 0.82}
    assert pmp.verdict(table, slices, ref)["go"]
    assert not pmp.verdict(table, {"breast1": 0.74, "brain1": 0.82}, ref)["clauses"]["3_slices_within_0.01"]
    table["busi/box"] = _row(-0.006, -0.01)
    assert not pmp.verdict(table, slices, ref)["clauses"]["2_none_worse_than_0.005"]
    unsure = {k: _row(0.0, -0.01) for k in table} | {"cdd_cesm/line": _row(0.03, -0.001)}
    assert not pmp.verdict(unsure, None, None)["clauses"]["1_ispy1_or_cdd_line_plus_0.015"]


def test_a_network_wanting_inputs_this_version_does_not_give_is_refused_clearly(tmp_path, monkeypatch):
    """A pilot's network (trained with --modality-channels) put where the dock looks: a message, not a crash."""
    import json

    import pytest

    from napari_lesionseg.core.errors import LesionSegError
    from napari_lesionseg.core.models.build import save_weights
    from napari_lesionseg.core.models.prompt_net import build_prompt_network

    net = build_prompt_network(in_channels=9)
    save_weights(net, tmp_path / "prompt_unet.safetensors")
    card = {"name": "prompt_unet", "modality": "any", "kind": "prompt", "architecture": "TinyUNet",
            "encoder": "none", "in_channels": 9, "input_kind": "prompt", "weights": "prompt_unet.safetensors",
            "channels": [16, 32, 64, 128], "prompt_channels": list(lm.PROMPT_CHANNELS),
            "modality_channels": list(tlm.MODALITIES), "tta": ["mirror", "invert"]}
    (tmp_path / "prompt_unet.json").write_text(json.dumps(card))
    monkeypatch.setenv("LESIONSEG_LINE_MODEL_DIR", str(tmp_path))
    from napari_lesionseg.core.annotations import line_to_mask

    img = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    with pytest.raises(LesionSegError, match="takes 9 input channels"):
        line_to_mask(img, (32, 20), (32, 44), method="learned")


def test_per_lesion_csvs_of_two_folds_concatenate(tmp_path):
    """Each fold's CSV ends in a newline, so `cat f0.csv <(tail -n +2 f1.csv)` loses no lesion."""
    from eval_prompt_modalities import write_rows
    from prompt_ensemble_pilot import read_rows

    row = ("busi", "P1", "benign_1", 0, "learned", "line", 0.9, 0.1)
    write_rows(tmp_path / "f0.csv", [row])
    write_rows(tmp_path / "f1.csv", [row[:2] + ("benign_2", 1) + row[4:]])
    both = (tmp_path / "f0.csv").read_text() + "".join((tmp_path / "f1.csv").read_text().splitlines(True)[1:])
    (tmp_path / "both.csv").write_text(both)
    assert len(read_rows(tmp_path / "both.csv")) == 2
