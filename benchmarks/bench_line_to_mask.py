"""Speed of line → mask: one 2D lesion in a 1000 × 1000 image (≤ 0.3 s) and one 3D lesion in the 448 × 448 × 160
Duke volume (≤ 3 s); the line with its short axis, box and click prompts, and a click refined by a positive and a
negative click (≤ 0.2 s each).
Times are medians of 5 runs after one warm-up (model loading is not counted: the dock keeps it), on two CPU
threads (`--threads`). Exit status 1 when a target is missed."""

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
from napari_lesionseg.core.metrics import dice  # noqa: E402


CPU_TIMES: dict[str, float] = {}


def timed(fn, runs=5, name=None):
    """(median wall seconds, result); with a name, the median CPU seconds of this process go to CPU_TIMES (on a
    shared machine they show what an idle one would take, for work that runs on one thread)."""
    fn()
    ts, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if name:
        CPU_TIMES[name] = float(np.median(cpu))
    return float(np.median(ts)), out


def image_2d():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:1000, :1000].astype(float)
    truth = ((yy - 480) / 120) ** 2 + ((xx - 530) / 210) ** 2 <= 1
    img = 150 + 30 * rng.standard_normal((1000, 1000))
    img[truth] = 60 + 20 * rng.standard_normal(truth.sum())
    return img.astype(np.float32), truth


def click_rows(img, truth) -> list[tuple]:
    """A click at the lesion's centre (size from the image), then one refinement with a positive click beyond
    the mask and a negative click inside it."""
    from napari_lesionseg.core.annotations.prompts import click_to_mask

    centre = (480, 530)
    t, m = timed(lambda: click_to_mask(img, centre, modality="ultrasound"), name="2D 1000×1000, click (prompt net)")
    d = dice(m, truth)
    rows = [("2D 1000×1000, click (prompt net)", t, 0.2, f"Dice {d:.3f}")]
    missed = np.argwhere(truth & ~m)
    pos = [missed[len(missed) // 2]] if len(missed) else [(480, 700)]
    t, m2 = timed(lambda: click_to_mask(img, centre, positive=pos, negative=[(480, 540)], modality="ultrasound"),
                  name="2D 1000×1000, click refined (+1, −1)")
    d = dice(m2, truth)
    rows.append(("2D 1000×1000, click refined (+1, −1)", t, 0.2, f"Dice {d:.3f}"))
    return rows


def main() -> int:
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(ap.parse_args().threads)
    rows = []
    img, truth = image_2d()
    p0, p1 = longest_diameter(truth)
    methods = ["classical"] + (["learned"] if line_model_available() else [])
    for m in methods:
        t, lab = timed(lambda: lines_to_labels(img, [Line(p0, p1)], method=m))
        d = dice(lab > 0, truth)
        rows.append((f"2D 1000×1000, {m}", t, 0.3, f"Dice {d:.3f}"))
    if line_model_available():  # the line with its RECIST short axis (a second line in the dock)
        from napari_lesionseg.core.annotations import short_axis

        s = short_axis(truth, p0, p1)
        t, lab = timed(lambda: lines_to_labels(img, [Line(p0, p1, s)], method="learned"),
                       name="2D 1000×1000, line + short axis")
        d = dice(lab > 0, truth)
        rows.append(("2D 1000×1000, line + short axis", t, 0.2, f"Dice {d:.3f}"))
    if line_model_available() and "prompt_channels" in model_card():
        from napari_lesionseg.core.annotations.prompts import box_to_mask

        rows_, cols_ = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
        t, m = timed(lambda: box_to_mask(img, (rows_[0], cols_[0]), (rows_[-1], cols_[-1])),
                     name="2D 1000×1000, box (prompt net)")
        d = dice(m, truth)
        rows.append(("2D 1000×1000, box (prompt net)", t, 0.2, f"Dice {d:.3f}"))
        rows += click_rows(img, truth)
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
    print(f"{'case':38s} {'median s':>9s} {'CPU s':>6s} {'target s':>9s}  result")
    ok = True
    for name, t, target, note in rows:
        ok &= t <= target
        cpu = f"{CPU_TIMES[name]:6.3f}" if name in CPU_TIMES else "     -"
        print(f"{name:38s} {t:9.3f} {cpu} {target:9.1f}  {note}{'' if t <= target else '  MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
