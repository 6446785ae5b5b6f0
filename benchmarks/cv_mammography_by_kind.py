"""Which mini-MIAS masses a cross-validated mammography recipe finds, by kind: MIAS class (circumscribed,
spiculated, other), background tissue (fatty, glandular, dense) and size (radius <= 29 px at 200 um, or larger).

Reads the results of `benchmarks/cv_mammography.py` (each held-out image at its fold's nested threshold, `t`), so
the counts are those of the pooled CV figure; several results side by side compare recipes mass by mass. Nothing
here chooses anything: it says where the misses are.

    python benchmarks/cv_mammography_by_kind.py benchmarks/cv_mammography_results.json RESULTS2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_mammography import _index  # noqa: E402  (the CV's own threshold grid)

MIAS = REPO.parent / "shared" / "data" / "mammography" / "mias" / "annotations.csv"
SMALL_RADIUS = 29
"""Pixels at 200 um (5.8 mm): the lower third of the radii of the 33 masses."""


def mass_kinds(annotations: Path = MIAS) -> dict[str, dict]:
    """Image name → its mass's class, background and largest radius (images with two circles: one mass, the
    larger circle, as the FROC counts overlapping circles as one region)."""
    out: dict[str, dict] = {}
    with open(annotations, newline="") as f:
        for row in csv.DictReader(f):
            if row["cls"] not in ("CIRC", "SPIC", "MISC") or not row["radius"]:
                continue
            name = Path(row["image"]).stem
            radius = int(row["radius"])
            if name not in out or radius > out[name]["radius"]:
                out[name] = {"cls": row["cls"], "background": row["background"], "radius": radius}
    return out


def found_at_threshold(results: dict) -> dict[str, bool]:
    """Image name → its mass found at the image's own fold threshold (mass images of mini-MIAS only)."""
    out = {}
    for fold in results["folds"].values():
        for row in fold["rows"]:
            if row["source"] == "mias" and row["n_mass"] > 0:
                i = _index(row.get("t", fold.get("threshold", 0.5)))
                out[row["name"]] = row["hits"][i] >= row["n_mass"]
    return out


def by_kind(found: dict[str, bool], kinds: dict[str, dict]) -> dict[str, str]:
    """'found / all' per class, background and size."""
    groups: dict[str, list[bool]] = {}
    for name, hit in found.items():
        k = kinds.get(name)
        if k is None:
            continue
        size = f"radius <= {SMALL_RADIUS}" if k["radius"] <= SMALL_RADIUS else f"radius > {SMALL_RADIUS}"
        for key in (k["cls"], f"background {k['background']}", size):
            groups.setdefault(key, []).append(hit)
    return {key: f"{sum(v)}/{len(v)}" for key, v in sorted(groups.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="cv_mammography.py --out files")
    args = ap.parse_args(argv)
    if not MIAS.is_file():
        print(f"no mini-MIAS annotations at {MIAS}", file=sys.stderr)
        return 1
    kinds = mass_kinds()
    runs = {p: found_at_threshold(json.loads(Path(p).read_text())) for p in args.results}
    for path, found in runs.items():
        print(path, f"{sum(found.values())}/{len(found)} found;", json.dumps(by_kind(found, kinds)))
    if len(runs) > 1:
        names = sorted(set.intersection(*(set(f) for f in runs.values())))
        print("masses where the runs differ (found: 1):")
        for n in names:
            hits = [int(f[n]) for f in runs.values()]
            if len(set(hits)) > 1:
                print(f"  {n} {kinds[n]['cls']} {kinds[n]['background']} r={kinds[n]['radius']}: {hits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
