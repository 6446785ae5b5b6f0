"""Speed of line → mask: one 2D lesion in a 1000 × 1000 image (≤ 0.3 s) and one 3D lesion in the 448 × 448 × 160
Duke volume (≤ 3 s). Times are medians of 5 runs after one warm-up (model loading is not counted: the dock keeps it).
Exit status 1 when a target is missed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_lesionseg.core.annotations import Line, lines_to_labels, longest_diameter  # noqa: E402
from napari_lesionseg.core.annotations.line_model import line_model_available, model_card  # noqa: E402


def timed(fn, runs=5):
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), out


def image_2d():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:1000, :1000].astype(float)
    truth = ((yy - 480) / 120) ** 2 + ((xx - 530) / 210) ** 2 <= 1
    img = 150 + 30 * rng.standard_normal((1000, 1000))
    img[truth] = 60 + 20 * rng.standard_normal(truth.sum())
    return img.astype(np.float32), truth


def main() -> int:
    rows = []
    img, truth = image_2d()
    p0, p1 = longest_diameter(truth)
    methods = ["classical"] + (["learned"] if line_model_available() else [])
    for m in methods:
        t, lab = timed(lambda: lines_to_labels(img, [Line(p0, p1)], method=m))
        d = 2 * ((lab > 0) & truth).sum() / ((lab > 0).sum() + truth.sum())
        rows.append((f"2D 1000×1000, {m}", t, 0.3, f"Dice {d:.3f}"))
    if line_model_available() and "prompt_channels" in model_card():
        from napari_lesionseg.core.annotations.prompts import box_to_mask

        rows_, cols_ = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
        t, m = timed(lambda: box_to_mask(img, (rows_[0], cols_[0]), (rows_[-1], cols_[-1])))
        d = 2 * (m & truth).sum() / (m.sum() + truth.sum())
        rows.append(("2D 1000×1000, box (prompt net)", t, 0.2, f"Dice {d:.3f}"))
    duke = DATA / "mri" / "duke_153"
    if (duke / "post1.nii.gz").exists():
        import nibabel as nib

        def load(name):
            im = nib.load(str(duke / name))
            return np.asarray(im.dataobj, np.float32).transpose(2, 1, 0), np.asarray(im.header.get_zooms()[:3])[::-1]

        post, sp = load("post1.nii.gz")
        pre, _ = load("pre.nii.gz")
        sub = post - pre
        line = Line(np.array([68, 67, 95.0]), np.array([68, 56, 120.0]))  # across the enhancing lesion, slice 68
        t, lab = timed(lambda: lines_to_labels(sub, [line], spacing=sp))
        rows.append((f"3D {'×'.join(map(str, sub.shape[::-1]))} Duke", t, 3.0,
                     f"{(lab > 0).sum() * np.prod(sp) / 1000:.2f} mL"))
    print(f"{'case':32s} {'median s':>9s} {'target s':>9s}  result")
    ok = True
    for name, t, target, note in rows:
        ok &= t <= target
        print(f"{name:32s} {t:9.3f} {target:9.1f}  {note}{'' if t <= target else '  MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
