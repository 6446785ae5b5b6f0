"""Lesions of every modality for the prompt network: one record per lesion, with the patient it belongs to.

Shared by `scripts/train_line_model.py` (training) and `benchmarks/eval_prompt_modalities.py` (held-out Dice), so
both see the same lesions and the same patient split. A lesion is a connected component of a (cleaned) mask; its
prompt line is the component's longest diameter. Splits are by patient (`fold_of(patient)`), never by image:

- BUSI ultrasound: patient = BUSI `group` (near-identical frames of one lesion share it);
- BreastDCEDL DCE-MRI slices: patient = the part of the name before the underscore. The masks are an enhancement
  threshold (speckled, stray islands), cleaned by `clean_threshold_mask`: closing (disk 2) to join the speckle,
  holes filled, opening (disk 1) to cut one-pixel bridges, then only components of >= 40 px and >= 20 % of the
  largest one are lesions;
- CDD-CESM mammograms: patient = `P<id>`; components >= 200 px whose solidity is >= 0.5 (the skin line that was
  outlined in one or two images is long and thin, not a lesion);
- mini-MIAS: the masses' centre-plus-radius disks (coarse; used for training only, never reported); patient = woman;
- MoNuSeg nuclei (breast and other organs): a random subsample of nuclei (components of 30–1500 px) so they do not
  outnumber the lesions; patient = tile;
- Duke-Breast-Cancer-MRI 153: slices of the 3D pseudo-label (`make_mri_pseudolabels.duke_pseudolabel`) on
  post1 − pre, training only (one patient, and its label came from the line tool itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from napari_lesionseg.core.training.prompt_samples import Lesion  # noqa: F401 (pl.Lesion)
from napari_lesionseg.core.training.prompt_samples import components as _components
from napari_lesionseg.core.training.prompt_samples import lesions_from_components as _lesions

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

SOURCES = ("busi", "mri_slices", "cdd_cesm", "mias", "monuseg", "duke")
REPORTED = ("busi", "mri_slices", "cdd_cesm")
"""Sources whose masks are outlines good enough to report a Dice on."""
MODALITY = {"busi": "ultrasound", "mri_slices": "mri", "duke": "mri", "cdd_cesm": "mammography", "mias": "mammography",
            "monuseg": "histology"}
"""The modality of each source's images, as the dock would name it (`line_model.network_for`, click polarity)."""


def fold_of(patient: str, folds: int = 2) -> int:
    return int(hashlib.md5(patient.encode()).hexdigest(), 16) % max(folds, 1)


def assign_folds(lesions, folds: int = 2) -> dict[str, int]:
    """patient -> fold. BUSI by md5(group) % folds (the split of the earlier BUSI-only figures); every other
    source deals its patients out in md5 order, so each fold gets half the patients of every small source."""
    out: dict[str, int] = {}
    by_source: dict[str, list[str]] = {}
    for l in lesions:
        by_source.setdefault(l.source, [])
        if l.patient not in by_source[l.source]:
            by_source[l.source].append(l.patient)
    for source, patients in by_source.items():
        if source == "busi":
            out.update({p: fold_of(p.removeprefix("busi:"), folds) for p in patients})
            continue
        ranked = sorted(patients, key=lambda p: hashlib.md5(p.encode()).hexdigest())
        out.update({p: i % max(folds, 1) for i, p in enumerate(ranked)})
    return out


def _gray(img) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return a.astype(np.float32)


def _read_mask(path) -> np.ndarray:
    import imageio.v3 as iio

    m = iio.imread(path) > 0
    return m.any(-1) if m.ndim == 3 else m


def clean_threshold_mask(mask: np.ndarray) -> np.ndarray:
    """An enhancement-threshold mask as a lesion outline: speckle joined, holes filled, bridges cut."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    m = ndi.binary_closing(mask, disk(2))
    m = ndi.binary_fill_holes(m)
    return ndi.binary_opening(m, disk(1))


def busi():
    import imageio.v3 as iio

    root = DATA / "ultrasound/busi"
    if not (root / "cases.json").exists():
        return []
    out = []
    for c in json.loads((root / "cases.json").read_text()):
        if c["cls"] == "normal":
            continue
        img = _gray(iio.imread(root / "images" / f"{c['name']}.png"))
        out += _lesions("busi", "busi:" + c["group"], c["name"], img,
                        _components(_read_mask(root / "masks" / f"{c['name']}.png"), 30))
    return out


def mri_slices():
    import imageio.v3 as iio

    root = DATA / "mri/breastdcedl_slices"
    out = []
    for p in sorted((root / "images").glob("*.png")):
        mask = clean_threshold_mask(_read_mask(root / "masks" / p.name))
        out += _lesions("mri_slices", "ispy1:" + p.stem.split("_")[0], p.stem, _gray(iio.imread(p)),
                        _components(mask, 40, rel=0.2))
    return out


def cdd_cesm():
    import imageio.v3 as iio

    root = DATA / "mammography/cdd_cesm"
    out = []
    for p in sorted((root / "images").glob("*.png")):
        out += _lesions("cdd_cesm", "cdd:" + p.stem.split("_")[0], p.stem, _gray(iio.imread(p)),
                        _components(_read_mask(root / "masks" / p.name), 200, min_solidity=0.5))
    return out


def mias():
    import csv

    import imageio.v3 as iio

    from napari_lesionseg.core.annotations import Circle, circles_to_labels

    root = DATA / "mammography/mias"
    if not (root / "annotations.csv").exists():
        return []
    circles: dict[str, list] = {}
    with open(root / "annotations.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["cls"] in {"CIRC", "SPIC", "MISC"} and row["radius"]:
                circles.setdefault(row["image"], []).append(
                    Circle(row=float(row["row"]), col=float(row["col"]), radius=float(row["radius"])))
    out = []
    for name, cs in sorted(circles.items()):
        if not (root / "images" / name).exists():
            continue
        img = _gray(iio.imread(root / "images" / name))
        lab = circles_to_labels(img.shape, cs)
        woman = f"mias:{(int(name[3:6]) + 1) // 2:03d}"
        out += _lesions("mias", woman, name, img, [lab == k for k in np.unique(lab) if k and (lab == k).sum() > 30])
    return out


def monuseg(per_tile: int = 12, seed: int = 0):
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    out = []
    for sub, masks in (("monuseg_breast", "binary_masks_derived"), ("monuseg_other_organs", "masks")):
        root = DATA / "histology" / sub
        for p in sorted((root / masks).glob("*.png")) if (root / masks).exists() else []:
            imgs = list((root / "images").glob(p.stem + ".*"))
            if not imgs:
                continue
            comps = [c for c in _components(_read_mask(p), 30) if c.sum() <= 1500]
            pick = rng.choice(len(comps), min(per_tile, len(comps)), replace=False) if comps else []
            img = _gray(iio.imread(imgs[0]))
            out += _lesions("monuseg", "tile:" + p.stem, p.stem, img, [comps[i] for i in pick])
    return out


def duke(step: int = 2):
    root = DATA / "mri/duke_153"
    if not (root / "post1.nii.gz").exists():
        return []
    import nibabel as nib

    sys.path.insert(0, str(REPO / "scripts"))
    from make_mri_pseudolabels import duke_pseudolabel

    post = nib.load(str(root / "post1.nii.gz"))
    pre = nib.load(str(root / "pre.nii.gz"))
    sub = (np.asarray(post.dataobj, np.float32) - np.asarray(pre.dataobj, np.float32)).transpose(2, 1, 0)
    sp = np.asarray(post.header.get_zooms()[:3], float)[::-1]
    lab = duke_pseudolabel(sub, sp)
    out = []
    for z in np.flatnonzero(lab.sum((1, 2)) >= 60)[::step]:
        out += _lesions("duke", "duke:153", f"duke153_z{z}", sub[z].copy(), _components(lab[z], 60))
    return out


LOADERS = {"busi": busi, "mri_slices": mri_slices, "cdd_cesm": cdd_cesm, "mias": mias, "monuseg": monuseg,
           "duke": duke}


def load(sources=SOURCES) -> list[Lesion]:
    out = []
    for s in sources:
        out += LOADERS[s]()
    return out
