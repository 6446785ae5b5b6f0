"""Coarse mass masks for mini-MIAS: the MIAS centre-plus-radius circles of masses (CIRC, SPIC, MISC) as disks.

mini-MIAS has no outlines, so a disk is the only mask there is (and the model card says so). Images without a mass
(normal, calcifications, distortions, asymmetries) get empty masks. `cases.json` groups the left/right pair of one
woman (mdb001/mdb002, …), so validation never sees the other breast of a training case; its "tags" are the
image's background tissue (F fatty, G glandular, D dense) and MIAS classes (CIRC, SPIC, MISC, NORM, …), for a
recipe's `tag_weights`.

    .venv/bin/python scripts/make_mias_masks.py ../shared/data/mammography/mias /tmp/mias_masses
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_lesionseg.core.annotations import Circle, circles_to_labels

MASS_CLASSES = {"CIRC", "SPIC", "MISC"}


def main(src: str, out: str) -> None:
    src_dir, out_dir = Path(src), Path(out)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    circles: dict[str, list[Circle]] = {}
    classes: dict[str, set] = {}
    background: dict[str, str] = {}
    with open(src_dir / "annotations.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["image"].removesuffix(".png")
            classes.setdefault(name, set()).add(row["cls"])
            background[name] = row["background"]
            if row["cls"] in MASS_CLASSES and row["radius"]:
                circles.setdefault(name, []).append(Circle(row=float(row["row"]), col=float(row["col"]),
                                                           radius=float(row["radius"])))
    cases = []
    for p in sorted((src_dir / "images").glob("mdb*.png")):
        name = p.stem
        img = iio.imread(p)
        mask = np.zeros(img.shape[:2], np.uint8)
        if name in circles:
            mask = (circles_to_labels(img.shape[:2], circles[name]) > 0).astype(np.uint8) * 255
        (out_dir / "images" / p.name).write_bytes(p.read_bytes())
        iio.imwrite(out_dir / "masks" / p.name, mask)
        number = int(name[3:])
        cls = "mass" if name in circles else ("normal" if classes.get(name) == {"NORM"} else "other")
        tags = [background[name]] if background.get(name) else []
        cases.append({"name": name, "cls": cls, "group": f"woman_{(number + 1) // 2:03d}",
                      "tags": tags + sorted(classes.get(name, ()))})
    (out_dir / "cases.json").write_text(json.dumps(cases, indent=1))
    print(f"{len(cases)} images, {sum(c['cls'] == 'mass' for c in cases)} with masses -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
