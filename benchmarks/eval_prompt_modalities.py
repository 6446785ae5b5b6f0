"""Held-out prompt → mask Dice per modality (ultrasound, DCE-MRI slices, digital mammograms), split by patient.

Lesions and the patient split come from `scripts/prompt_lesions.py` (the training script uses the same). Every
lesion is prompted with its longest diameter (from its mask), or its bounding box, or a click at its centre, and
scored by Dice against that lesion's mask; "cross" is the line with its RECIST short axis (the longest chord
perpendicular to it). With --cv DIR, patients of fold k are segmented by the model in DIR/f{k},
trained without them; without --cv the installed model is used (held out only for data it never saw).

    python benchmarks/eval_prompt_modalities.py --methods learned,learned-inverted,classical   # the shipped net
    python benchmarks/eval_prompt_modalities.py --cv /tmp/prompt_cv --prompts line,cross,box,click
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.metrics import dice  # noqa: E402


MODALITY = pl.MODALITY


def _jittered(p0, p1, jitter: float, rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """A reader's line: each end moved by N(0, jitter × the line's length), kept inside the image."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    if not jitter:
        return p0, p1
    sd, hi = jitter * float(np.hypot(*(p1 - p0))), np.asarray(shape, float) - 1
    return np.clip(p0 + rng.normal(0, sd, 2), 0, hi), np.clip(p1 + rng.normal(0, sd, 2), 0, hi)


def segment(lesion: pl.Lesion, prompt: str, method: str, jitter: float = 0.0) -> np.ndarray:
    """jitter: line and cross prompts drawn as a reader would (`_jittered`, seeded by the lesion's image)."""
    from napari_lesionseg.core.annotations.lines import line_to_mask

    img = lesion.image
    if method.endswith("-inverted"):
        img = img.max() - img
        method = method.removesuffix("-inverted")
    rng = np.random.default_rng(zlib.crc32(lesion.name.encode()))
    p0, p1 = _jittered(lesion.p0, lesion.p1, jitter, rng, img.shape)
    if prompt == "line":
        return line_to_mask(img, p0, p1, method=method)
    if prompt == "cross":  # RECIST's pair: the long axis and the longest chord of the lesion perpendicular to it
        from napari_lesionseg.core.annotations.frame import short_axis

        s0, s1 = _jittered(*short_axis(lesion.mask, p0, p1), jitter, rng, img.shape)
        return line_to_mask(img, p0, p1, short_axis=(s0, s1), method=method)
    from napari_lesionseg.core.annotations import prompts

    if prompt == "box":
        rows, cols = np.flatnonzero(lesion.mask.any(1)), np.flatnonzero(lesion.mask.any(0))
        return prompts.box_to_mask(img, (rows[0], cols[0]), (rows[-1], cols[-1]))
    if prompt == "click":
        from scipy import ndimage as ndi

        # the click a reader would give: the point deepest inside the lesion (its centre, even when not convex);
        # the modality gives the lesions' polarity for the size estimate (dark on ultrasound), as the dock passes it
        dist = ndi.distance_transform_edt(lesion.mask)
        return prompts.click_to_mask(img, np.unravel_index(np.argmax(dist), dist.shape),
                                     modality=MODALITY.get(lesion.source))
    raise SystemExit(f"unknown prompt {prompt}")


def write_rows(path, rows) -> None:
    """The per-lesion CSV (`prompt_ensemble_pilot.read_rows` reads it), one row per line, each ending in a newline
    (so that two folds' files concatenate)."""
    Path(path).write_text("source,patient,name,fold,method,prompt,dice,seconds\n" + "".join(
        ",".join(str(x) if not isinstance(x, float) else f"{x:.4f}" for x in r) + "\n" for r in rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="learned")
    ap.add_argument("--prompts", default="line")
    ap.add_argument("--sources", default=",".join(pl.REPORTED))
    ap.add_argument("--cv", help="folder with f0/ f1/ fold models (prompt network)")
    ap.add_argument("--fold", type=int, help="only the lesions of this fold (e.g. while the other fold trains)")
    ap.add_argument("--save", help="CSV of per-lesion Dice")
    ap.add_argument("--jitter", type=float, default=0.0,
                    help="line and cross ends moved by N(0, J × length) as a reader's would be (e.g. 0.04)")
    args = ap.parse_args()
    lesions = pl.load(args.sources.split(","))
    folds = pl.assign_folds(lesions)
    rows = []
    for method in args.methods.split(","):
        for prompt in args.prompts.split(","):
            for les in lesions:
                k = folds[les.patient]
                if args.fold is not None and k != args.fold:
                    continue
                if args.cv:
                    os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(Path(args.cv) / f"f{k}")
                t = time.time()
                try:
                    m = segment(les, prompt, method, args.jitter)
                    d = dice(m, les.mask)
                except Exception as e:  # noqa: BLE001 - a refused prompt scores 0 and is counted
                    print(f"  {les.name}: {e}", file=sys.stderr)
                    d = 0.0
                rows.append((les.source, les.patient, les.name, k, method, prompt, d, time.time() - t))
    print(f"prompt → mask, lesion Dice (held out by patient{' with ' + args.cv if args.cv else ''})")
    print(f"{'source':11s} {'method':18s} {'prompt':6s} {'lesions':>7s} {'patients':>8s} {'mean':>6s} "
          f"{'p10':>6s} {'median':>6s} {'f0':>6s} {'f1':>6s} {'s/lesion':>8s}")
    for source in args.sources.split(","):
        for method in args.methods.split(","):
            for prompt in args.prompts.split(","):
                sel = [r for r in rows if r[0] == source and r[4] == method and r[5] == prompt]
                if not sel:
                    continue
                d = np.array([r[6] for r in sel])
                f = np.array([r[3] for r in sel])
                fm = [f"{d[f == k].mean():6.3f}" if (f == k).any() else "     -" for k in (0, 1)]
                print(f"{source:11s} {method:18s} {prompt:6s} {len(sel):7d} {len({r[1] for r in sel}):8d} "
                      f"{d.mean():6.3f} {np.percentile(d, 10):6.3f} {np.median(d):6.3f} {fm[0]} {fm[1]} "
                      f"{np.median([r[7] for r in sel]):8.3f}", flush=True)
    if args.save:
        write_rows(args.save, rows)


if __name__ == "__main__":
    main()
