"""The ultrasound segmentation + image gate figure on the segmentation ensemble's own validation images, with the
classifier held out: each image's P(normal) comes from the cross-validation fold model that never saw its duplicate
group, and is compared with that fold's threshold (chosen on the other folds). Reads the per-case CSV of
`lesionseg evaluate --no-gate` (raw masks) and the folder `scripts/train_us_classifier.py` wrote.

    python benchmarks/us_gate_combined.py --raw raw.csv --cv /tmp/usclass
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from us_gate_cv import held_out_classifier  # noqa: E402


def combine(raw_rows: list[dict], cv_dir: Path) -> dict:
    held, t_of_fold = held_out_classifier(cv_dir)
    out = {"raw": {"fp": 0, "dice": [], "misses": 0}, "gated": {"fp": 0, "dice": [], "misses": 0},
           "n_lesion_free": 0, "n_lesion": 0, "lesions_suppressed": 0, "lesion_free_suppressed": 0}
    for r in raw_rows:
        k, p = held[r["name"]]
        suppressed = p > t_of_fold[k]
        if r["has_lesion"] == "True":
            out["n_lesion"] += 1
            d = float(r["dice"])
            out["lesions_suppressed"] += suppressed
            for key, dd in (("raw", d), ("gated", 0.0 if suppressed else d)):
                out[key]["dice"].append(dd)
                out[key]["misses"] += dd < 0.1
        else:
            out["n_lesion_free"] += 1
            out["lesion_free_suppressed"] += suppressed
            fp = r["false_positive"] == "True"
            out["raw"]["fp"] += fp
            out["gated"]["fp"] += fp and not suppressed
    for key in ("raw", "gated"):
        out[key]["mean_dice"] = round(float(np.mean(out[key].pop("dice"))), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, help="per-case CSV of `lesionseg evaluate --no-gate`")
    ap.add_argument("--cv", required=True, help="the folder train_us_classifier.py / cv_us_classifier.py wrote")
    args = ap.parse_args(argv)
    with open(args.raw) as f:
        rows = [r for r in csv.DictReader(f) if not r["error"]]
    out = combine(rows, Path(args.cv))
    print(json.dumps(out, indent=1, default=int))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
