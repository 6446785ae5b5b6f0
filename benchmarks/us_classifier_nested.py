"""Nested cross-validation of "pick the best of the ultrasound image classifiers": the honest figure of a choice
made among candidates on the same folds that measure them.

Candidates (held-out probabilities of the 5 BUSI folds by duplicate group, int8 models as stored):
  S - the shipped recipe (`models/image_classifier/ultrasound-class.yaml`, OUT of scripts/train_us_classifier.py),
  W - the whole network fine-tuned (`ultrasound-class-whole.yaml`),
  A - the per-image average of S's and W's probabilities.
For each outer fold k the candidate is chosen on the other four folds only: each of them scored at a gate threshold
chosen on the remaining three (`cv_us_classifier.gate_threshold`: at most 2% of lesion images gated); among the
candidates gating at most 2% of those inner lesion images, the fewest normals NOT gated wins (ties: higher macro F1,
then S, W, A). Fold k is then scored with the chosen candidate at its threshold chosen on all four other folds.
With --segmentation-cv (benchmarks/cv_ultrasound_lesion.py's held-out fold masks) the pooled outer gate is also
counted as normal images left with a false region and found lesions lost (`us_gate_cv.outcome`).
The rule was written before any of these figures (/tmp/usavg/RULE.txt, quoted in the results JSON).

    python benchmarks/us_classifier_nested.py --shipped /tmp/usclass --whole /tmp/uscls2 \
        --segmentation-cv /tmp/uscv/cv.json --out benchmarks/us_classifier_nested_results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from cv_us_classifier import auc, figures, gate_threshold, macro_f1, read_probs  # noqa: E402
from train_us_classifier import CLASSES  # noqa: E402

MAX_RATE = 0.02
ORDER = ("S", "W", "A")


def candidates(shipped: Path, whole: Path) -> dict[str, list[dict]]:
    """Each candidate's held-out rows (name, label, fold, p), in one image order."""
    s = sorted(read_probs(shipped, 5), key=lambda r: r["name"])
    w = sorted(read_probs(whole, 5), key=lambda r: r["name"])
    if [(r["name"], r["fold"]) for r in s] != [(r["name"], r["fold"]) for r in w]:
        raise SystemExit("the two classifiers' held-out files differ in images or folds")
    a = [dict(rs, p=(rs["p"] + rw["p"]) / 2) for rs, rw in zip(s, w)]
    return {"S": s, "W": w, "A": a}


def threshold_on(rows: list[dict], folds: set[int]) -> float:
    return gate_threshold(np.array([r["p"][0] for r in rows if r["fold"] in folds and r["label"] != "normal"]),
                          MAX_RATE)


def inner_score(rows: list[dict], k: int, all_folds: set[int]) -> dict:
    """The four folds other than k, each at a threshold chosen on the other three: pooled counts and macro F1."""
    kept = gated = n_les = 0
    for j in sorted(all_folds - {k}):
        t = threshold_on(rows, all_folds - {k, j})
        f = figures([r for r in rows if r["fold"] == j], t)
        kept += f["n_normal_kept"]
        gated += f["n_lesion_suppressed"]
        n_les += f["n_lesion"]
    inner = [r for r in rows if r["fold"] != k]
    y = np.array([CLASSES.index(r["label"]) for r in inner])
    pred = np.stack([r["p"] for r in inner]).argmax(1)
    return {"n_normal_kept": kept, "n_lesion_gated": gated, "n_lesion": n_les,
            "lesion_gated_rate": round(gated / n_les, 4), "macro_f1": round(macro_f1(y, pred), 4)}


def choose(scores: dict[str, dict]) -> str:
    eligible = [c for c in ORDER if scores[c]["lesion_gated_rate"] <= MAX_RATE] or list(ORDER)
    return min(eligible, key=lambda c: (scores[c]["n_normal_kept"], -scores[c]["macro_f1"], ORDER.index(c)))


def nested(cands: dict[str, list[dict]]) -> dict:
    """Per outer fold: the inner scores, the choice, its threshold and the outer fold's figures."""
    all_folds = {r["fold"] for r in cands["S"]}
    outer = []
    for k in sorted(all_folds):
        scores = {c: inner_score(rows, k, all_folds) for c, rows in cands.items()}
        pick = choose(scores)
        t = threshold_on(cands[pick], all_folds - {k})
        outer.append({"fold": k, "inner": scores, "chosen": pick, "threshold": round(t, 5),
                      **figures([r for r in cands[pick] if r["fold"] == k], t)})
    return {"per_fold": outer, "pooled": pooled(cands, outer)}


def pooled(cands: dict[str, list[dict]], outer: list[dict]) -> dict:
    """The outer folds' held-out rows (each with its fold's choice) as one set."""
    rows, gate = [], []
    for o in outer:
        sub = [r for r in cands[o["chosen"]] if r["fold"] == o["fold"]]
        rows += sub
        gate += [r["p"][0] > o["threshold"] for r in sub]
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    p = np.stack([r["p"] for r in rows])
    gate = np.array(gate)
    bm = p[:, 2] / np.clip(p[:, 1] + p[:, 2], 1e-9, None)
    return {"n": len(rows), "n_normal_gated": int(gate[y == 0].sum()), "n_normal": int((y == 0).sum()),
            "n_lesion_gated": int(gate[y > 0].sum()), "n_lesion": int((y > 0).sum()),
            "macro_f1": round(macro_f1(y, p.argmax(1)), 4),
            "macro_f1_fold_mean": round(float(np.mean([o["macro_f1"] for o in outer])), 4),
            "auc_benign_malignant": round(auc(bm[y == 2], bm[y == 1]), 4),
            "gate": {r["name"]: (r["p"][0], bool(g)) for r, g in zip(rows, gate)}}


def plain_cv(rows: list[dict]) -> dict:
    """A candidate's own 5-fold figures (leave-fold-out thresholds), pooled counts: the non-nested comparison."""
    folds = {r["fold"] for r in rows}
    gate, fs = {}, []
    for k in sorted(folds):
        t = threshold_on(rows, folds - {k})
        sub = [r for r in rows if r["fold"] == k]
        fs.append(figures(sub, t))
        gate |= {r["name"]: (r["p"][0], bool(r["p"][0] > t)) for r in sub}
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    p = np.stack([r["p"] for r in rows])
    bm = p[:, 2] / np.clip(p[:, 1] + p[:, 2], 1e-9, None)
    return {"macro_f1_fold_mean": round(float(np.mean([f["macro_f1"] for f in fs])), 4),
            "auc_fold_mean": round(float(np.mean([f["auc_benign_malignant"] for f in fs])), 4),
            "auc_pooled": round(auc(bm[y == 2], bm[y == 1]), 4),
            "n_normal_gated": sum(f["n_normal"] - f["n_normal_kept"] for f in fs),
            "n_lesion_gated": sum(f["n_lesion_suppressed"] for f in fs),
            "threshold_all_folds": round(threshold_on(rows, folds), 4), "gate": gate}


def with_segmenter(seg_cv: Path, shipped: Path, gate: dict) -> dict:
    """Normal images left with a false region and found lesions lost when each held-out mask is gated as `gate`
    (name -> (P(normal), gated)): pooled, and the normal false-region rate's mean and SD over the folds."""
    from us_gate_cv import load_rows, outcome

    rows = load_rows(seg_cv, shipped)
    out = outcome(rows, np.array([gate[r["name"]][1] for r in rows]))
    rates = []
    for k in sorted({r["fold"] for r in rows}):
        sub = [r for r in rows if r["fold"] == k]
        rates.append(outcome(sub, np.array([gate[r["name"]][1] for r in sub]))["normal_fp_rate"])
    return out | {"normal_fp_rate_folds": {"mean": round(float(np.mean(rates)), 4),
                                           "sd": round(float(np.std(rates, ddof=1)), 4)}}


def whole_all_classifier(recipe_path: Path, weights: Path):
    """The whole-network model trained on all 577 images, rounded to int8 as it would be stored."""
    from train_us_classifier import recipe, recipe_card

    from napari_lesionseg.core.models.build import load_state, load_weights_into, round_to_int8
    from napari_lesionseg.core.models.classifier import ImageClassifier, build_classifier

    card = recipe_card(recipe(str(recipe_path)))
    net = build_classifier(card)
    load_weights_into(net, load_state(weights), "whole-network classifier")
    round_to_int8(net)
    return ImageClassifier(card=card, net=net.eval())


def second_site(folder: Path, whole, t_shipped: float, t_average: float) -> dict:
    """BrEaST lesion images (chose nothing): how many the shipped classifier S and the average A would gate."""
    from napari_lesionseg.core.io import read_scan
    from napari_lesionseg.core.models import default_registry
    from napari_lesionseg.core.models.classifier import load_classifier

    shipped = load_classifier(default_registry().get("ultrasound-class", kind="classifier"))
    per_image = []
    for path in sorted((folder / "images").glob("*.png")):
        image = read_scan(path, modality="ultrasound")[0].data
        ps = np.array(list(shipped.probabilities(image).values()))
        pw = np.array(list(whole.probabilities(image).values()))
        pa = (ps + pw) / 2
        per_image.append({"name": path.stem, "S": ps.round(4).tolist(), "W": pw.round(4).tolist(),
                          "A": pa.round(4).tolist(), "S_gated": bool(ps[0] > t_shipped),
                          "A_gated": bool(pa[0] > t_average)})
    return {"n_lesion": len(per_image), "threshold_S": t_shipped, "threshold_A": t_average,
            "S_gated": sum(r["S_gated"] for r in per_image), "A_gated": sum(r["A_gated"] for r in per_image),
            "auc_benign_malignant": "not measurable: the local BrEaST copy has no benign/malignant labels",
            "per_image": per_image}


def second_site_dice(site: dict, cases_csv: Path) -> dict:
    """With `lesionseg evaluate`'s per-case CSV of ultrasound-lesion on BrEaST (gate off): mean Dice and found
    lesions (Dice >= 0.1) emptied under no gate, S's gate and A's gate."""
    import csv

    with open(cases_csv) as f:
        dice = {r["name"]: float(r["dice"]) for r in csv.DictReader(f)}
    rows = site["per_image"]
    d = np.array([dice[r["name"]] for r in rows])
    out = {"none": {"mean_dice": round(float(d.mean()), 4), "found_lesions_emptied": 0}}
    for c in ("S", "A"):
        g = np.array([r[f"{c}_gated"] for r in rows])
        out[c] = {"mean_dice": round(float(np.where(g, 0.0, d).mean()), 4),
                  "found_lesions_emptied": int((g & (d >= 0.1)).sum())}
    return out


def verdict(res: dict) -> dict:
    """The rule written beforehand (/tmp/usavg/RULE.txt): ship A only if every condition holds. The references are
    the shipped classifier's own cross-validated gate (plain_cv S) on the same segmenter folds and on BrEaST."""
    chosen = [o["chosen"] for o in res["nested"]["per_fold"]]
    out = {"A_chosen_in_folds": chosen.count("A"), "1_A_chosen_in_4_of_5": chosen.count("A") >= 4}
    seg, ref = res.get("segmenter_nested"), res["plain_cv"]["S"].get("segmenter")
    if seg and ref:
        out["2_normals_with_false_region_below_shipped"] = seg["normal_false_region"] < ref["normal_false_region"]
        out["3_lesions_lost_and_emptied_not_above_shipped"] = (
            seg["lesions_lost"] <= ref["lesions_lost"] and seg["lesion_images_emptied"] <= ref["lesion_images_emptied"])
    site = res.get("second_site_breast")
    if site:
        out["4_breast_A_gates_not_more_than_S"] = site["A_gated"] <= site["S_gated"]
    checks = [v for k, v in out.items() if k[0].isdigit()]
    out["ship_A"] = len(checks) == 4 and all(checks)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shipped", default="/tmp/usclass")
    ap.add_argument("--whole", default="/tmp/uscls2")
    ap.add_argument("--segmentation-cv", help="--out of benchmarks/cv_ultrasound_lesion.py (held-out fold masks)")
    ap.add_argument("--rule", default="/tmp/usavg/RULE.txt")
    ap.add_argument("--second-site", help="BrEaST folder (images/*.png), e.g. ../shared/data/ultrasound/breast_lesions_usg")
    ap.add_argument("--second-site-cases", help="lesionseg evaluate's per-case CSV of ultrasound-lesion on that "
                    "folder, gate off (for the Dice under each gate)")
    ap.add_argument("--whole-all", default="/tmp/uscls2/all/weights.safetensors",
                    help="the whole-network model trained on all images (for --second-site)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    cands = candidates(Path(args.shipped), Path(args.whole))
    res = {"rule": Path(args.rule).read_text() if Path(args.rule).exists() else None,
           "nested": nested(cands), "plain_cv": {c: plain_cv(rows) for c, rows in cands.items()}}
    if args.segmentation_cv:
        res["segmenter_nested"] = with_segmenter(Path(args.segmentation_cv), Path(args.shipped),
                                                 res["nested"]["pooled"]["gate"])
        for c in ORDER:
            res["plain_cv"][c]["segmenter"] = with_segmenter(Path(args.segmentation_cv), Path(args.shipped),
                                                             res["plain_cv"][c]["gate"])
    if args.second_site:
        whole = whole_all_classifier(ROOT / "models/image_classifier/ultrasound-class-whole.yaml", Path(args.whole_all))
        res["second_site_breast"] = second_site(Path(args.second_site), whole, res["plain_cv"]["S"]["threshold_all_folds"],
                                                res["plain_cv"]["A"]["threshold_all_folds"])
        b = res["second_site_breast"]
        if args.second_site_cases:
            b["segmenter"] = second_site_dice(b, Path(args.second_site_cases))
        print(f"BrEaST: S gates {b['S_gated']}/{b['n_lesion']} at {b['threshold_S']}, A gates {b['A_gated']} at "
              f"{b['threshold_A']}")
    for block in [res["nested"]["pooled"], *res["plain_cv"].values()]:
        block.pop("gate")
    res["verdict"] = verdict(res)
    Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    for o in res["nested"]["per_fold"]:
        print(f"fold {o['fold']}: chosen {o['chosen']} t={o['threshold']:.3f} normals kept {o['n_normal_kept']}/"
              f"{o['n_normal']} lesions gated {o['n_lesion_suppressed']}/{o['n_lesion']} F1 {o['macro_f1']:.3f}  "
              + "  ".join(f"{c}:{s['n_normal_kept']}/{s['n_lesion_gated']}/{s['macro_f1']}" for c, s in o["inner"].items()))
    print("nested pooled:", json.dumps(res["nested"]["pooled"]))
    print("nested with segmenter:", res.get("segmenter_nested"))
    for c, b in res["plain_cv"].items():
        print(c, json.dumps(b))
    print("verdict:", json.dumps(res["verdict"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
