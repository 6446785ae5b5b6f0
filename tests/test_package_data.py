"""What a wheel carries and how the installed plugin finds it: models, line network and samples are package data
found through importlib.resources, the napari manifest is valid, the version is one, torch is a range.

`scripts/wheel_smoke.sh` (run by `make test`) builds the real wheel and checks it in a fresh virtual environment;
these tests keep the same promises checkable in the normal suite, in seconds.
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

import napari_lesionseg
from napari_lesionseg.cli.main import main
from napari_lesionseg.core.annotations import line_model
from napari_lesionseg.core.models import ModelRegistry, default_registry
from napari_lesionseg.napari import _sample_data
from napari_lesionseg.resources import line_prompt_dir, sample_data_dir, shipped_models_dir

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE = Path(str(files("napari_lesionseg")))


def _packed(folder: str) -> set[Path]:
    """Files of napari_lesionseg/resources/<folder> that pyproject's package-data globs put into the wheel."""
    base = PACKAGE / "resources"
    out = set()
    for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["napari_lesionseg.resources"]:
        if pattern.startswith(folder + "/"):
            out |= {Path(p).relative_to(base / folder) for p in glob.glob(str(base / pattern), recursive=True)
                    if Path(p).is_file()}
    return out


def _files(top: Path) -> set[Path]:
    return {p.relative_to(top) for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("folder", ["models", "sample_data"])
def test_every_file_of_the_top_level_folder_goes_into_the_wheel(folder):
    repo_files = _files(REPO / folder)
    assert repo_files
    missing = repo_files - _packed(folder)
    assert not missing, f"not packed by pyproject.toml's package-data: {sorted(map(str, missing))}"
    if folder == "models":  # cards, weights and the line network, wherever they sit under models/
        assert {Path("line_prompt/busi_line_unet.json"), Path("line_prompt/busi_line_unet.safetensors")} <= repo_files


def test_resources_are_found_inside_the_package(monkeypatch):
    for var in ("LESIONSEG_MODELS_DIR", "LESIONSEG_LINE_MODEL_DIR"):
        monkeypatch.delenv(var, raising=False)
    for d in (shipped_models_dir(), line_prompt_dir(), sample_data_dir()):
        assert d.is_dir() and d.is_relative_to(PACKAGE), d
    cards = default_registry().cards()  # the per-user folder is an empty temporary one (conftest)
    from_the_clone = {c.name for c in ModelRegistry([REPO / "models"]).cards()}
    assert {c.name for c in cards} == from_the_clone and "ultrasound-lesion" in from_the_clone
    for card in cards:
        assert card.path.is_relative_to(PACKAGE) and card.weights_path.is_relative_to(PACKAGE), card.path
    assert line_model.model_dir() == line_prompt_dir() and line_model.line_model_available()
    assert _sample_data.SAMPLE_DIR == sample_data_dir()


def test_an_environment_folder_still_replaces_the_shipped_models(monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONSEG_MODELS_DIR", str(tmp_path))
    from napari_lesionseg.core.models.registry import shipped_models_dir as registry_dir

    assert registry_dir() == tmp_path


def test_no_module_walks_up_from_its_own_file_to_find_data():
    offenders = []
    for path in (REPO / "napari_lesionseg").rglob("*.py"):
        text = path.read_text()
        if re.search(r"__file__\)?\.(resolve\(\)\.)?parents?\b", text) or "parents[" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_version_is_one_and_the_cli_prints_it(capsys):
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "napari_lesionseg.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", napari_lesionseg.__version__)
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lesionseg {napari_lesionseg.__version__}"


def test_napari_manifest_validates_and_every_command_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(PACKAGE / "napari.yaml")
    assert manifest.name == "napari-lesionseg"
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert hasattr(importlib.import_module(module), attr), command.python_name
    assert len(manifest.contributions.sample_data) == 4
    entry = [e for e in importlib.metadata.entry_points(group="napari.manifest") if e.name == "napari-lesionseg"]
    assert entry and entry[0].value == "napari_lesionseg:napari.yaml"


def test_users_get_ranges_and_make_gets_the_exact_torch():
    from packaging.requirements import Requirement

    deps = {Requirement(d).name: Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    pins = {Requirement(line).name: Requirement(line) for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    for name in ("torch", "torchvision"):
        spec = deps[name].specifier
        assert not any(s.operator == "==" for s in spec) and len(spec) == 2, spec  # a lower and an upper bound
        (pin,) = pins[name].specifier
        assert pin.operator == "==" and spec.contains(pin.version), (spec, pin)
        installed = importlib.metadata.version(name).split("+")[0]
        assert spec.contains(installed), (name, installed, spec)
    assert "pandas" not in deps
    for extra in ("openslide", "pretrained", "bench", "qt", "test"):
        assert PYPROJECT["project"]["optional-dependencies"][extra]
    meta = PYPROJECT["project"]
    assert "Framework :: napari" in meta["classifiers"] and meta["license"] == "BSD-3-Clause"
    assert meta["license-files"] == ["LICENSE"] and "BSD 3-Clause" in (REPO / "LICENSE").read_text()
