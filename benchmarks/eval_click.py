"""Click → mask, measured: size-estimate error, Dice against box and line on the same lesions, corrective clicks.

Every lesion gets one click at its centre (the point deepest inside its mask, as a reader would click) and is
segmented by `prompts.click_to_mask`; the same lesion prompted by its bounding box and by its longest diameter is
the comparison (the installed networks, the line network picked by modality as users get it). Then corrective
clicks as interactive-segmentation papers simulate them: the largest error region (missed lesion or extra area)
gets a click at its deepest point, positive or negative, and Dice is recorded after 1, 3 and 5 clicks in all;
each refinement is timed.

The click's size choices (`click_size.FIRST_PEAK`, `SIZE_GAIN`) were made on --fold 0 of the patient split of
`scripts/prompt_lesions.py`; report --fold 1 and --external (BrEaST-Lesions-USG and pyradiomics breast1, which no
network saw). The prompt network saw BUSI, the BreastDCEDL MRI slices and CDD-CESM in training (both folds), so
box and line figures there are optimistic; the size estimate learns nothing.

    python benchmarks/eval_click.py --fold 1 --refine 5
    python benchmarks/eval_click.py --external --refine 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.metrics import dice  # noqa: E402

MODALITY = {"busi": "ultrasound", "breast_usg": "ultrasound", "mri_slices": "mri", "breast1": "mri",
            "cdd_cesm": "mammography"}


def centre_click(mask: np.ndarray) -> np.ndarray:
    d = ndi.distance_transform_edt(mask)
    return np.array(np.unravel_index(np.argmax(d), d.shape), float)


def external_lesions() -> list[pl.Lesion]:
    """BrEaST-Lesions-USG (another hospital's ultrasound) and the pyradiomics breast1 MRI slices: never trained on."""
    import imageio.v3 as iio

    out = []
    root = pl.DATA / "ultrasound/breast_lesions_usg"
    for p in sorted((root / "images").glob("*.png")) if root.exists() else []:
        comps = pl._components(pl._read_mask(root / "masks" / p.name), 30)
        out += pl._lesions("breast_usg", "usg:" + p.stem, p.stem, pl._gray(iio.imread(p)), comps)
    path = pl.DATA / "mri/pyradiomics/breast1_image.nii.gz"
    if path.exists():
        import nibabel as nib

        vol = np.asarray(nib.load(str(path)).dataobj, np.float32).transpose(2, 1, 0)
        lab = np.asarray(nib.load(str(path).replace("_image", "_label")).dataobj).transpose(2, 1, 0) > 0
        for z in np.flatnonzero(lab.sum((1, 2)) >= 10):
            out += pl._lesions("breast1", "breast1", f"breast1_z{z}", vol[z].copy(), pl._components(lab[z], 10))
    return out


def size_error(les: pl.Lesion, click) -> float:
    """log(estimated diameter / the lesion's equivalent-circle diameter)."""
    from napari_lesionseg.core.annotations.click_size import lesion_diameter

    d = lesion_diameter(les.image, click, modality=MODALITY[les.source])
    return float(np.log(d / (2 * np.sqrt(les.mask.sum() / np.pi)))) if d else np.nan


def next_click(mask: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, bool]:
    """(deepest point of the largest error region, True when it is missed lesion = a positive click)."""
    best = None
    for region, positive in ((truth & ~mask, True), (mask & ~truth, False)):
        lab, n = ndi.label(region)
        if not n:
            continue
        sizes = ndi.sum(region, lab, range(1, n + 1))
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (sizes[k], lab == k + 1, positive)
    return centre_click(best[1]), best[2]


def refine(les: pl.Lesion, click, first: np.ndarray, n_clicks: int) -> tuple[list[float], list[float], list[bool]]:
    """Dice after each click (the first is the centre click), seconds per refinement, and whether each
    refinement moved the mask the click asked for (positive: the click is now inside; negative: outside)."""
    from napari_lesionseg.core.annotations import prompts

    pos, neg, mask = [], [], first
    dices, secs, obeyed = [dice(mask, les.mask)], [], []
    for _ in range(n_clicks - 1):
        if dices[-1] > 0.999:
            dices.append(dices[-1])
            continue
        p, positive = next_click(mask, les.mask)
        (pos if positive else neg).append(p)
        t = time.perf_counter()
        try:
            mask = prompts.click_to_mask(les.image, click, positive=pos, negative=neg,
                                         modality=MODALITY[les.source])
        except Exception as e:  # noqa: BLE001 - a refused refinement keeps the mask and is reported
            print(f"  {les.name}: {e}", file=sys.stderr)
        secs.append(time.perf_counter() - t)
        obeyed.append(bool(mask[tuple(np.round(p).astype(int))]) == positive)
        dices.append(dice(mask, les.mask))
    return dices, secs, obeyed


def evaluate(les: pl.Lesion, n_clicks: int) -> dict:
    from napari_lesionseg.core.annotations import line_to_mask, prompts

    click = centre_click(les.mask)
    mod = MODALITY[les.source]
    t = time.perf_counter()
    try:
        m = prompts.click_to_mask(les.image, click, modality=mod)
    except Exception as e:  # noqa: BLE001 - a refused click scores 0
        print(f"  {les.name}: {e}", file=sys.stderr)
        m = np.zeros_like(les.mask)
    row = {"click_s": time.perf_counter() - t, "size_err": size_error(les, click)}
    rows, cols = np.flatnonzero(les.mask.any(1)), np.flatnonzero(les.mask.any(0))
    row["box"] = dice(prompts.box_to_mask(les.image, (rows[0], cols[0]), (rows[-1], cols[-1])), les.mask)
    row["line"] = dice(line_to_mask(les.image, les.p0, les.p1, modality=mod), les.mask)
    row["clicks"], row["refine_s"], row["obeyed"] = refine(les, click, m, n_clicks)
    return row


def report(rows: list[dict], n_clicks: int) -> None:
    print(f"{'source':11s} {'lesions':>7s} {'size |log err| med':>18s} {'within 25%':>10s} {'click':>6s} "
          f"{'box':>6s} {'line':>6s}" + "".join(f" {f'{k} clicks':>9s}" for k in (3, 5) if k <= n_clicks)
          + f" {'click p10':>9s} {'s/click':>7s} {'s/refine':>8s} {'obeyed':>6s}")
    for source in dict.fromkeys(r["source"] for r in rows):
        sel = [r for r in rows if r["source"] == source]
        err = np.abs([r["size_err"] for r in sel])
        clicks = np.array([r["clicks"] for r in sel])
        ref = [s for r in sel for s in r["refine_s"]]
        ob = [o for r in sel for o in r["obeyed"]]
        print(f"{source:11s} {len(sel):7d} {np.nanmedian(err):18.2f} {np.mean(err < np.log(1.25)):10.2f} "
              f"{clicks[:, 0].mean():6.3f} {np.mean([r['box'] for r in sel]):6.3f} "
              f"{np.mean([r['line'] for r in sel]):6.3f}"
              + "".join(f" {clicks[:, k - 1].mean():9.3f}" for k in (3, 5) if k <= n_clicks)
              + f" {np.percentile(clicks[:, 0], 10):9.3f} {np.median([r['click_s'] for r in sel]):7.3f} "
              f"{np.median(ref) if ref else float('nan'):8.3f} {np.mean(ob) if ob else float('nan'):6.2f}",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default=",".join(pl.REPORTED))
    ap.add_argument("--fold", type=int, help="only the patients of this fold (0 chose the method; report 1)")
    ap.add_argument("--external", action="store_true", help="BrEaST-Lesions-USG and pyradiomics breast1 instead")
    ap.add_argument("--refine", type=int, default=5, help="clicks in all, the centre click included")
    ap.add_argument("--limit", type=int, help="at most this many lesions per source (evenly spaced)")
    args = ap.parse_args()
    if args.external:
        lesions = external_lesions()
    else:
        lesions = pl.load(args.sources.split(","))
        if args.fold is not None:
            folds = pl.assign_folds(lesions)
            lesions = [l for l in lesions if folds[l.patient] == args.fold]
    if args.limit:
        by = {}
        for l in lesions:
            by.setdefault(l.source, []).append(l)
        lesions = [l for ls in by.values() for l in ls[::max(1, len(ls) // args.limit)][:args.limit]]
    rows = []
    for les in lesions:
        rows.append({"source": les.source, **evaluate(les, args.refine)})
    print(f"click → mask ({'external' if args.external else f'fold {args.fold}'}), per-lesion Dice")
    report(rows, args.refine)


if __name__ == "__main__":
    main()
