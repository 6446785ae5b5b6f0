"""Diagnostic: does the ultrasound network miss lesions for want of context? Each fold model of a finished
`cv_ultrasound_lesion.py` run is applied to its own held-out BUSI images resized to other sizes than it trained at
(a smaller size lets the receptive field cover more of the image), scored as the cross-validation scores (gate off).

    cd <repo> && OMP_NUM_THREADS=1 nice -n 10 python benchmarks/us_test_scale.py \\
        --cv /tmp/us12/cv.json --sizes 256 192 320 --out RESULTS.json

The trained size must reproduce the run's own figures (a check of the scoring). Trains nothing, ships nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_ultrasound_lesion import FOLDS, measure, summary  # noqa: E402


def at_size(results: dict, size: int, images: str, masks: str, threads: int) -> list[dict]:
    """Every fold model on its held-out images, each image resized to size × size."""
    from napari_lesionseg.core.models.card import ModelCard

    rows = []
    for k in range(FOLDS):
        card = ModelCard.read(results["folds"][f"fold{k}"]["card"])
        card.patch_size = [size, size]
        rows += measure(card, images, masks, {n for n, f in results["fold_of"].items() if f == k}, threads)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", required=True, help="a finished cv_ultrasound_lesion.py --out (all 5 folds)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 192, 320])
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from napari_lesionseg.core.training.config import TrainConfig

    results = json.loads(Path(args.cv).read_text())
    recipe = TrainConfig.from_file(results["recipe"])
    out = {"cv": args.cv, "trained_size": recipe.patch_size, "sizes": {}}
    for size in args.sizes:
        rows = at_size(results, size, recipe.images, recipe.masks, args.threads)
        out["sizes"][str(size)] = {"summary": summary(rows),
                                   "missed": sorted(r["name"] for r in rows if r["has_lesion"] and r["missed"])}
        print(size, json.dumps(out["sizes"][str(size)]["summary"]), flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
