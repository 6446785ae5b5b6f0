"""Does fine-tuning the prompt network on a user's corrected masks help on their data? Held out, honestly.

The shipped prompt_unet never saw these sources (its training data: BUSI, BreastDCEDL/ISPY1 MRI slices, CDD-CESM,
mini-MIAS, MoNuSeg, Duke 153):
- `breast_usg`: BrEaST-Lesions-USG, 15 ultrasound images from another hospital (one image per patient);
- `brain1`: the pyradiomics brain tumour MRI (T1 post-contrast), its slices with tumour: ONE patient, so a split
  of its slices is a split within one scan ("a new scanner", not new patients) — said wherever it is reported;
- `breast1`: the pyradiomics breast MRI crop (tiny lesion, measured with the base only).

For a source, the images (BrEaST) or slice blocks (brain1: contiguous blocks of slices, so neighbouring slices are
not on both sides) are dealt into k folds; for each fold, `finetune_prompt_model` trains on the other folds' masks
(the "corrected masks") and every lesion of the held-out fold is segmented from its true longest diameter (line)
and its bounding box (box) by the base and by the fine-tuned model; per-lesion Dice. The fine-tuned models are also
run on a fixed BUSI subset (source they were not fine-tuned on) to show they did not get worse there. Nothing here
chooses a recipe: the steps and learning rate are the function's defaults, fixed before this was run.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/eval_prompt_finetune.py --source breast_usg --folds 3
    python benchmarks/eval_prompt_finetune.py --base-only          # the base on every unseen source
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_lesionseg.core.training.prompt_samples import Lesion, components, lesions_from_components  # noqa: E402


def _gray(a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return a.astype(np.float32)


def breast_usg() -> tuple[list[Lesion], list[str]]:
    """(lesions, group per lesion): one group per image (= patient)."""
    import imageio.v3 as iio

    root = DATA / "ultrasound/breast_lesions_usg"
    out = []
    for p in sorted((root / "images").glob("*.png")):
        m = iio.imread(root / "masks" / p.name) > 0
        m = m.any(-1) if m.ndim == 3 else m
        out += lesions_from_components("breast_usg", p.stem, p.stem, _gray(iio.imread(p)), components(m, 30))
    return out, [l.patient for l in out]


def _volume_slices(stem: str, min_px: int) -> list[Lesion]:
    import nibabel as nib

    root = DATA / "mri/pyradiomics"
    img = np.asarray(nib.load(str(root / f"{stem}_image.nii.gz")).dataobj, np.float32).transpose(2, 1, 0)
    lab = np.asarray(nib.load(str(root / f"{stem}_label.nii.gz")).dataobj).transpose(2, 1, 0) > 0
    out = []
    for z in np.flatnonzero(lab.sum((1, 2)) >= min_px):
        out += lesions_from_components(stem, f"{stem}:z{z:02d}", f"{stem} z{z}", img[z].copy(),
                                       components(lab[z], min_px))
    return out


def brain1(blocks: int = 3) -> tuple[list[Lesion], list[str]]:
    """Slices with tumour; group = a contiguous block of slices (one patient: the split is within one scan)."""
    les = _volume_slices("brain1", 30)
    zs = sorted({l.patient for l in les})
    block_of = {z: f"block{min(i * blocks // len(zs), blocks - 1)}" for i, z in enumerate(zs)}
    return les, [block_of[l.patient] for l in les]


def breast1() -> tuple[list[Lesion], list[str]]:
    les = _volume_slices("breast1", 10)
    return les, ["breast1"] * len(les)


def busi_subset(n: int = 60) -> list[Lesion]:
    """A fixed BUSI subset (first n lesions in md5 order of the name): a source the fine-tuning never sees."""
    import hashlib

    sys.path.insert(0, str(REPO / "scripts"))
    import prompt_lesions as pl

    les = pl.busi()
    les.sort(key=lambda l: hashlib.md5(l.name.encode()).hexdigest())
    return les[:n]


SOURCES = {"breast_usg": breast_usg, "brain1": brain1, "breast1": breast1}


def dice(a, b) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def score(lesions: list[Lesion], model: str | None, method: str = "learned") -> dict[str, list[float]]:
    """Per-lesion Dice with the true longest diameter as the line and the bounding box as the box."""
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.annotations.prompts import box_to_mask
    from napari_lesionseg.core.errors import LesionSegError

    out: dict[str, list[float]] = {"line": [], "box": []}
    for les in lesions:
        try:
            m = line_to_mask(les.image, les.p0, les.p1, method=method, model=model)
        except LesionSegError:
            m = np.zeros_like(les.mask)
        out["line"].append(dice(m, les.mask))
        if method != "learned" or model == "busi_line_unet":
            continue
        rows, cols = np.flatnonzero(les.mask.any(1)), np.flatnonzero(les.mask.any(0))
        try:
            m = box_to_mask(les.image, (rows[0], cols[0]), (rows[-1], cols[-1]), model=model)
        except LesionSegError:
            m = np.zeros_like(les.mask)
        out["box"].append(dice(m, les.mask))
    return {k: v for k, v in out.items() if v}


def summary(v) -> str:
    v = np.asarray(v)
    return f"{v.mean():.3f} (10th pct {np.percentile(v, 10):.3f}, n {len(v)})"


def base_only() -> None:
    for name, load in SOURCES.items():
        les, _ = load()
        for model, method in (("prompt_unet", "learned"), ("busi_line_unet", "learned"), (None, "classical")):
            s = score(les, model, method)
            print(name, model or method, {k: summary(v) for k, v in s.items()}, flush=True)


def cross_validate(source: str, folds: int, steps: int, busi_n: int, out_json: str | None) -> None:
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model

    lesions, groups = SOURCES[source]()
    uniq = sorted(set(groups))
    fold_of = {g: i % folds for i, g in enumerate(uniq)}
    busi = busi_subset(busi_n) if busi_n else []
    res = {"base": {"line": [], "box": []}, "tuned": {"line": [], "box": []}, "folds": []}
    busi_base = score(busi, "prompt_unet") if busi else {}
    tmp = tempfile.mkdtemp(prefix="prompt-ft-")
    os.environ["LESIONSEG_USER_MODELS_DIR"] = tmp  # fine-tuned fold models never reach the real user folder
    for k in range(folds):
        train = [l for l, g in zip(lesions, groups) if fold_of[g] != k]
        test = [l for l, g in zip(lesions, groups) if fold_of[g] == k]
        t0 = time.time()
        # the corrected masks: one full mask per training image/slice (all its lesions)
        names = sorted({l.name for l in train})
        images = [next(l.image for l in train if l.name == n) for n in names]
        masks = [np.any([l.mask for l in train if l.name == n], axis=0) for n in names]
        card = finetune_prompt_model("prompt_unet", images, masks, f"{source}-f{k}", steps=steps, names=names)
        base, tuned = score(test, "prompt_unet"), score(test, card.name)
        fold = {"fold": k, "train_masks": len(names), "test_lesions": len(test), "seconds": round(time.time() - t0),
                "base": {m: float(np.mean(v)) for m, v in base.items()},
                "tuned": {m: float(np.mean(v)) for m, v in tuned.items()}}
        if busi:
            fold["busi_tuned"] = {m: float(np.mean(v)) for m, v in score(busi, card.name).items()}
        for m in ("line", "box"):
            res["base"][m] += base[m]
            res["tuned"][m] += tuned[m]
        res["folds"].append(fold)
        print(json.dumps(fold), flush=True)
    print(f"\n{source}: {folds}-fold, {steps} steps; per-lesion Dice on held-out folds")
    for m in ("line", "box"):
        b, t = np.asarray(res["base"][m]), np.asarray(res["tuned"][m])
        print(f"  {m}: base {summary(b)}  fine-tuned {summary(t)}  gain {np.mean(t - b):+.3f} "
              f"(better on {int((t > b + 0.01).sum())}, worse on {int((t < b - 0.01).sum())} of {len(b)})")
    if busi:
        for m in ("line", "box"):
            per = [f["busi_tuned"][m] for f in res["folds"]]
            print(f"  BUSI subset ({len(busi)} lesions, not fine-tuned on) {m}: base {np.mean(busi_base[m]):.3f}, "
                  f"fine-tuned fold models {', '.join(f'{x:.3f}' for x in per)}")
        res["busi_base"] = {m: float(np.mean(v)) for m, v in busi_base.items()}
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", choices=list(SOURCES), default="breast_usg")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="default: finetune_prompt_model's default")
    ap.add_argument("--busi", type=int, default=40, help="BUSI lesions for the did-not-get-worse check (0: skip)")
    ap.add_argument("--base-only", action="store_true")
    ap.add_argument("--json", help="write the per-lesion figures here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.base_only:
        base_only()
        return
    from napari_lesionseg.core.training.prompt_finetune import DEFAULT_STEPS

    cross_validate(args.source, args.folds, args.steps or DEFAULT_STEPS, args.busi, args.json)


if __name__ == "__main__":
    main()
