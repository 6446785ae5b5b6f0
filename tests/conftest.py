"""Shared fixtures: where the real data lives (tests that need it skip cleanly when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# torch's stack (torchvision pulls in triton) is imported before any napari viewer opens OpenGL: on Mesa's
# llvmpipe a later triton import segfaults (see napari_lesionseg/_triton_guard.py).
import segmentation_models_pytorch  # noqa: F401,E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; skips the test when it is not on this machine."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it does not exist."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not found: {p}")
    return p


def load_repo_script(relative: str):
    """A benchmark or script of the repository (not a package) imported by path, for tests of its logic."""
    import importlib.util

    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pyradiomics_volume(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A labelled pyradiomics MRI volume (`breast1`, `brain1`) as (z, y, x) float32 voxels, boolean label and
    spacing in mm in the same order; skips the test when it is not on this machine."""
    import nibabel as nib

    im = nib.load(str(shared_path("mri", "pyradiomics", f"{case}_image.nii.gz")))
    lab = np.asarray(nib.load(str(shared_path("mri", "pyradiomics", f"{case}_label.nii.gz"))).dataobj).T > 0
    return np.asarray(im.dataobj).T.astype(np.float32), lab, np.asarray(im.header.get_zooms()[:3], float)[::-1]


@pytest.fixture(autouse=True)
def _user_model_dir(tmp_path_factory, monkeypatch):
    """Fine-tuned models from tests go to a temporary per-user model directory, never the real one."""
    d = tmp_path_factory.mktemp("user-models")
    monkeypatch.setenv("LESIONSEG_USER_MODELS_DIR", str(d))
    monkeypatch.setenv("LESIONSEG_AUTOSAVE_DIR", str(tmp_path_factory.mktemp("autosave")))
    yield d


@pytest.fixture
def messages():
    """What napari notified (errors, warnings, infos) while the test ran, as text."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def collect(n):
        seen.append(str(n.message))

    notification_manager.notification_ready.connect(collect)
    yield seen
    notification_manager.notification_ready.disconnect(collect)
