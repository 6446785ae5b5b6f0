"""File → Open Sample: one small real case per modality, from `sample_data/` (package data of
`napari_lesionseg.resources`; citations in its README.md).

Each provider returns napari LayerData tuples `(data, kwargs, layer_type)` with `scale` = the pixel/voxel size
in mm and the `Geometry` in `metadata["lesionseg"]["geometry"]`, like the plugin's own readers, so
measurements, models and writers treat a sample like any opened scan.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..core.errors import LesionSegError
from ..core.geometry import METADATA_KEY, Geometry
from ..resources import sample_data_dir

SAMPLE_DIR = sample_data_dir()

BUSI = "busi_malignant_006"
MIAS = "mias_mdb184_x2"
MONUSEG = "monuseg_TCGA-A7-A13E-01Z-00-DX1"
MONUSEG_MM_PER_PX = 0.00025  # 40x scans: 0.25 µm per pixel
DUKE = "duke153"


def _path(name: str) -> Path:
    p = SAMPLE_DIR / name
    if not p.exists():
        raise LesionSegError(f"Sample file {p} is missing: reinstall napari-lesionseg (in a clone, "
                             "rebuild it with scripts/make_sample_data.py).")
    return p


def _metadata(geometry: Geometry, modality: str, source: Path, **more) -> dict:
    geometry.extra.setdefault("source_path", str(source))
    meta = geometry.to_metadata()
    meta[METADATA_KEY].update(modality=modality, source_path=str(source), sample=True, **more)
    return meta


def _read_png(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def busi_ultrasound():
    """BUSI malignant_006: breast ultrasound with its expert mask (pixel size unknown: spacing 1 = 1 pixel)."""
    img_path = _path(f"{BUSI}.png")
    image = _read_png(img_path)
    if image.ndim == 3:
        image = image[..., :3].mean(-1).astype(np.uint8)
    mask = (_read_png(_path(f"{BUSI}_mask.png")) > 0).astype(np.uint8)
    geom = Geometry(spacing=(1.0, 1.0), extra={"spacing_known": False, "spacing_source": "none"})
    meta = _metadata(geom, "ultrasound", img_path)
    return [
        (image, {"name": "BUSI malignant_006", "scale": geom.spacing, "metadata": meta}, "image"),
        (mask, {"name": "BUSI malignant_006 mask (expert)", "scale": geom.spacing,
                "metadata": _metadata(geom.copy(extra=dict(geom.extra)), "ultrasound", img_path), "opacity": 0.4},
         "labels"),
    ]


def mias_mammogram():
    """mini-MIAS mdb184 (spiculated malignant mass), downsampled 2x to 0.4 mm pixels, with the MIAS circle."""
    img_path = _path(f"{MIAS}.png")
    image = _read_png(img_path)
    with open(_path(f"{MIAS}_annotation.csv")) as fh:
        rows = list(csv.DictReader(fh))
    pixel_mm = float(rows[0]["pixel_mm"]) if rows else 0.4
    geom = Geometry(spacing=(pixel_mm, pixel_mm))
    layers = [(image, {"name": "mini-MIAS mdb184", "scale": geom.spacing,
                       "metadata": _metadata(geom, "mammography", img_path)}, "image")]
    if rows:
        pts = np.array([[float(r["row"]), float(r["col"])] for r in rows])
        sizes = np.array([2 * float(r["radius_px"]) for r in rows])
        layers.append((pts, {
            "name": "mini-MIAS mass (centre, radius)", "scale": geom.spacing, "size": sizes,
            "face_color": "transparent", "border_color": "red", "border_width": 0.03,
            "metadata": _metadata(geom.copy(extra=dict(geom.extra)), "mammography", img_path,
                                  annotation=[dict(r) for r in rows]),
        }, "points"))
    return layers


def monuseg_he():
    """MoNuSeg 2018 breast tile TCGA-A7-A13E (H&E, 40x, 1000x1000) with its nucleus mask."""
    img_path = _path(f"{MONUSEG}.png")
    rgb = _read_png(img_path)[..., :3]
    geom = Geometry(spacing=(MONUSEG_MM_PER_PX, MONUSEG_MM_PER_PX), extra={"magnification": "40x"})
    layers = [(rgb, {"name": "MoNuSeg TCGA-A7-A13E (H&E)", "rgb": True, "scale": geom.spacing,
                     "metadata": _metadata(geom, "histology", img_path)}, "image")]
    nuclei_path = SAMPLE_DIR / f"{MONUSEG}_nuclei.png"
    if nuclei_path.exists():
        nuclei = (_read_png(nuclei_path) > 0).astype(np.uint8)
        layers.append((nuclei, {"name": "MoNuSeg nuclei", "scale": geom.spacing, "opacity": 0.35, "visible": False,
                                "metadata": _metadata(geom.copy(extra=dict(geom.extra)), "histology", img_path)},
                       "labels"))
    return layers


def _read_nifti(path: Path):
    """(array in napari order, Geometry) through the plugin's reader when present, else nibabel directly."""
    try:
        from ..core.io import read_scan  # the plugin's own reader (core.io)

        scan = read_scan(path)[0]
        return np.asarray(scan.data), scan.geometry
    except ImportError:
        pass
    import nibabel as nib

    img = nib.load(str(path))
    arr = np.ascontiguousarray(np.asanyarray(img.dataobj).T)
    zooms = np.linalg.norm(np.asarray(img.affine, float)[:3, :3], axis=0)
    geom = Geometry(spacing=tuple(float(z) for z in zooms[::-1]), nifti_affine=np.array(img.affine, float),
                    reversed_axes=True, header=img.header.copy(),
                    extra={"source_path": str(path), "format": "nifti",
                           "axcodes": "".join(nib.aff2axcodes(img.affine))})
    return arr, geom


def duke_dce_mri():
    """Duke-Breast-Cancer-MRI patient 153: pre- and first post-contrast crops around the tumour, and post - pre."""
    layers = []
    arrays = {}
    for name in ("pre", "post1"):
        path = _path(f"{DUKE}_{name}_crop.nii.gz")
        arr, geom = _read_nifti(path)
        arrays[name] = (arr, geom)
        lo, hi = np.percentile(arr, [0.5, 99.8])
        layers.append((arr, {"name": f"Duke-153 {name} (crop)", "scale": geom.spacing,
                             "contrast_limits": [float(lo), float(hi)], "visible": name == "post1",
                             "metadata": _metadata(geom, "mri", path, phase=name)}, "image"))
    (pre, gpre), (post, gpost) = arrays["pre"], arrays["post1"]
    sub = post.astype(np.float32) - pre.astype(np.float32)
    gsub = gpost.copy(extra=dict(gpost.extra))
    layers.append((sub, {"name": "Duke-153 post1 - pre", "scale": gsub.spacing, "colormap": "inferno",
                         "blending": "additive", "contrast_limits": [0.0, float(np.percentile(sub, 99.8))],
                         "metadata": _metadata(gsub, "mri", SAMPLE_DIR / f"{DUKE}_post1_crop.nii.gz",
                                               phase="subtraction")}, "image"))
    return layers
