"""3D lesion from one diameter line, on every labelled MRI volume we have, per volume and per slice.

Volumes: pyradiomics breast1 (breast MRI crop, 2.1 mm slices) and brain1 (brain tumour, 6.5 mm slices), both with
voxel labels; Duke-Breast-Cancer-MRI 153 (post1 − pre), which has only the dataset's tumour box (share of the mask
inside the box, volume, slices reached). Prompts per volume:
- the reference line: the label's longest in-plane diameter on its largest slice (Duke: `duke_line`, as
  scripts/make_mri_pseudolabels.py draws it), as `eval_line_to_mask.py` does;
- 6 reader-like variants of it (each end moved by N(0, 0.04 L), seed 0);
- the longest diameter on every other slice with at least half the largest slice's area (a reader may pick it).
Choices in `core/annotations/propagate.py` were compared on all three volumes together, never on one.

    python benchmarks/eval_line3d.py                  # method auto (the prompt network when installed)
    python benchmarks/eval_line3d.py --method classical   # the previous default (classical slice + walker)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))

from eval_line_to_mask import DATA, _nifti  # noqa: E402
from make_mri_pseudolabels import DUKE_BOX_ZYX, duke_line  # noqa: E402

from napari_lesionseg.core.annotations.frame import longest_diameter  # noqa: E402
from napari_lesionseg.core.annotations.lines import Line, lines_to_labels  # noqa: E402
from napari_lesionseg.core.metrics import dice  # noqa: E402


def volumes():
    """(name, volume, spacing, label or the Duke box, slice of the reference line, its two ends)."""
    for case in ("breast1", "brain1"):
        ip = DATA / "mri/pyradiomics" / f"{case}_image.nii.gz"
        if ip.exists():
            vol, sp = _nifti(ip)
            lab = _nifti(DATA / "mri/pyradiomics" / f"{case}_label.nii.gz")[0] > 0
            z = int(np.argmax(lab.sum((1, 2))))
            yield case, vol, sp, lab, z, *longest_diameter(lab[z], sp[1:])
    duke = DATA / "mri/duke_153"
    if (duke / "post1.nii.gz").exists():
        post, sp = _nifti(duke / "post1.nii.gz")
        sub = post - _nifti(duke / "pre.nii.gz")[0]
        box = np.zeros(sub.shape, bool)
        box[DUKE_BOX_ZYX] = True
        yield "duke_153", sub, sp, box, *duke_line(sub, sp)


def prompts(shape, sp, lab, z, p0, p1, labelled: bool):
    rng = np.random.default_rng(0)
    length = float(np.hypot(*(np.asarray(p1) - p0)))
    hi = np.asarray(shape[1:], float) - 1
    out = [(z, np.asarray(p0, float), np.asarray(p1, float))]
    out += [(z, np.clip(p0 + rng.normal(0, 0.04 * length, 2), 0, hi), np.clip(p1 + rng.normal(0, 0.04 * length, 2),
                                                                               0, hi)) for _ in range(6)]
    if labelled:
        area = lab.sum((1, 2))
        out += [(int(k), *longest_diameter(lab[k], sp[1:])) for k in np.flatnonzero(area >= 0.5 * area.max())
                if k != z]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="auto")
    args = ap.parse_args()
    print(f"3D line → mask, method {args.method}")
    for name, vol, sp, lab, z, p0, p1 in volumes():
        labelled = name != "duke_153"
        rows = []
        for k, a, b in prompts(vol.shape, sp, lab, z, p0, p1, labelled):
            t = time.time()
            m = lines_to_labels(vol, [Line(np.r_[k, a], np.r_[k, b])], spacing=sp, method=args.method) > 0
            rows.append((m, time.time() - t))
        m = rows[0][0]
        secs = np.array([r[1] for r in rows])
        if labelled:
            scores = np.array([dice(r[0], lab) for r in rows])
            per = " ".join(f"{k}:{dice(m[k], lab[k]):.2f}" if lab[k].any() else f"{k}:[{m[k].sum()} px]"
                           for k in range(vol.shape[0]) if lab[k].any() or m[k].any())
            print(f"{name:9s} reference line Dice {scores[0]:.3f}; all {len(scores)} prompts mean {scores.mean():.3f}"
                  f" (min {scores.min():.3f}); {secs.mean():.2f} s/line\n          per slice {per}")
        else:
            inside = [(r[0] & lab).sum() / max(r[0].sum(), 1) for r in rows]
            ml = np.array([r[0].sum() * np.prod(sp) / 1000 for r in rows])
            zs = np.flatnonzero(m.any((1, 2)))
            print(f"{name:9s} reference line {ml[0]:.2f} mL, {inside[0]:.1%} inside the tumour box, slices "
                  f"{zs.min()}–{zs.max()} (box {DUKE_BOX_ZYX[0].start}–{DUKE_BOX_ZYX[0].stop - 1}); all "
                  f"{len(rows)} prompts {ml.mean():.2f} ± {ml.std():.2f} mL, {np.mean(inside):.1%} inside; "
                  f"{secs.mean():.2f} s/line")


if __name__ == "__main__":
    main()
