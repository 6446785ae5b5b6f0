"""A prompt card with `members: N` (scripts/combine_prompt_networks.py): the line/box tools get the average of the
members' probabilities over the same test-time views, the combined card is fine-tunable like a single network, and
members that do not fit together are refused with nothing written.

The second member is the shipped network with its weights jittered: a fixture to tell two members apart, never a
model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_lesionseg.core.annotations import line_model
from napari_lesionseg.core.annotations.frame import LineFrame

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import combine_prompt_networks  # noqa: E402


def _needs_prompt_network():
    if not line_model.line_model_available() or "prompt_channels" not in line_model.model_card():
        pytest.skip("the prompt network (models/line_prompt/prompt_unet) is not installed")


def _members(tmp_path) -> list[Path]:
    """The shipped card, and a copy whose weights are jittered (2 % noise): two different members of one recipe."""
    import torch
    from safetensors.torch import load_file, save_file

    src = line_model.model_dir()
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(src / "prompt_unet.json", d)
    shutil.copy(src / "prompt_unet.safetensors", a)
    g = torch.Generator().manual_seed(0)
    state = {k: (v + 0.02 * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
             if v.is_floating_point() and v.ndim >= 2 else v
             for k, v in load_file(str(src / "prompt_unet.safetensors")).items()}
    save_file(state, str(b / "prompt_unet.safetensors"))
    return [a / "prompt_unet.json", b / "prompt_unet.json"]


def _frame_input():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:160, :160]
    img = rng.normal(60, 10, (160, 160)) + 90 * ((((yy - 80) / 22) ** 2 + ((xx - 78) / 30) ** 2) < 1)
    frame = LineFrame.from_line((80, 50), (80, 106))
    return img, line_model.frame_input(img, frame, line=np.array([[80.0, 50.0], [80.0, 106.0]]))[None]


def _probabilities(directory: Path, x, monkeypatch) -> np.ndarray:
    monkeypatch.setenv("LESIONSEG_LINE_MODEL_DIR", str(directory))
    return line_model.predict_frames(x)


def test_the_combined_network_averages_its_members_over_the_same_views(tmp_path, monkeypatch, capsys):
    _needs_prompt_network()
    members = _members(tmp_path)
    out = tmp_path / "ens"
    assert combine_prompt_networks.main(["--members", *map(str, members), "--out", str(out)]) == 0
    card = json.loads((out / "prompt_unet.json").read_text())
    assert card["members"] == 2 and card["kind"] == "prompt" and card["tta"] == ["mirror", "invert"]
    img, x = _frame_input()
    pa, pb = (_probabilities(m.parent, x, monkeypatch) for m in members)
    assert np.abs(pa - pb).max() > 1e-3  # the two members differ
    pe = _probabilities(out, x, monkeypatch)
    np.testing.assert_allclose(pe, (pa + pb) / 2, atol=2e-5)
    # the tools use it like any prompt network: a line across the bright ellipse gives a mask on it
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.metrics import dice

    yy, xx = np.mgrid[:160, :160]
    truth = (((yy - 80) / 22) ** 2 + ((xx - 78) / 30) ** 2) < 1
    assert dice(line_to_mask(img, (80, 50), (80, 106)), truth) > 0.8


def test_members_that_do_not_fit_together_are_refused_and_nothing_is_written(tmp_path, capsys):
    _needs_prompt_network()
    legacy = line_model.prompt_card_path(line_model.LEGACY_MODEL)
    if legacy is None:
        pytest.skip("busi_line_unet is not installed")
    out = tmp_path / "ens"
    rc = combine_prompt_networks.main(["--members", str(line_model.model_dir() / "prompt_unet.json"), str(legacy),
                                       "--out", str(out)])
    assert rc == 2 and "differ in in_channels" in capsys.readouterr().err
    assert not out.exists()


def test_an_existing_card_is_kept_unless_force(tmp_path, capsys):
    _needs_prompt_network()
    members = _members(tmp_path)
    out = tmp_path / "ens"
    out.mkdir()
    (out / "prompt_unet.json").write_text("{}")
    rc = combine_prompt_networks.main(["--members", *map(str, members), "--out", str(out)])
    assert rc == 2 and "--force" in capsys.readouterr().err
    assert (out / "prompt_unet.json").read_text() == "{}" and not (out / "prompt_unet.safetensors").exists()
    assert combine_prompt_networks.main(["--members", *map(str, members), "--out", str(out), "--force"]) == 0
    assert json.loads((out / "prompt_unet.json").read_text())["members"] == 2


def test_a_combined_network_is_fine_tuned_and_published_with_both_members(tmp_path, monkeypatch, _user_model_dir):
    _needs_prompt_network()
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model

    members = _members(tmp_path)
    out = tmp_path / "ens"
    assert combine_prompt_networks.main(["--members", *map(str, members), "--out", str(out)]) == 0
    before = hashlib.md5((out / "prompt_unet.safetensors").read_bytes()).hexdigest()
    img, _ = _frame_input()
    yy, xx = np.mgrid[:160, :160]
    mask = (((yy - 80) / 22) ** 2 + ((xx - 78) / 30) ** 2) < 1
    card = finetune_prompt_model(str(out / "prompt_unet.json"), [img.astype(np.float32)], [mask], "ens-ft", steps=2,
                                 notify=False)
    assert card.kind == "prompt" and card.members == 2 and card.network.startswith("2 ×")
    net, raw = line_model.load_line_model(card.name)
    assert len(net.members) == 2 and raw["parent"] == "prompt_unet"
    assert hashlib.md5((out / "prompt_unet.safetensors").read_bytes()).hexdigest() == before  # base unchanged


def test_the_cards_views_decide_the_passes(tmp_path, monkeypatch):
    """`tta: [invert]` (combine_prompt_networks --tta invert): image and inverted image, no mirror — two members
    at the cost of one network's four views."""
    _needs_prompt_network()
    members = _members(tmp_path)
    full, inv_only = tmp_path / "full", tmp_path / "inv"
    assert combine_prompt_networks.main(["--members", *map(str, members), "--out", str(full)]) == 0
    assert combine_prompt_networks.main(["--members", *map(str, members), "--out", str(inv_only),
                                         "--tta", "invert"]) == 0
    _, x = _frame_input()
    monkeypatch.setenv("LESIONSEG_LINE_MODEL_DIR", str(inv_only))
    net, card = line_model.load_line_model("prompt_unet", str(inv_only))
    assert card["tta"] == ["invert"]
    import torch

    with torch.inference_mode():
        xt = torch.from_numpy(x)
        inv = xt.clone()
        inv[:, 0] = 1 - inv[:, 0]
        expected = (torch.sigmoid(net(xt)) + torch.sigmoid(net(inv)))[:, 0].numpy() / 2
    got = line_model.predict_frames(x)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.abs(got - _probabilities(full, x, monkeypatch)).max() > 1e-4  # the mirror views are gone
