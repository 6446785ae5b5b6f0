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
    python benchmarks/eval_line3d.py --prompt box         # the box / a click at the centre on the same slices
    python benchmarks/eval_line3d.py --prompt cross       # each line with its RECIST short axis (labelled volumes)
    python benchmarks/eval_line3d.py --model mri_line_unet   # lines through a chosen prompt network

--prompt box: the label's bounding box on the line's slice (Duke: the line's); click: the point deepest inside
that slice's label (Duke: the line's middle). Box and click draw their slice with the network whatever the
method; --method classical then keeps the walker alone (the previous behaviour).
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

from napari_lesionseg.core.annotations.frame import longest_diameter, short_axis  # noqa: E402
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


def segment(vol, sp, outline, k, a, b, prompt: str, method: str, model: str | None = None) -> np.ndarray:
    """The 3D mask from one prompt on slice k (a, b: the line's ends; outline: the label on slice k, None for
    Duke), through the functions the dock calls. model: the prompt network for lines (None: the default)."""
    if prompt in ("line", "cross"):
        short = None
        if prompt == "cross":  # the line with its RECIST short axis on the slice's label
            s0, s1 = short_axis(outline, a, b, sp[1:])
            short = (np.r_[k, s0], np.r_[k, s1])
        return lines_to_labels(vol, [Line(np.r_[k, a], np.r_[k, b], short)], spacing=sp, method=method,
                               model=model) > 0
    from scipy import ndimage as ndi

    from napari_lesionseg.core.annotations import prompts

    sl = outline
    if prompt == "box":
        if sl is None:  # the Duke box is not a lesion outline: the box around the line, as wide as it is long
            c, h = (np.asarray(a) + b) / 2, np.hypot(*(np.asarray(b) - a)) / 2
            lo, hi = c - h, c + h
        else:
            rows, cols = np.flatnonzero(sl.any(1)), np.flatnonzero(sl.any(0))
            lo, hi = (rows[0], cols[0]), (rows[-1], cols[-1])
        return prompts.box_to_mask(vol, (k, *lo), (k, *hi), spacing=sp, method=method)
    if sl is None:
        centre = (np.asarray(a) + b) / 2
    else:
        dist = ndi.distance_transform_edt(sl)
        centre = np.unravel_index(np.argmax(dist), dist.shape)
    return prompts.click_to_mask(vol, (k, *centre), spacing=sp, method=method, modality="mri")


def segmented_volumes(prompt: str, method: str, model: str | None = None):
    """Per volume (name, volume, spacing, label or Duke box, [(3D mask, seconds)] per prompt; the reference first)."""
    for name, vol, sp, lab, z, p0, p1 in volumes():
        labelled = name != "duke_153"
        if prompt == "cross" and not labelled:  # the Duke box is no outline: it has no short axis to draw
            continue
        todo = prompts(vol.shape, sp, lab, z, p0, p1, labelled)
        if prompt not in ("line", "cross"):  # jittering a box or click is not a reader's error model: the slices only
            todo = [todo[0]] + todo[7:]
        rows = []
        for k, a, b in todo:
            t = time.time()
            m = segment(vol, sp, lab[k] if labelled else None, k, a, b, prompt, method, model)
            rows.append((m, time.time() - t))
        yield name, vol, sp, lab, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="auto")
    ap.add_argument("--prompt", default="line", choices=("line", "cross", "box", "click"))
    ap.add_argument("--model", help="prompt network for lines (e.g. mri_line_unet); default: what code without a "
                                    "modality gets (prompt_unet)")
    args = ap.parse_args()
    print(f"3D {args.prompt} → mask, method {args.method}" + (f", lines by {args.model}" if args.model else ""))
    for name, vol, sp, lab, rows in segmented_volumes(args.prompt, args.method, args.model):
        labelled = name != "duke_153"
        m = rows[0][0]
        secs = np.array([r[1] for r in rows])
        if labelled:
            scores = np.array([dice(r[0], lab) for r in rows])
            per = " ".join(f"{k}:{dice(m[k], lab[k]):.2f}" if lab[k].any() else f"{k}:[{m[k].sum()} px]"
                           for k in range(vol.shape[0]) if lab[k].any() or m[k].any())
            print(f"{name:9s} reference {args.prompt} Dice {scores[0]:.3f}; all {len(scores)} prompts mean {scores.mean():.3f}"
                  f" (min {scores.min():.3f}); {secs.mean():.2f} s/prompt\n          per slice {per}")
        else:
            inside = [(r[0] & lab).sum() / max(r[0].sum(), 1) for r in rows]
            ml = np.array([r[0].sum() * np.prod(sp) / 1000 for r in rows])
            zs = np.flatnonzero(m.any((1, 2)))
            print(f"{name:9s} reference {args.prompt} {ml[0]:.2f} mL, {inside[0]:.1%} inside the tumour box, slices "
                  f"{zs.min()}–{zs.max()} (box {DUKE_BOX_ZYX[0].start}–{DUKE_BOX_ZYX[0].stop - 1}); all "
                  f"{len(rows)} prompts {ml.mean():.2f} ± {ml.std():.2f} mL, {np.mean(inside):.1%} inside; "
                  f"{secs.mean():.2f} s/prompt")


if __name__ == "__main__":
    main()
