"""Pilot (issue 15): does the prompt network sharpen the ultrasound segmenter's mask? Each region of the automatic
mask is given to the prompt network as its longest diameter (line) or its bounding box (box), and the network's mask
replaces the region. Both held out: the segmenter's fold model of CV fold k (`cv_ultrasound_lesion.py --only-folds
k`), the prompt network's fold model that never saw the image's BUSI group (`train_line_model.py --fold j --folds 2`).
Scored by `core.evaluate.case_metrics`, as `cv_ultrasound_lesion.py` scores the segmenter alone.

    python benchmarks/us_cascade_pilot.py --seg 0:WORK/fold0/us-cv0-int8.json:F0.json --prompt-cv PROMPT_CV --out R.json

Measured (session 24, fold 0 of session 22's hard-negative pilot): refining lowered Dice; us_cascade_pilot_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
import prompt_lesions as pl  # noqa: E402

VARIANTS = ("base", "line", "box")


def refine(gray: np.ndarray, predicted: np.ndarray, variant: str) -> np.ndarray:
    """The automatic mask with each connected region replaced by the prompt network's mask from that region's
    longest diameter ("line") or bounding box ("box"); the installed (or $LESIONSEG_LINE_MODEL_DIR) prompt_unet.
    A region the network refuses (a speck too small to draw a line across) is kept as it was."""
    from scipy import ndimage as ndi

    from napari_lesionseg.core.annotations import prompts
    from napari_lesionseg.core.annotations.frame import longest_diameter
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.errors import LesionSegError

    labels, n = ndi.label(np.asarray(predicted) > 0)
    out = np.zeros(labels.shape, bool)
    for i in range(1, n + 1):
        region = labels == i
        try:
            if variant == "line":
                p0, p1 = longest_diameter(region)
                out |= line_to_mask(gray, p0, p1, method="learned")
            else:
                rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
                out |= prompts.box_to_mask(gray, (rows[0], cols[0]), (rows[-1], cols[-1]))
        except LesionSegError:
            out |= region
    return out


def fold_rows(k: int, card: str, names: set[str], prompt_cv: Path) -> list[dict]:
    import imageio.v3 as iio

    from napari_lesionseg.core.evaluate import case_metrics, pair_files, read_truth
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.run import segment_file
    from napari_lesionseg.core.models.card import ModelCard

    root = pl.DATA / "ultrasound/busi"
    group = {c["name"]: c["group"] for c in json.loads((root / "cases.json").read_text())}
    predictor = Predictor(ModelCard.read(card), device="cpu")
    rows = []
    for name, img, msk in pair_files(root / "images", root / "masks").pairs:
        if name not in names:
            continue
        _scan, _probs, predicted = segment_file(predictor, img, gate=False)
        truth, gray = read_truth(msk), pl._gray(iio.imread(img))
        os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(prompt_cv / f"f{pl.fold_of(group[name])}")
        row = {"name": name, "fold": k}
        for variant in VARIANTS:
            mask = predicted > 0 if variant == "base" else refine(gray, predicted, variant)
            r = case_metrics(mask.astype(np.uint8), truth, name)
            row.update(has_lesion=r.has_lesion, **{f"{variant}_dice": r.dice, f"{variant}_fp": bool(r.false_positive)})
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Per variant, as cv_ultrasound_lesion.py counts: mean Dice over lesion images, misses, normals with a region."""
    from napari_lesionseg.core.evaluate import MISS_DICE

    les = [r for r in rows if r["has_lesion"]]
    out = {"n_lesion": len(les), "n_normal": len(rows) - len(les)}
    for v in VARIANTS:
        d = np.array([r[f"{v}_dice"] for r in les])
        out[v] = {"mean_dice": round(float(d.mean()), 4), "misses": int((d < MISS_DICE).sum()),
                  "normals_false_region": sum(r[f"{v}_fp"] for r in rows if not r["has_lesion"])}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seg", nargs="+", required=True,
                    help="K:CARD:RESULTS (a segmenter fold card and the cv_ultrasound_lesion.py --out naming its images)")
    ap.add_argument("--prompt-cv", required=True, help="folder with f0/ f1/ prompt fold models")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    for spec in args.seg:
        k, card, results = spec.split(":")
        names = {r["name"] for r in json.loads(Path(results).read_text())["folds"][f"fold{k}"]["rows"]}
        rows += fold_rows(int(k), card, names, Path(args.prompt_cv))
    out = {"summary": summary(rows), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
