"""Quality of line → mask on real lesions (BUSI 2D; pyradiomics and Duke 3D).

BUSI: every lesion image; each lesion (connected component of the ground-truth mask) gets a line on its longest
diameter, computed from the mask; Dice of the label union against the mask. Images are split in two by
md5(group) % 2 (BUSI `group` = one lesion). With --cv DIR, images of fold k are segmented by DIR/f{k}, a model
trained without fold k, so the learned figure is held out on every image.

    python benchmarks/eval_line_to_mask.py --method learned --cv /tmp/lineseg     # held-out learned
    python benchmarks/eval_line_to_mask.py --method classical --limit 120         # quick tuning loop
    python benchmarks/eval_line_to_mask.py --only3d
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_lesionseg.core.annotations.frame import longest_diameter, short_axis  # noqa: E402
from napari_lesionseg.core.annotations.lines import Line, ellipse_prior, lines_to_labels  # noqa: E402
from napari_lesionseg.core.metrics import dice  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from make_mri_pseudolabels import DUKE_BOX_ZYX  # noqa: E402  (the dataset's tumour box, in one place)


def fold_of(group: str, folds: int = 2) -> int:
    return int(hashlib.md5(group.encode()).hexdigest(), 16) % folds


def busi_cases(limit: int | None):
    cases = [c for c in json.loads((DATA / "ultrasound/busi/cases.json").read_text()) if c["cls"] != "normal"]
    if limit:
        rng = np.random.default_rng(0)
        cases = [cases[i] for i in sorted(rng.choice(len(cases), min(limit, len(cases)), replace=False))]
    return cases


def busi_lines(mask: np.ndarray, with_short: bool) -> list[Line]:
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    lines = []
    for k in range(1, n + 1):
        comp = lab == k
        if comp.sum() < 30:
            continue
        p0, p1 = longest_diameter(comp)
        lines.append(Line(p0, p1, short_axis(comp, p0, p1) if with_short else None))
    return lines


def ellipse_baseline(shape, lines: list[Line]) -> np.ndarray:
    from napari_lesionseg.core.annotations.frame import LineFrame

    out = np.zeros(shape, bool)
    for l in lines:
        fr = LineFrame.from_line(l.p0, l.p1)
        v, box = fr.paste(ellipse_prior(0.6, soft=0.01), shape)
        out[box] |= v > 0.5
    return out


def eval_busi(args) -> None:
    import imageio.v3 as iio

    rows = []
    t_all = time.time()
    for c in busi_cases(args.limit):
        img = iio.imread(DATA / "ultrasound/busi/images" / f"{c['name']}.png")
        mask = iio.imread(DATA / "ultrasound/busi/masks" / f"{c['name']}.png") > 0
        if mask.ndim == 3:
            mask = mask.any(-1)
        lines = busi_lines(mask, args.short_axis)
        if not lines:
            continue
        if args.jitter:  # a less careful reader: both ends moved by N(0, jitter × length), clipped to the image
            rng = np.random.default_rng(int(hashlib.md5(c["name"].encode()).hexdigest()[:8], 16))
            for l in lines:
                L = np.hypot(*(l.p1 - l.p0))
                l.p0 = np.clip(l.p0 + rng.normal(0, args.jitter * L, 2), 0, np.array(mask.shape) - 1)
                l.p1 = np.clip(l.p1 + rng.normal(0, args.jitter * L, 2), 0, np.array(mask.shape) - 1)
        fold = fold_of(c["group"])
        if args.cv:
            os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(Path(args.cv) / f"f{fold}")
        t = time.time()
        lab = lines_to_labels(img, lines, method=args.method)
        dt = time.time() - t
        rows.append((c["name"], fold, dice(lab > 0, mask), dice(ellipse_baseline(mask.shape, lines), mask), dt))
    d = np.array([r[2] for r in rows])
    e = np.array([r[3] for r in rows])
    f = np.array([r[1] for r in rows])
    print(f"BUSI line → mask, method={args.method}{' + short axis' if args.short_axis else ''}"
          f"{f', ends jittered {args.jitter:g}×L' if args.jitter else ''}"
          f"{' (held-out CV models ' + args.cv + ')' if args.cv else ''}: {len(rows)} images, "
          f"{time.time() - t_all:.0f} s, median {np.median([r[4] for r in rows]):.3f} s/image")
    print(f"{'subset':14s} {'n':>4s} {'mean Dice':>9s} {'p10':>6s} {'median':>6s} | {'ellipse 0.6×':>12s}")
    for name, sel in (("all", f >= 0), ("fold 0", f == 0), ("fold 1", f == 1)):
        if sel.any():
            print(f"{name:14s} {sel.sum():4d} {d[sel].mean():9.4f} {np.percentile(d[sel], 10):6.3f} "
                  f"{np.median(d[sel]):6.3f} | {e[sel].mean():12.4f}")
    if args.save:
        Path(args.save).write_text("\n".join(f"{r[0]},{r[1]},{r[2]:.4f},{r[3]:.4f},{r[4]:.3f}" for r in rows))


def _nifti(path):
    import nibabel as nib

    img = nib.load(str(path))
    a = np.asarray(img.dataobj).transpose(2, 1, 0)  # napari order (z, y, x)
    sp = np.asarray(img.header.get_zooms()[:3], float)[::-1]
    return a.astype(np.float32), sp


def eval_3d(args) -> None:
    print("\n3D line → mask (line on the slice with the largest lesion area, its longest diameter)")
    print(f"{'case':10s} {'voxels (mm)':>20s} {'Dice 3D':>8s} {'Dice slice':>10s} {'seconds':>8s}")
    for case in ("breast1", "brain1"):
        ip = DATA / "mri/pyradiomics" / f"{case}_image.nii.gz"
        if not ip.exists():
            continue
        vol, sp = _nifti(ip)
        lab, _ = _nifti(DATA / "mri/pyradiomics" / f"{case}_label.nii.gz")
        lab = lab > 0
        z = int(np.argmax(lab.sum((1, 2))))
        p0, p1 = longest_diameter(lab[z], sp[1:])
        t = time.time()
        m = lines_to_labels(vol, [Line(np.r_[z, p0], np.r_[z, p1])], spacing=sp, method=args.method3d) > 0
        dt = time.time() - t
        print(f"{case:10s} {'x'.join(f'{s:.2f}' for s in sp):>20s} {dice(m, lab):8.3f} {dice(m[z], lab[z]):10.3f} {dt:8.2f}")
    duke = DATA / "mri/duke_153"
    if (duke / "post1.nii.gz").exists():
        post, sp = _nifti(duke / "post1.nii.gz")
        pre, _ = _nifti(duke / "pre.nii.gz")
        sub = post - pre
        m, z, p0, p1, dt = duke_line_mask(sub, sp, args.method3d)
        box = np.zeros(sub.shape, bool)
        box[DUKE_BOX_ZYX] = True
        inside = (m & box).sum() / max(m.sum(), 1)
        vol_ml = m.sum() * np.prod(sp) / 1000
        zs = np.flatnonzero(m.any((1, 2)))
        print(f"duke_153 (post1 − pre) line on slice {z} from {np.round(p0).astype(int).tolist()} to "
              f"{np.round(p1).astype(int).tolist()}: {m.sum()} voxels = {vol_ml:.2f} mL, {inside:.1%} inside the "
              f"tumour box, slices {zs.min()}–{zs.max()}, {dt:.2f} s")


def duke_line_mask(sub, sp, method="auto"):
    """The Duke line as a reader would draw it (scripts/make_mri_pseudolabels.py says how) and its 3D mask."""
    from make_mri_pseudolabels import duke_line

    z, p0, p1 = duke_line(sub, sp)
    t = time.time()
    m = lines_to_labels(sub, [Line(np.r_[z, p0], np.r_[z, p1])], spacing=sp, method=method) > 0
    return m, z, p0, p1, time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="auto")
    ap.add_argument("--method3d", default="auto")
    ap.add_argument("--cv", help="folder with f0/ f1/ cross-validation models")
    ap.add_argument("--limit", type=int, help="random subset of N lesion images (tuning loops)")
    ap.add_argument("--short-axis", action="store_true", help="also give the RECIST short axis from the mask")
    ap.add_argument("--jitter", type=float, default=0.0, help="move line ends by N(0, J × length) (reader error)")
    ap.add_argument("--only3d", action="store_true")
    ap.add_argument("--no3d", action="store_true")
    ap.add_argument("--save", help="CSV of per-image Dice")
    args = ap.parse_args()
    if not args.only3d:
        eval_busi(args)
    if not args.no3d:
        eval_3d(args)


if __name__ == "__main__":
    main()
