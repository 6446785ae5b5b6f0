"""Pooled figures of an ultrasound pilot run on some CV folds, beside the shipped recipe's committed folds: what the
pilots' results JSONs (us_384_pilot_results.json, us_posfrac05_pilot_results.json) report under per_fold, pooled
and with_image_gate.

Each `--fold-run` is the --out of `benchmarks/cv_ultrasound_lesion.py --only-folds k`; the reference is the same folds'
rows in the shipped recipe's results (`--reference`, default benchmarks/cv_ultrasound_lesion_e12_320_results.json).
With `--classifier DIR` (scripts/train_us_classifier.py --fold 0..4 and cv_us_classifier.py on the same folds) both
are also gated by the held-out P(normal) at each fold's leave-fold-out threshold (`us_gate_cv.outcome`).

    python benchmarks/us_pilot_summary.py --fold-run F0.json F1.json --classifier /tmp/usclass --out SUMMARY.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from us_gate_cv import MISS_DICE, held_out_classifier, outcome  # noqa: E402


def summary(rows: list[dict]) -> dict:
    les = [r for r in rows if r["has_lesion"]]
    nor = [r for r in rows if not r["has_lesion"]]
    return {"n_lesion": len(les), "mean_dice": round(float(np.mean([r["dice"] for r in les])), 4),
            "misses": sum(r["dice"] < MISS_DICE for r in les), "n_normal": len(nor),
            "normals_false_region": sum(bool(r["false_positive"]) for r in nor)}


def gate(rows: list[dict], classifier: Path) -> np.ndarray:
    """Each row gated by its held-out P(normal) above its fold's threshold (chosen on the other folds)."""
    p_normal, t = held_out_classifier(classifier)
    return np.array([p_normal[r["name"]][1] > t[r["fold"]] for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold-run", nargs="+", required=True, help="cv_ultrasound_lesion.py --out files, one per fold")
    ap.add_argument("--reference", default=str(ROOT / "benchmarks/cv_ultrasound_lesion_e12_320_results.json"))
    ap.add_argument("--classifier", help="the image classifier's CV folder, for the gated figures")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ref_folds = json.loads(Path(args.reference).read_text())["folds"]
    out, rows, ref_rows = {}, [], []
    for path in args.fold_run:
        for key, fold in json.loads(Path(path).read_text())["folds"].items():
            k = int(key.removeprefix("fold"))
            rows += [dict(r, fold=k) for r in fold["rows"]]
            ref_rows += [dict(r, fold=k) for r in ref_folds[key]["rows"]]
            out[key] = summary(fold["rows"]) | {"minutes": fold.get("minutes")}
            out[f"{key}_reference"] = summary(ref_folds[key]["rows"])
    out["pooled"], out["pooled_reference"] = summary(rows), summary(ref_rows)
    if args.classifier:
        out["pooled_gated"] = outcome(rows, gate(rows, Path(args.classifier)))
        out["pooled_reference_gated"] = outcome(ref_rows, gate(ref_rows, Path(args.classifier)))
    Path(args.out).write_text(json.dumps(out, indent=1, default=int) + "\n")
    print(json.dumps(out, indent=1, default=int))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
