"""A stacked ultrasound image gate, cross-validated nested: one logistic regression weighs the classifier's P(normal)
and the segmenter's confidence in its own mask, instead of the classifier alone (the card's gate) or an OR of two
thresholds (`us_gate_cv.py`'s "mask" rule). Session 21's rule is quoted in the results.

Per held-out image with a non-empty mask (an empty mask has nothing to remove): logit P(normal) from the classifier
fold model that never saw it, and the segmenter fold model's logit max probability, log10 area fraction and logit
mean probability inside the mask (the committed CV rows). For outer fold k the regression's threshold is chosen on
inner out-of-fold scores (each inner fold scored by the fit on the other three) as the lowest that empties at most 2%
of the inner lesion images found without a gate; the fit on all four inner folds then scores fold k.

    python benchmarks/us_gate_stacked.py --cv benchmarks/cv_ultrasound_lesion_e12_320_results.json \\
        --classifier /tmp/usclass --rule RULE.txt --out benchmarks/us_gate_stacked_results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from us_gate_cv import MAX_LESIONS_LOST, MISS_DICE, load_rows, outcome, three_rules  # noqa: E402

RIDGE = 1.0
"""L2 penalty on the standardised coefficients (fixed in the rule, not tuned)."""
FEATURES = ("p_normal", "max_prob", "area_fraction", "mean_prob_in_mask")


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def features(rows: list[dict]) -> np.ndarray:
    """One row per image: the rule's four features (images with an empty mask get zeros; they are never gated)."""
    out = np.zeros((len(rows), len(FEATURES)))
    for i, r in enumerate(rows):
        if r["predicted_area_px"]:
            out[i] = [_logit(r["p_normal"]), _logit(r["max_prob"]),
                      np.log10(r["predicted_area_px"] / r["image_px"]), _logit(r["mean_prob_in_mask"])]
    return out


def fit(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE, steps: int = 50):
    """Logistic regression by Newton steps on standardised features; returns a scoring function."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mu) / sd]
    w = np.zeros(z.shape[1])
    pen = np.r_[0.0, np.full(z.shape[1] - 1, ridge)]
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return lambda xn: 1 / (1 + np.exp(-np.c_[np.ones(len(xn)), (xn - mu) / sd] @ w)), w


def _has_mask(rows: list[dict]) -> np.ndarray:
    return np.array([bool(r["predicted_area_px"]) for r in rows])


def _fit_on(rows: list[dict]):
    m = _has_mask(rows)
    y = np.array([not r["has_lesion"] for r in rows], float)
    return fit(features(rows)[m], y[m])


def scores(rows: list[dict], scorer) -> np.ndarray:
    """P(normal) of the stacked model per image; 0 for an empty mask (never gated)."""
    return np.where(_has_mask(rows), scorer(features(rows)), 0.0)


def threshold_for(rows: list[dict], s: np.ndarray) -> float:
    """The lowest score threshold that empties at most 2% of the lesion images found without a gate."""
    les = np.array([bool(r["has_lesion"]) for r in rows])
    found = les & np.array([(r["dice"] or 0) >= MISS_DICE for r in rows])
    budget = int(np.floor(MAX_LESIONS_LOST * les.sum()))
    lost_scores = np.sort(s[found])[::-1]  # a threshold t gates every score > t
    return float(lost_scores[budget]) if budget < len(lost_scores) else 0.0


def inner_threshold(rows: list[dict]) -> float:
    """Threshold from inner out-of-fold scores: each inner fold scored by the fit on the other inner folds."""
    s = np.zeros(len(rows))
    for j in sorted({r["fold"] for r in rows}):
        idx = np.array([r["fold"] == j for r in rows])
        scorer, _ = _fit_on([r for r, i in zip(rows, idx) if not i])
        s[idx] = scores([r for r, i in zip(rows, idx) if i], scorer)
    return threshold_for(rows, s)


def nested(rows: list[dict]) -> dict:
    """Each outer fold gated by the fit on the other four at their inner threshold; pooled and per fold."""
    g = np.zeros(len(rows), bool)
    per = {}
    for k in sorted({r["fold"] for r in rows}):
        inner = [r for r in rows if r["fold"] != k]
        t = inner_threshold(inner)
        scorer, w = _fit_on(inner)
        idx = np.array([r["fold"] == k for r in rows])
        sub = [r for r in rows if r["fold"] == k]
        g[idx] = scores(sub, scorer) > t
        per[f"fold{k}"] = {"threshold": round(t, 4), "coefficients": [round(float(v), 3) for v in w],
                           **outcome(sub, g[idx])}
    return {"pooled": outcome(rows, g), "per_fold": per}


def verdict(ref: dict, cand: dict) -> dict:
    out = {"1_normals_with_false_region_at_least_5_fewer": [cand["normal_false_region"], ref["normal_false_region"],
                                                            cand["normal_false_region"] <= ref["normal_false_region"] - 5],
           "2_lost_not_more": [cand["lesions_lost"], ref["lesions_lost"], cand["lesions_lost"] <= ref["lesions_lost"]],
           "3_emptied_at_most_2_more": [cand["lesion_images_emptied"], ref["lesion_images_emptied"],
                                        cand["lesion_images_emptied"] <= ref["lesion_images_emptied"] + 2]}
    out["go"] = all(v[-1] for v in out.values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", required=True, help="the segmenter's CV results (committed rows)")
    ap.add_argument("--classifier", required=True, help="--out of scripts/train_us_classifier.py, folds 0-4 + cv.json")
    ap.add_argument("--rule", help="the rule as written beforehand (quoted in the results)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows = load_rows(Path(args.cv), Path(args.classifier))
    before = three_rules(rows, Path(args.classifier))
    res = {"rule": Path(args.rule).read_text() if args.rule else None, "n_images": len(rows),
           "none": before["none"]["pooled"], "reference_p_normal": before["p_normal"], "or_rule": before["mask"],
           "stacked": nested(rows)}
    res["verdict"] = verdict(res["reference_p_normal"]["pooled"], res["stacked"]["pooled"])
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    for name in ("none", "reference_p_normal", "or_rule", "stacked"):
        block = res[name]
        print(name, json.dumps(block.get("pooled", block)))
    print("verdict:", json.dumps(res["verdict"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
