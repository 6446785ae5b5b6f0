"""A recipe may list several image/mask folders (`sources`): all are trained on as one set, with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.training.augment import augment_batch, hed_jitter
from napari_lesionseg.core.training.config import TrainConfig
from napari_lesionseg.core.training.data import load_sources
from tiny_models import blob_image

REPO = Path(__file__).resolve().parents[1]


def _folder(root: Path, names: list[str], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        img, mask = blob_image(rng, shape=(64, 64), n_blobs=2, rgb=True)
        iio.imwrite(root / "images" / f"{name}.png", img)
        iio.imwrite(root / "masks" / f"{name}.png", mask)  # 0/1 as MoNuSeg's masks
    return {"images": str(root / "images"), "masks": str(root / "masks")}


def _cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({"name": "multi", "modality": "histology", "input_kind": "rgb", **kw})


def test_cases_of_every_source_are_loaded_as_one_set(tmp_path):
    a = _folder(tmp_path / "breast", ["b1", "b2"], 0)
    b = _folder(tmp_path / "other", ["o1", "o2", "o3"], 1)
    messages = []
    cases = load_sources(_cfg(sources=[a, b]), report=messages.append)
    assert sorted(c.name for c in cases) == ["b1", "b2", "o1", "o2", "o3"]
    assert all(set(np.unique(c.mask)) <= {0, 1} and c.mask.any() for c in cases)
    assert messages == ["2 image/mask pairs found", "3 image/mask pairs found"]


def test_one_images_masks_pair_still_works_through_the_same_function(tmp_path):
    a = _folder(tmp_path / "a", ["x1", "x2"], 0)
    assert [c.name for c in load_sources(_cfg(**a))] == ["x1", "x2"]


@pytest.mark.parametrize("sources, word", [
    ("a/images", "non-empty list"),
    ([], "non-empty list"),
    (["a/images"], "entry 1 must be a mapping"),
    ([{"images": "a"}, {"images": "b", "masks": "c"}], "entry 1 needs masks"),
    ([{"images": "a", "masks": "b", "labels": "c"}], "unknown key(s) labels"),
])
def test_malformed_sources_are_refused_with_the_entry_named(sources, word):
    with pytest.raises(LesionSegError, match=word.replace("(", r"\(").replace(")", r"\)")):
        _cfg(sources=sources)


def test_sources_beside_images_is_refused():
    with pytest.raises(LesionSegError, match="either images/masks/cases_json or sources"):
        _cfg(images="a", masks="b", sources=[{"images": "c", "masks": "d"}])


def test_a_missing_source_folder_and_a_name_in_two_sources_are_refused(tmp_path):
    a = _folder(tmp_path / "a", ["t1", "t2"], 0)
    with pytest.raises(LesionSegError, match="Image folder not found"):
        load_sources(_cfg(sources=[a, {"images": str(tmp_path / "nowhere"), "masks": a["masks"]}]))
    b = _folder(tmp_path / "b", ["t2", "t3"], 1)
    with pytest.raises(LesionSegError, match="t2 is in both"):
        load_sources(_cfg(sources=[a, b]))


def test_cli_trains_one_model_on_two_folders(tmp_path):
    a = _folder(tmp_path / "breast", ["b1", "b2"], 0)
    b = _folder(tmp_path / "other", ["o1", "o2"], 1)
    recipe = {"name": "two-folders", "modality": "histology", "input_kind": "rgb", "sources": [a, b],
              "encoder": "resnet18", "decoder_channels": [32, 16, 8, 8, 4], "fit": "tile", "patch_size": [32, 32],
              "normalisation": {"kind": "range", "max": 255}, "epochs": 1, "samples_per_epoch": 8,
              "batch_size": 4, "val_fraction": 0.0, "early_stopping": 0, "augment": ["flip", "hed"]}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    r = subprocess.run([sys.executable, "-m", "napari_lesionseg.cli.main", "train", "--config",
                        str(tmp_path / "recipe.json"), "--threads", "1", "--output-dir", str(tmp_path / "models")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "4 training and 0 validation cases" in r.stdout
    card = json.loads((tmp_path / "models" / "two-folders.json").read_text())
    assert card["metrics"]["n_train_cases"] == 4
    assert (tmp_path / "models" / "two-folders.safetensors").exists()


def test_cli_refuses_an_output_folder_that_is_a_source(tmp_path):
    a = _folder(tmp_path / "a", ["b1"], 0)
    recipe = {"name": "clash", "modality": "histology", "input_kind": "rgb", "sources": [a]}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    r = subprocess.run([sys.executable, "-m", "napari_lesionseg.cli.main", "train", "--config",
                        str(tmp_path / "recipe.json"), "--output-dir", a["masks"]],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "sources entry 1 masks" in r.stderr
    assert sorted(p.name for p in Path(a["masks"]).iterdir()) == ["b1.png"]


def test_hed_jitter_changes_stain_not_the_mask_and_stays_in_range():
    rng = np.random.default_rng(0)
    rgb = np.stack([blob_image(rng, shape=(32, 32), n_blobs=1, rgb=True)[0] for _ in range(8)])
    x = torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255 * 2 - 1)
    y = torch.zeros(8, 32, 32, dtype=torch.int64)
    y[:, 8:16, 8:16] = 1
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(hed_jitter(x, gen, sigma=0.0), x.clamp(-1 + 2e-3, 1), atol=1e-4)
    xa, ya = augment_batch(x.clone(), y.clone(), ["hed"], gen)
    assert torch.equal(ya, y)
    assert xa.min() >= -1 and xa.max() <= 1
    shift = (xa - x).abs().mean(dim=(2, 3))  # per image and channel
    assert (shift.mean(1) > 0.005).all() and (shift.mean(1) < 0.3).all()


def test_hed_sigma_sets_how_far_the_stains_move_and_is_checked():
    """A recipe's `hed_sigma` reaches the augmentation: 0.2 moves the colours further than the default 0.05, and a
    value outside [0, 0.5] is refused with the option's name."""
    rng = np.random.default_rng(1)
    rgb = np.stack([blob_image(rng, shape=(32, 32), n_blobs=1, rgb=True)[0] for _ in range(16)])
    x = torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255 * 2 - 1)
    y = torch.zeros(16, 32, 32, dtype=torch.int64)
    moved = {}
    for sigma in (0.05, 0.2):
        xa, _ = augment_batch(x.clone(), y.clone(), ["hed"], torch.Generator().manual_seed(0), hed_sigma=sigma)
        moved[sigma] = float((xa - x).abs().mean())
    assert moved[0.2] > 2 * moved[0.05]
    assert TrainConfig.from_file(REPO / "models/histology-nuclei.yaml").hed_sigma == 0.2
    with pytest.raises(LesionSegError, match="hed_sigma"):
        TrainConfig(name="n", modality="histology", images="i", masks="m", hed_sigma=0.9)
