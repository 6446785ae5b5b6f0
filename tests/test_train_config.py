"""Training options are checked by value, not only by name: a typo must not train silently without it."""

import subprocess
import sys
from pathlib import Path

import pytest

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad, word", [
    ({"augment": ["flps"]}, "flps"),
    ({"augment": "flip"}, "must be a list"),
    ({"loss": "dcie"}, "dcie"),
    ({"fit": "tiles"}, "tiles"),
    ({"precision": "fp8"}, "fp8"),
    ({"modality": "ct"}, "ct"),
    ({"tta": ["hfilp"]}, "hfilp"),
    ({"normalisation": {"kind": "minmax"}}, "minmax"),
    ({"epochs": 0}, "epochs"),
    ({"patch_size": [224, -1]}, "patch_size"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"hard_pixel_fraction": -0.01}, "hard_pixel_fraction"),
    ({"hard_pixel_fraction": 1.0}, "hard_pixel_fraction"),
    ({"hard_pixel_fraction": "1%"}, "hard_pixel_fraction"),
    ({"hard_pixel_images": "normals"}, "hard_pixel_images"),
    ({"hard_pixel_weight": 0}, "hard_pixel_weight"),
    ({"hard_pixel_weight": "low"}, "hard_pixel_weight"),
])
def test_bad_values_are_refused_with_the_option_named(bad, word):
    with pytest.raises(LesionSegError, match=word):
        TrainConfig.from_dict({"name": "x", "modality": "ultrasound", **bad})


def test_every_shipped_recipe_is_valid():
    recipes = sorted((REPO / "models").glob("*.yaml"))
    assert recipes
    for path in recipes:
        assert TrainConfig.from_file(path).epochs > 0


def test_cli_reports_a_misspelt_augmentation_without_traceback(tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("name: typo\nmodality: ultrasound\naugment: [flps]\n")
    r = subprocess.run([sys.executable, "-m", "napari_lesionseg.cli.main", "train", "--config", str(cfg),
                        "--images", str(tmp_path), "--masks", str(tmp_path / "m"), "--output-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert "flps" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, words", [
    ("epochs: 3\n", ["lacks name, modality"]),     # a recipe without the two required options
    ("- name: x\n", ["key: value", "list"]),        # a YAML list, not options
    ("just words\n", ["key: value", "str"]),
])
def test_a_config_file_without_its_options_is_a_clear_error(tmp_path, text, words):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(text)
    with pytest.raises(LesionSegError) as err:
        TrainConfig.from_file(cfg)
    assert all(w in str(err.value) for w in words)


def test_name_and_modality_given_beside_the_file_complete_it(tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("epochs: 3\n")
    made = TrainConfig.from_file(cfg, name="mine", modality="ultrasound")  # as `lesionseg train --name --modality`
    assert (made.name, made.modality, made.epochs) == ("mine", "ultrasound", 3)
