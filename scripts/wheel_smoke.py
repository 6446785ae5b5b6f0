"""Checks an installed napari-lesionseg wheel as a new user would meet it (run by scripts/wheel_smoke.sh).

Run with the fresh virtual environment's python, from a folder outside the clone: everything must come from the
installed package. `--repo` names the clone only to compare against (which models and samples it ships);
`--shared` the shared data folder (a real ultrasound image from a second hospital, when present).
Prints one line per check and a closing count; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

PACKAGED = ("json", "safetensors", "md", "yaml")  # what pyproject.toml packs from models/
US_IMAGE = "ultrasound/breast_lesions_usg/images/10013.png"  # first image by name of a hospital BUSI is not from
US_MASK = "ultrasound/breast_lesions_usg/masks/10013.png"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def lesionseg(*args: str) -> str:
    """Run the installed `lesionseg` command (the venv's console script), return its output; fail on exit != 0."""
    exe = Path(sys.executable).with_name("lesionseg")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"lesionseg {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Smoke:
    def __init__(self, repo: Path, shared: Path | None, work: Path):
        import napari_lesionseg

        self.repo, self.shared, self.work = repo, shared, work
        self.pkg = Path(napari_lesionseg.__file__).parent

    def installed_not_the_clone(self):
        assert self.repo.resolve() not in self.pkg.resolve().parents, f"imported from the clone: {self.pkg}"
        assert "site-packages" in self.pkg.parts, self.pkg
        assert not Path.cwd().resolve().is_relative_to(self.repo.resolve()), "run from inside the clone"

    def version(self):
        from napari_lesionseg import __version__

        assert __version__ == importlib.metadata.version("napari-lesionseg")
        assert lesionseg("--version").strip() == f"lesionseg {__version__}"

    def every_model_file_is_packed(self):
        from napari_lesionseg.resources import shipped_models_dir

        shipped = shipped_models_dir()
        assert shipped.is_relative_to(self.pkg), shipped
        wanted = {p.relative_to(self.repo / "models") for p in (self.repo / "models").rglob("*")
                  if p.is_file() and p.suffix.lstrip(".") in PACKAGED}
        have = {p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file()}
        assert wanted and wanted <= have, f"missing from the wheel: {sorted(map(str, wanted - have))}"

    def models_listed_inside_the_package(self):
        from napari_lesionseg.core.models import ModelRegistry

        out = lesionseg("models")
        names = {c.name for c in ModelRegistry([self.repo / "models"]).cards(kind=None)}  # every kind the clone holds
        assert "ultrasound-lesion" in names, names
        for name in names:
            assert name in out, f"{name} not listed:\n{out}"
        paths = [Path(w) for w in out.split() if w.endswith(".json")]
        assert len(paths) == len(names), out
        for p in paths:
            assert p.is_relative_to(self.pkg) and p.exists() and p.with_suffix(".safetensors").exists(), p

    def _ultrasound_case(self):
        import imageio.v3 as iio

        from napari_lesionseg.resources import sample_data_dir

        if self.shared and (self.shared / US_IMAGE).exists():
            image, mask = self.shared / US_IMAGE, self.shared / US_MASK
        else:  # no shared data: the packaged BUSI sample with its expert mask
            image = sample_data_dir() / "busi_malignant_006.png"
            mask = sample_data_dir() / "busi_malignant_006_mask.png"
        return image, iio.imread(mask) > 0

    def predict_ultrasound(self):
        import imageio.v3 as iio

        image, truth = self._ultrasound_case()
        out = self.work / "us_mask.png"
        lesionseg("predict", "--model", "ultrasound-lesion", "--input", str(image), "--output", str(out),
                  "--device", "cpu")
        d = dice(iio.imread(out) > 0, truth)
        print(f"    {image.name}: Dice {d:.3f} against the expert mask")
        assert d > 0.5, d

    def line_tool_uses_its_network(self):
        import imageio.v3 as iio

        from napari_lesionseg.core.annotations import line_model
        from napari_lesionseg.core.annotations.frame import longest_diameter
        from napari_lesionseg.core.annotations.lines import line_to_mask

        assert line_model.model_dir().is_relative_to(self.pkg) and line_model.line_model_available()
        image, truth = self._ultrasound_case()
        img = np.asarray(iio.imread(image))
        p0, p1 = longest_diameter(truth)
        auto = line_to_mask(img, p0, p1, method="auto")
        learned = line_to_mask(img, p0, p1, method="learned")
        assert np.array_equal(auto, learned), "the line tool fell back to the classical method"
        d = dice(auto, truth)
        print(f"    line across {image.name}: Dice {d:.3f}")
        assert d > 0.5, d

    def every_sample_opens(self):
        from npe2 import PluginManager

        pm = PluginManager.instance()
        pm.discover()
        samples = pm.get_manifest("napari-lesionseg").contributions.sample_data
        assert len(samples) == 4, samples
        for s in samples:
            layers = s.open()
            assert layers and all(np.asarray(data).size for data, *_ in layers), s.key
            src = layers[0][1]["metadata"]["lesionseg"]["source_path"]
            assert Path(src).is_relative_to(self.pkg), src

    def napari_finds_the_manifest(self):
        exe = Path(sys.executable).with_name("npe2")
        listed = subprocess.run([str(exe), "list"], capture_output=True, text=True, check=True).stdout
        assert "napari-lesionseg" in listed, listed
        done = subprocess.run([str(exe), "validate", "napari-lesionseg", "--imports"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=None)
    args = ap.parse_args(argv)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="lesionseg-smoke-") as tmp:
        smoke = Smoke(args.repo, args.shared, Path(tmp))
        checks = [getattr(smoke, n) for n in vars(Smoke) if not n.startswith("_") and callable(getattr(smoke, n))]
        for check in checks:
            try:
                check()
            except Exception:
                failed += 1
                print(f"FAILED {check.__name__}\n{traceback.format_exc()}")
            else:
                passed += 1
                print(f"ok     {check.__name__}")
    # Not pytest's closing-line format: the test suite's own summary stays the run's last word.
    print(f"wheel smoke: {passed} of {passed + failed} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
