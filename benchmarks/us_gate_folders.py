"""Labelled folders for measuring the ultrasound image gate with `lesionseg evaluate`: the BUSI images that the
shipped `ultrasound-lesion` ensemble kept for validation (its recipe's split: `val_fraction` 0.2, seed 0, by
duplicate group, `core.training.data.split_by_group`), as links in OUT/images and OUT/masks.

    python benchmarks/us_gate_folders.py --out /tmp/usgate/segval
    lesionseg evaluate --model ultrasound-lesion --images /tmp/usgate/segval/images --masks /tmp/usgate/segval/masks --no-gate --output raw.csv
    lesionseg evaluate --model ultrasound-lesion --images /tmp/usgate/segval/images --masks /tmp/usgate/segval/masks --output gated.csv
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import yaml

from napari_lesionseg.core.training.data import Case, split_by_group


def seg_validation_names(recipe: Path) -> list[str]:
    r = yaml.safe_load(recipe.read_text())
    cases_json = (recipe.parent.parent / r["cases_json"]).resolve()
    stub = np.zeros((1, 1), np.uint8)
    cases = [Case(c["name"], stub, stub, group=c.get("group", c["name"]), label=c.get("cls", ""))
             for c in json.loads(cases_json.read_text())]
    _train, val = split_by_group(cases, float(r["val_fraction"]), int(r.get("seed", 0)))
    return sorted(c.name for c in val)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="models/ultrasound-lesion-a.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    recipe = Path(args.recipe).resolve()
    r = yaml.safe_load(recipe.read_text())
    images = (recipe.parent.parent / r["images"]).resolve()
    masks = (recipe.parent.parent / r["masks"]).resolve()
    out = Path(args.out)
    names = seg_validation_names(recipe)
    for sub, src in (("images", images), ("masks", masks)):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            link = out / sub / f"{n}.png"
            if not link.exists():
                os.symlink(src / f"{n}.png", link)
    counts = {k: sum(n.startswith(k) for n in names) for k in ("benign", "malignant", "normal")}
    print(f"{len(names)} validation images of the segmentation ensemble ({counts}) linked into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
