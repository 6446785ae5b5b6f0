"""The ultrasound image gate, cross-validated with both parts held out: each BUSI image's mask from the segmentation
fold model that never saw it (benchmarks/cv_ultrasound_lesion.py) and its class probabilities from the classifier
fold model that never saw it (scripts/train_us_classifier.py --fold k: the same folds).

Three rules, each measured on every held-out image (normal: does it keep a false region? lesion: is it emptied?):
  none     - the raw mask;
  p_normal - empty the mask when P(normal) > t1, t1 of fold k as the classifier's CV chose it on the other folds
             (the lowest that gates at most 2% of their lesion images; /tmp/usclass/cv.json);
  mask     - empty the mask when P(normal) > t1 OR the mask's confidence (its largest lesion probability, or its mean
             probability) is below t2: feature, t1 and t2 chosen for fold k on the OTHER four folds only (nested):
             the fewest normal images with a false region among the rules that empty at most 2% of their lesion
             images that were found (Dice >= 0.1) without a gate. The rule for the shipped card is chosen the same way
             on all five folds.

    python benchmarks/us_gate_cv.py --cv /tmp/uscv/cv.json --classifier /tmp/usclass --out /tmp/uscv/gate.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import numpy as np

MISS_DICE = 0.1
MAX_LESIONS_LOST = 0.02  # as the classifier's own threshold rule
T1_GRID = [float(round(x, 3)) for x in np.arange(0.40, 0.951, 0.025)] + [1.01]  # 1.01: P(normal) never gates
T2_GRID = {"max_prob": [0.0] + [float(round(x, 3)) for x in np.arange(0.55, 0.991, 0.02)],
           "mean_prob_in_mask": [0.0] + [float(round(x, 3)) for x in np.arange(0.55, 0.951, 0.02)]}


def held_out_classifier(classifier_dir: Path) -> tuple[dict[str, tuple[int, float]], dict[int, float]]:
    """What the classifier's CV wrote (scripts/train_us_classifier.py, cv_us_classifier.py): image name -> (its
    held-out fold, P(normal) from the fold model that never saw it), and fold -> its gate threshold (chosen on the
    other folds)."""
    folder = Path(classifier_dir)
    t_fold = {p["fold"]: p["gate_threshold"] for p in json.loads((folder / "cv.json").read_text())["per_fold"]}
    p_normal = {}
    for k in t_fold:
        with open(folder / f"fold{k}" / "probs.csv") as f:
            p_normal |= {r["name"]: (k, float(r["p_normal"])) for r in csv.DictReader(f)}
    return p_normal, t_fold


def load_rows(cv_json: Path, classifier_dir: Path) -> list[dict]:
    """Every held-out image with its fold, segmentation figures and held-out P(normal)."""
    cv = json.loads(Path(cv_json).read_text())
    p_normal, _ = held_out_classifier(classifier_dir)
    rows = []
    for key, fold in cv["folds"].items():
        k = int(key.removeprefix("fold"))
        for r in fold["rows"]:
            cf, p = p_normal[r["name"]]
            if cf != k:
                raise SystemExit(f"{r['name']}: segmentation fold {k}, classifier fold {cf}: not the same folds")
            rows.append({**r, "fold": k, "p_normal": p})
    return rows


def gated(rows: list[dict], t1: float, feature: str | None, t2: float) -> np.ndarray:
    p = np.array([r["p_normal"] for r in rows])
    out = p > t1
    if feature:
        out |= np.array([r[feature] for r in rows]) < t2
    return out


def outcome(rows: list[dict], g: np.ndarray) -> dict:
    """Normal images left with a false region; lesion images emptied (and those of them found without the gate);
    mean Dice and misses of lesion images after the gate."""
    les = np.array([bool(r["has_lesion"]) for r in rows])
    fp = np.array([bool(r["false_positive"]) for r in rows])
    dice = np.array([r["dice"] if r["dice"] is not None else np.nan for r in rows], float)
    d_after = np.where(g, 0.0, dice)[les]
    found = les & (dice >= MISS_DICE)
    return {"n_normal": int((~les).sum()), "normal_false_region": int((fp & ~g & ~les).sum()),
            "normal_fp_rate": round(float((fp & ~g & ~les).sum() / max(1, (~les).sum())), 4),
            "n_lesion": int(les.sum()), "lesion_images_emptied": int((g & les).sum()),
            "lesions_lost": int((g & found).sum()), "mean_dice": round(float(d_after.mean()), 4),
            "misses": int((d_after < MISS_DICE).sum())}


def choose(rows: list[dict], features=("max_prob", "mean_prob_in_mask")) -> dict:
    """Feature, t1, t2 with the fewest normal false regions among rules losing <= 2% of the found lesions."""
    n_les = sum(bool(r["has_lesion"]) for r in rows)
    best = None
    for feature in features:
        for t1, t2 in itertools.product(T1_GRID, T2_GRID[feature]):
            o = outcome(rows, gated(rows, t1, feature, t2))
            if o["lesions_lost"] > MAX_LESIONS_LOST * n_les:
                continue
            key = (o["normal_false_region"], o["lesions_lost"], -t2, t1)
            if best is None or key < best[0]:
                best = (key, {"feature": feature, "t1": t1, "t2": t2})
    return best[1]


def per_fold_and_pooled(rows: list[dict], rule_of_fold) -> dict:
    folds = sorted({r["fold"] for r in rows})
    per, gates = {}, np.zeros(len(rows), bool)
    for k in folds:
        idx = [i for i, r in enumerate(rows) if r["fold"] == k]
        sub = [rows[i] for i in idx]
        rule = rule_of_fold(k)
        g = gated(sub, rule["t1"], rule.get("feature"), rule.get("t2", 0.0))
        gates[idx] = g
        per[f"fold{k}"] = {"rule": rule, **outcome(sub, g)}
    rates = np.array([p["normal_fp_rate"] for p in per.values()])
    dice = np.array([p["mean_dice"] for p in per.values()])
    return {"pooled": outcome(rows, gates), "normal_fp_rate_folds": {"mean": round(float(rates.mean()), 4),
                                                                      "sd": round(float(rates.std(ddof=1)), 4)},
            "mean_dice_folds": {"mean": round(float(dice.mean()), 4), "sd": round(float(dice.std(ddof=1)), 4)},
            "per_fold": per}


def three_rules(rows: list[dict], classifier_dir: Path) -> dict:
    """The rules none / p_normal (each fold at the classifier CV's threshold for it) / mask (nested), per fold and
    pooled."""
    cls_cv = json.loads((Path(classifier_dir) / "cv.json").read_text())
    _, t_fold = held_out_classifier(classifier_dir)
    others = lambda k: [r for r in rows if r["fold"] != k]  # noqa: E731
    return {"none": per_fold_and_pooled(rows, lambda k: {"t1": 1.01}),
            "p_normal": per_fold_and_pooled(rows, lambda k: {"t1": t_fold[k]}),
            "mask": per_fold_and_pooled(rows, lambda k: choose(others(k))),
            "p_normal_threshold_all_folds": cls_cv["pooled"]["gate_threshold"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", required=True, help="--out of benchmarks/cv_ultrasound_lesion.py")
    ap.add_argument("--classifier", default="/tmp/usclass", help="--out of scripts/train_us_classifier.py")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows = load_rows(Path(args.cv), Path(args.classifier))
    res = {"n_images": len(rows), **three_rules(rows, Path(args.classifier)), "mask_rule_all_folds": choose(rows)}
    Path(args.out).write_text(json.dumps(res, indent=1))
    for name in ("none", "p_normal", "mask"):
        print(name, json.dumps(res[name]["pooled"]), "fold FP rate", res[name]["normal_fp_rate_folds"])
    print("mask rule on all folds:", res["mask_rule_all_folds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
