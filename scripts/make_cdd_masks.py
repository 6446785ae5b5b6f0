"""The CDD-CESM digital mammograms whose outlines can train a mass model, with a `cases.json` grouping by patient.

Kept out: the contrast-subtracted images (`_CM_`, another kind of image) and the three low-energy images whose
masks include a drawn line besides or instead of the mass (the skin line, or a line along the pectoral edge):
a network trained on them learns to draw skin. `SKIN_LINE` names them; benchmarks report them separately.
The outlines carry stray specks of a few pixels beside the polygons: regions under `MIN_REGION_PX` are dropped.

    .venv/bin/python scripts/make_cdd_masks.py ../shared/data/mammography/cdd_cesm /tmp/cdd_masses
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

MIN_REGION_PX = 30
"""Outline regions smaller than this (at 512²: under ~6 px across) are specks of the drawing, not lesions."""

SKIN_LINE = {"P139_R_DM_MLO": "the mask is the skin outline only (no mass outlined)",
             "P84_L_DM_MLO": "a skin-line arc drawn besides the mass",
             "P165_R_DM_MLO": "a long line across the upper breast (skin fold or pectoral edge) besides the mass"}


def drop_specks(mask: np.ndarray) -> np.ndarray:
    """The mask without its regions under MIN_REGION_PX pixels."""
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask > 0)
    sizes = ndi.sum(mask > 0, labels, index=range(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(np.asarray(sizes) >= MIN_REGION_PX))


def patient(name: str) -> str:
    """'P121' for 'P121_L_DM_CC': one woman, kept on one side of every split."""
    return name.split("_", 1)[0]


def usable(name: str) -> bool:
    return "_DM_" in name and name not in SKIN_LINE


def main(src: str, out: str) -> None:
    src_dir, out_dir = Path(src), Path(out)
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    cases = []
    for p in sorted((src_dir / "images").glob("*.png")):
        if not usable(p.stem):
            continue
        (out_dir / "images" / p.name).write_bytes(p.read_bytes())
        mask = drop_specks(iio.imread(src_dir / "masks" / p.name))
        iio.imwrite(out_dir / "masks" / p.name, mask.astype(np.uint8) * 255)
        cases.append({"name": p.stem, "cls": "mass", "group": f"cdd_{patient(p.stem)}"})
    (out_dir / "cases.json").write_text(json.dumps(cases, indent=1))
    print(f"{len(cases)} digital mammograms with usable outlines -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
