"""Rebuild `sample_data/` (File → Open Sample) from the shared real data. Run once; the outputs are committed.

    .venv/bin/python scripts/make_sample_data.py [--data ../shared/data]

Each file stays under 2 MB. See sample_data/README.md for citations and licences.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "sample_data"

BUSI_CASE = "malignant_006"
MIAS_CASE = "mdb184"          # SPIC, malignant; col 352, row 400, radius 114 px (200 µm pixels)
MIAS_FACTOR = 2               # 1024 -> 512 px, 0.4 mm pixels
MONUSEG_TILE = "TCGA-A7-A13E-01Z-00-DX1"
DUKE_BOX = {"x": (89, 123), "y": (46, 81), "z": (60, 77)}  # NIfTI array indices, inclusive (data README)
DUKE_MARGIN = {"x": 32, "y": 32, "z": 8}


def busi(data: Path) -> None:
    src = data / "ultrasound" / "busi"
    shutil.copyfile(src / "images" / f"{BUSI_CASE}.png", OUT / f"busi_{BUSI_CASE}.png")
    shutil.copyfile(src / "masks" / f"{BUSI_CASE}.png", OUT / f"busi_{BUSI_CASE}_mask.png")


def mias(data: Path) -> None:
    import csv

    import imageio.v3 as iio

    src = data / "mammography" / "mias"
    img = iio.imread(src / "images" / f"{MIAS_CASE}.png").astype(np.float64)
    f = MIAS_FACTOR
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    small = img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    iio.imwrite(OUT / f"mias_{MIAS_CASE}_x{f}.png", np.round(small).astype(np.uint8))
    with open(src / "annotations.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["image"] == f"{MIAS_CASE}.png" and r["col"]]
    with open(OUT / f"mias_{MIAS_CASE}_x{f}_annotation.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["cls", "severity", "row", "col", "radius_px", "pixel_mm"])
        for r in rows:
            # pixel (row, col) of the downsampled image: centres map by (p + 0.5) / f - 0.5
            wr.writerow([r["cls"], r["severity"], (int(r["row"]) + 0.5) / f - 0.5, (int(r["col"]) + 0.5) / f - 0.5,
                         int(r["radius"]) / f, 0.2 * f])


def monuseg(data: Path) -> None:
    import imageio.v3 as iio
    import tifffile

    src = data / "histology" / "monuseg_breast"
    rgb = tifffile.imread(src / "images" / f"{MONUSEG_TILE}.tif")[..., :3]
    iio.imwrite(OUT / f"monuseg_{MONUSEG_TILE}.png", rgb, compress_level=9)
    mask = iio.imread(src / "binary_masks_derived" / f"{MONUSEG_TILE}.png")
    iio.imwrite(OUT / f"monuseg_{MONUSEG_TILE}_nuclei.png", (mask > 0).astype(np.uint8), compress_level=9)


def duke(data: Path) -> None:
    import nibabel as nib

    src = data / "mri" / "duke_153"
    lo = [max(0, DUKE_BOX[a][0] - DUKE_MARGIN[a]) for a in "xyz"]
    for name in ("pre", "post1"):
        img = nib.load(str(src / f"{name}.nii.gz"))
        hi = [min(n, DUKE_BOX[a][1] + 1 + DUKE_MARGIN[a]) for a, n in zip("xyz", img.shape)]
        crop = np.asarray(img.dataobj[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
        shift = np.eye(4)
        shift[:3, 3] = lo
        affine = img.affine @ shift  # voxel (0,0,0) of the crop is voxel `lo` of the original
        out = nib.Nifti1Image(crop, affine, header=img.header.copy())
        out.set_sform(affine, code=int(img.header["sform_code"]) or 1)
        out.set_qform(affine, code=int(img.header["qform_code"]) or 1)
        out.to_filename(str(OUT / f"duke153_{name}_crop.nii.gz"))
    with open(OUT / "duke153_crop.txt", "w") as fh:
        fh.write(f"crop offset (NIfTI i, j, k) = {lo}; tumour box inside the crop (i, j, k inclusive) = "
                 f"{[DUKE_BOX[a][0] - l for a, l in zip('xyz', lo)]}..{[DUKE_BOX[a][1] - l for a, l in zip('xyz', lo)]}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    for step in (busi, mias, monuseg, duke):
        step(args.data)
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size / 1e6:6.2f} MB  {p.name}")


if __name__ == "__main__":
    main()
