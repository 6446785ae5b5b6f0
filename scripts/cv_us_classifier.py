"""Cross-validated figures of the ultrasound image classifier, its gate threshold, and (with --publish) the shipped
card: reads what `train_us_classifier.py` wrote for folds 0-4 and for all images (`OUT/fold<k>/probs.csv`,
`OUT/all/weights.safetensors`).

The gate threshold of fold k is chosen on the held-out probabilities of the *other* folds (the lowest threshold
on P(normal) that suppresses at most `max_lesion_suppression` of their lesion images), so fold k's figures come
from data that chose nothing; the shipped threshold is chosen the same way on all five folds.

    python scripts/cv_us_classifier.py --out /tmp/usclass [--publish models]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_us_classifier import CLASSES, recipe, recipe_card  # noqa: E402


def read_probs(out: Path, folds: int) -> list[dict]:
    rows = []
    for k in range(folds):
        path = out / f"fold{k}" / "probs.csv"
        if path.exists():
            with open(path) as f:
                rows += [dict(r, fold=int(r["fold"]), p=np.array([float(r[f"p_{c}"]) for c in CLASSES]))
                         for r in csv.DictReader(f)]
    return rows


def gate_threshold(p_normal_lesion: np.ndarray, max_rate: float) -> float:
    """The lowest t with at most `max_rate` of these lesion images above it (P(normal) > t suppresses)."""
    s = np.sort(p_normal_lesion)[::-1]
    k = int(math.floor(max_rate * len(s)))
    return float(s[k]) if k < len(s) else 0.0


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    f1s = []
    for c in range(len(CLASSES)):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def figures(rows: list[dict], t: float) -> dict:
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    p = np.stack([r["p"] for r in rows])
    pred = p.argmax(1)
    normal, lesion = y == 0, y > 0
    bm = p[:, 2] / np.clip(p[:, 1] + p[:, 2], 1e-9, None)
    suppressed = p[:, 0] > t
    return {"n": int(len(y)), "n_normal": int(normal.sum()), "n_lesion": int(lesion.sum()),
            "accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred),
            "auc_benign_malignant": auc(bm[y == 2], bm[y == 1]),
            "normal_recall_argmax": float((pred[normal] == 0).mean()) if normal.any() else float("nan"),
            "gate_threshold": t,
            "normal_recall_gate": float(suppressed[normal].mean()) if normal.any() else float("nan"),
            "lesion_suppressed": float(suppressed[lesion].mean()), "n_lesion_suppressed": int(suppressed[lesion].sum()),
            "n_normal_kept": int((~suppressed[normal]).sum())}


def cross_validate(rows: list[dict], folds: list[int], max_rate: float) -> tuple[list[dict], float]:
    """Per-fold figures with leave-that-fold-out thresholds, and the threshold chosen on every fold."""
    per_fold = []
    for k in folds:
        others = [r for r in rows if r["fold"] != k and r["label"] != "normal"]
        t = gate_threshold(np.array([r["p"][0] for r in others]), max_rate)
        per_fold.append(dict(fold=k, **figures([r for r in rows if r["fold"] == k], t)))
    lesion = np.array([r["p"][0] for r in rows if r["label"] != "normal"])
    return per_fold, gate_threshold(lesion, max_rate)


def summary(per_fold: list[dict]) -> dict:
    keys = ("accuracy", "macro_f1", "auc_benign_malignant", "normal_recall_argmax", "normal_recall_gate",
            "lesion_suppressed", "gate_threshold")
    out = {}
    for k in keys:
        v = np.array([f[k] for f in per_fold], float)
        out[k] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
                  "min": round(float(v.min()), 4), "max": round(float(v.max()), 4)}
    for k in ("n", "n_normal", "n_lesion", "n_lesion_suppressed", "n_normal_kept"):
        out[k] = int(sum(f[k] for f in per_fold))
    return out


def publish(r: dict, recipe_path: str, cv: dict, t: float, out: Path, dest: Path) -> Path:
    """The shipped classifier card + weights (trained on all images), with the cross-validated figures."""
    from napari_lesionseg.core.io.atomic import write_text_atomic

    from napari_lesionseg.core.models.pretrained import SOURCES

    card = recipe_card(r)
    start = SOURCES[r["encoder_init"]]
    run = json.loads((out / "all" / "run.json").read_text())
    card.training_data = ("BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020), all 577 images in ../shared/data "
                          "(99 normal, 331 benign, 147 malignant), image class from the file name. Start: "
                          f"{start.citation}.")
    card.metrics = {"cross_validated_5fold_by_group": cv, "gate_threshold_p_normal": round(t, 4),
                    "train_minutes_all_images": run["train_minutes"], "threads": 1}
    card.recipe = f"{recipe_path} (scripts/train_us_classifier.py, scripts/cv_us_classifier.py)"
    card.licence = ("BUSI: published open access, no licence file; cite Al-Dhabyani et al. 2020. Start weights: "
                    f"{start.licence}. Model weights: research use.")
    card.intended_use = ("Research use only, not for diagnosis. Gate of ultrasound-lesion: an image it calls normal "
                         "gets no mask. Its benign/malignant probabilities are shown, never a diagnosis.")
    card.notes = ("Cross-validated figures: 5 folds by BUSI duplicate group, same recipe and fixed epochs for every "
                  "fold; each fold's gate threshold chosen on the other four folds' held-out probabilities.")
    card.weights = f"{card.name}.safetensors"
    from datetime import date

    card.date = date.today().isoformat()
    dest.mkdir(parents=True, exist_ok=True)
    from napari_lesionseg.core.models.build import load_state, save_weights
    from napari_lesionseg.core.models.classifier import build_classifier

    net = build_classifier(card)  # int8 per output channel: 3.5 MB instead of 6.7 (the wheel's 60 MB limit)
    net.load_state_dict(load_state(out / "all" / "weights.safetensors"))
    card.weight_storage = "int8"
    save_weights(net, dest / card.weights, int8=True)
    return write_text_atomic(dest / f"{card.name}.json", card.to_json() + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="models/image_classifier/ultrasound-class.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--publish", help="models folder to write the shipped card and weights to")
    args = ap.parse_args(argv)
    r = recipe(args.config)
    out = Path(args.out)
    rows = read_probs(out, r["folds"])
    folds = sorted({x["fold"] for x in rows})
    per_fold, t = cross_validate(rows, folds, r["max_lesion_suppression"])
    cv = {"folds": folds, "summary": summary(per_fold), "per_fold": per_fold,
          "pooled": figures(rows, t) | {"note": "pooled held-out probabilities at the all-fold threshold"}}
    for f in per_fold:
        print(f"fold {f['fold']}: acc {f['accuracy']:.3f} F1 {f['macro_f1']:.3f} AUC b/m {f['auc_benign_malignant']:.3f} "
              f"normal recall argmax {f['normal_recall_argmax']:.3f}, gate t={f['gate_threshold']:.3f}: normal "
              f"recall {f['normal_recall_gate']:.3f}, lesions suppressed {f['n_lesion_suppressed']}/{f['n_lesion']}")
    print(json.dumps(cv["summary"], indent=1))
    print(f"threshold on all folds: {t:.4f}")
    (out / "cv.json").write_text(json.dumps(cv, indent=1, default=float))
    if args.publish:
        print(f"wrote {publish(r, args.config, cv, t, out, Path(args.publish))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
