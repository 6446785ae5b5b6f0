"""Is 0.5 the right threshold for `histology-nuclei`? A nested test on the recipe's cross-validation fold models.

Each fold model of `benchmarks/cv_histology_nuclei.py` segments its 6 held-out tiles through `lesionseg evaluate`'s
path (`segment_file`); tile Dice is computed at thresholds 0.30-0.70. For outer fold k the threshold with the best
mean tile Dice on the other two folds' 12 tiles is chosen and fold k is scored at it, so no tile's figure comes from
a threshold it chose. The rule (written before the maps were computed) is quoted in the results JSON.

    python benchmarks/nuclei_threshold_nested.py --cv-work /tmp/nuc2/cv --out RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.30, 0.701, 0.05)]
RULE = ("Ship a new card threshold iff the nested pooled mean over all 18 tiles >= the 0.5 figure + 0.005, the nested "
        "breast mean is not lower than at 0.5, and one threshold is chosen in at least 2 of 3 folds.")


def tile_dice(cv_results: dict, cv_work: Path, masks_of: dict[str, tuple[str, str]]) -> list[dict]:
    """Every held-out tile's Dice at each threshold, by the fold model that did not train on it."""
    import torch

    from napari_lesionseg.core.evaluate import pair_files, read_truth
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.run import segment_file
    from napari_lesionseg.core.metrics import dice
    from napari_lesionseg.core.models.card import ModelCard

    torch.set_num_threads(1)
    rows = []
    for fold, f in cv_results["folds"].items():
        predictor = Predictor(ModelCard.read(next((cv_work / fold).glob("nuclei-cv*.json"))))
        for t in f["tiles"]:
            pair = next(p for p in pair_files(*masks_of[t["kind"]]).pairs if p[0] == t["tile"])
            probs = np.asarray(segment_file(predictor, pair[1])[1])
            truth = read_truth(pair[2])
            rows.append({"fold": fold, "tile": t["tile"], "kind": t["kind"], "dice_in_cv": t["dice"],
                         "dice": {str(th): float(dice(probs > th, truth)) for th in THRESHOLDS}})
    return rows


def nested(rows: list[dict]) -> dict:
    """Per outer fold the threshold best on the other folds; the held-out figures at it and at 0.5."""
    def mean(rs, key):
        return round(float(np.mean([key(r) for r in rs])), 4)

    chosen, scored = {}, []
    for k in sorted({r["fold"] for r in rows}):
        inner = [r for r in rows if r["fold"] != k]
        t = max(THRESHOLDS, key=lambda t: np.mean([r["dice"][str(t)] for r in inner]))
        chosen[k] = t
        scored += [dict(r, nested=r["dice"][str(t)]) for r in rows if r["fold"] == k]
    out = {"chosen": chosen}
    for name, sel in (("all", scored), ("breast", [r for r in scored if r["kind"] == "breast"]),
                      ("other_organs", [r for r in scored if r["kind"] != "breast"])):
        out[name] = {"nested": mean(sel, lambda r: r["nested"]), "at_0.5": mean(sel, lambda r: r["dice"]["0.5"])}
    out["every_threshold_pooled_chose_nothing"] = {str(t): mean(rows, lambda r: r["dice"][str(t)]) for t in THRESHOLDS}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv-results", default=str(REPO / "benchmarks/cv_histology_nuclei_results.json"))
    ap.add_argument("--cv-work", required=True, help="the CV's --work folder (fold1..fold3 with the fold models)")
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/histology"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    data = Path(args.data)
    masks_of = {"breast": (data / "monuseg_breast/images", data / "monuseg_breast/binary_masks_derived"),
                "other_organs": (data / "monuseg_other_organs/images", data / "monuseg_other_organs/masks")}
    rows = tile_dice(json.loads(Path(args.cv_results).read_text()), Path(args.cv_work), masks_of)
    result = nested(rows)
    all_ = result["all"]
    result["passes"] = bool(all_["nested"] >= all_["at_0.5"] + 0.005
                            and result["breast"]["nested"] >= result["breast"]["at_0.5"]
                            and max(list(result["chosen"].values()).count(t) for t in THRESHOLDS) >= 2)
    Path(args.out).write_text(json.dumps({"rule": RULE, **result, "tiles": rows}, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "every_threshold_pooled_chose_nothing"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
