"""Why a line gives ~0.65 Dice on the ISPY1 DCE-MRI slices: our mask, or the threshold reference?

For every lesion of `scripts/prompt_lesions.py`'s `mri_slices` (the enhancement-threshold masks, cleaned as in
training), the line = its longest diameter, segmented by the installed prompt network (which saw these patients in
training: optimistic) and by the classical method (learns nothing: held out). Printed:
- Dice against the cleaned mask (the README's reference), against the raw threshold mask near the lesion, against
  the lesion region the speckle marks (closing with a 5-pixel disk, holes filled) and against the mask's convex hull;
- the area of our mask over the reference's, and the shares of our mask outside it / of it we miss;
- Dice by the reference's solidity (area / convex hull area: a property of the label alone);
- Dice for the network's probability threshold 0.4-0.7 per patient fold (`prompt_lesions.assign_folds`).

    python benchmarks/eval_mri_slice_references.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.annotations import lines  # noqa: E402
from napari_lesionseg.core.metrics import dice  # noqa: E402

SOLIDITY_BINS = ((0.0, 0.6), (0.6, 0.8), (0.8, 1.01))


def references(lesion, root) -> dict[str, np.ndarray]:
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image, disk

    raw = pl._read_mask(root / "masks" / f"{lesion.name}.png")
    return {"cleaned": lesion.mask, "raw near": raw & ndi.binary_dilation(lesion.mask, iterations=5),
            "region (closed 5, filled)": ndi.binary_fill_holes(ndi.binary_closing(lesion.mask, disk(5))),
            "convex hull": convex_hull_image(lesion.mask)}


def with_threshold(t: float):
    """line_to_mask with the frame probability cut at t instead of 0.5 (a test-time choice, not training)."""
    orig = lines._mask_from_frame_probability

    def cut(prob, frame, shape, line, threshold=0.5):
        return orig(prob, frame, shape, line, t)

    return orig, cut


def main():
    lesions = pl.load(["mri_slices"])
    folds = pl.assign_folds(lesions)
    root = pl.DATA / "mri/breastdcedl_slices"
    for method in ("learned", "classical"):
        rows = []
        for les in lesions:
            refs = references(les, root)
            m = lines.line_to_mask(les.image, les.p0, les.p1, method=method)
            ref = refs["cleaned"]
            rows.append([dice(m, r) for r in refs.values()] + [m.sum() / ref.sum(), (m & ~ref).sum() / m.sum(),
                                                                (ref & ~m).sum() / ref.sum(),
                                                                ref.sum() / refs["convex hull"].sum()])
        r = np.array(rows)
        print(f"\n{method} ({len(r)} lesions, {len(set(folds.values()))} patient folds): mean Dice against "
              + ", ".join(f"{name} {r[:, i].mean():.3f}" for i, name in enumerate(references(lesions[0], root))))
        print(f"  our area / reference: median {np.median(r[:, 4]):.2f}; our mask outside the reference "
              f"{r[:, 5].mean():.0%}, reference missed {r[:, 6].mean():.0%}")
        for lo, hi in SOLIDITY_BINS:
            sel = (r[:, 7] >= lo) & (r[:, 7] < hi)
            print(f"  reference solidity {lo:.1f}–{min(hi, 1):.1f}: {sel.sum():2d} lesions, Dice {r[sel, 0].mean():.3f}")
    print("\nnetwork threshold (Dice against the cleaned masks, per patient fold)")
    for t in (0.4, 0.5, 0.6, 0.7):
        orig, cut = with_threshold(t)
        lines._mask_from_frame_probability = cut
        try:
            d = [(folds[les.patient], dice(lines.line_to_mask(les.image, les.p0, les.p1, method="learned"), les.mask))
                 for les in lesions]
        finally:
            lines._mask_from_frame_probability = orig
        d = np.array(d)
        print(f"  {t:.1f}: " + ", ".join(f"fold {k} {d[d[:, 0] == k, 1].mean():.3f}" for k in (0, 1)))


if __name__ == "__main__":
    main()
