"""Validation metrics of the shipped models beyond Dice, on the same split their recipes train with.

    .venv/bin/python benchmarks/eval_models.py [--models mammography-mass mri-lesion] [--update-cards]
    .venv/bin/python benchmarks/eval_models.py --card /tmp/out/ultrasound-lesion.json   # a candidate model

- every model: mean Dice per lesion case at the case's own resolution (as the Segment dock shows it), per class;
- ultrasound and mammography: share of lesion-free images with any false-positive region;
- mammography (mini-MIAS circles): lesion sensitivity at 0.25/0.5/1/2 false-positive regions per image (FROC
  points, a region counts as a hit when it overlaps a MIAS circle) and the false-positive area on normal images;
- models with no validation split (MRI): Dice on their training cases, named so; on Duke 153 the share of predicted voxels inside the tumour box;
- ultrasound: Dice when the validation images are changed as another hospital's scanner might change them (gain,
  contrast curve, lower resolution, stronger speckle): a stand-in for a second hospital that flatters the model
  (0.79–0.81 here against 0.730 on the real second site, BrEaST: see `--external`).

`--update-cards` writes these numbers into the cards in models/ (atomically), so the README table and
`lesionseg models` show them.

    .venv/bin/python benchmarks/eval_models.py --external [--update-cards]

`--external` instead runs `lesionseg evaluate` (core/evaluate.py) on the second-source data sets in `EXTERNAL`, data
that chose no epoch, recipe or ensemble pair: BrEaST (ultrasound, another hospital), CDD-CESM digital mammograms,
MoNuSeg tiles of other organs. With `--update-cards` they become the cards' `metrics["external"]` blocks, the
figure the Segment dock, `lesionseg models` and the README show (`ModelCard.headline_metric`), and the validation
figures are listed under `metrics["selection_split"]`: they chose the epoch, so they are not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

from napari_lesionseg.core.evaluate import (  # noqa: E402
    case_metrics,
    evaluate_folder,
    external_block,
    summarise,
    summary_line,
)
from napari_lesionseg.core.inference.engine import Predictor  # noqa: E402
from napari_lesionseg.core.metrics import dice, sensitivity_at_fp  # noqa: E402
from napari_lesionseg.core.models.card import ModelCard  # noqa: E402
from napari_lesionseg.core.models.registry import ModelRegistry, shipped_models_dir  # noqa: E402
from napari_lesionseg.core.training.config import TrainConfig  # noqa: E402
from napari_lesionseg.core.training.data import load_sources, split_by_group  # noqa: E402
from napari_lesionseg.core.io.atomic import write_text_atomic  # noqa: E402

MIAS_PIXEL_MM = 0.2  # mini-MIAS: 200 µm pixels (data README)


def _recipe_path(card: ModelCard) -> Path:
    """The card's recipe; for an ensemble ("a.yaml + b.yaml, combined by …") the first member's, whose
    validation split every member shares."""
    return REPO / (card.recipe.split()[0] if card.recipe else f"models/{card.name}.yaml")


def evaluate_model(card: ModelCard) -> dict:
    cfg = TrainConfig.from_file(_recipe_path(card))
    cases = load_sources(cfg)
    train_cases, val = split_by_group(cases, cfg.val_fraction, cfg.seed)
    pred = Predictor(card, device="cpu")
    if not val:  # nothing held out (mri-lesion): say how it does on its own training cases, named as such
        m = {}
        for c in train_cases:
            p = pred.predict_volume(c.image) if c.mask.ndim == 3 else pred.predict_image(c.image)
            m[f"train_case_dice_{c.name}"] = dice(p >= card.threshold, c.mask > 0)
        if card.modality == "mri":
            m.update(_duke_box_check(pred, card))
        return m
    t = card.threshold
    results, probs_all, truths, fp_area = [], [], [], []
    for c in val:
        is_volume = c.mask.ndim == 3
        p = pred.predict_volume(c.image) if is_volume else pred.predict_image(c.image)  # binary models: no K axis
        seg = p >= t
        results.append(case_metrics(seg, c.mask, c.name, cls=c.label))  # the figures `lesionseg evaluate` gives
        if not c.mask.any():
            fp_area.append(seg.mean())
        if not is_volume:
            probs_all.append(p)
            truths.append(c.mask > 0)
    s = summarise(results)
    m = {"val_dice": s["mean_dice"], "n_val_lesion": s["n_lesion"]}
    m.update({f"val_dice_{k}": v["mean_dice"] for k, v in s.get("per_class", {}).items() if "mean_dice" in v})
    if s["n_lesion_free"]:
        m["val_fp_rate_lesion_free"] = s["fp_images"] / s["n_lesion_free"]
        m["n_val_lesion_free"] = s["n_lesion_free"]
    if card.modality == "mammography":
        for rate, (sens, thr) in sensitivity_at_fp(probs_all, truths).items():
            m[f"val_sensitivity_at_{rate:g}_fp_per_image"] = sens
        m["n_val_images"] = len(probs_all)
        if fp_area:
            area_mm2 = [a * 1024 * 1024 * MIAS_PIXEL_MM**2 for a in fp_area]
            m["val_fp_area_mm2_per_normal_image"] = float(np.mean(area_mm2))
            m["val_fp_area_fraction_normal"] = float(np.mean(fp_area))
    if card.modality == "mri":
        m.update(_duke_box_check(pred, card))
    if card.modality == "ultrasound":
        m.update(_scanner_shift(pred, card, [c for c in val if c.mask.any()]))
    return m


def _shifted(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import resize

    x = image.astype(np.float32) / 255.0
    if kind == "darker":  # lower gain and a different log-compression curve
        x = 0.7 * x**1.4
    elif kind == "brighter":
        x = np.clip(1.25 * x**0.7, 0, 1)
    elif kind == "half_resolution":  # a coarser probe / smaller export, shown at the same size
        x = resize(resize(x, (x.shape[0] // 2, x.shape[1] // 2), anti_aliasing=True), x.shape, order=1)
    elif kind == "speckle":  # multiplicative speckle, as a noisier machine gives
        x = np.clip(x * rng.gamma(8.0, 1 / 8.0, x.shape), 0, 1)
    return (x * 255).astype(np.uint8)


def _scanner_shift(pred: Predictor, card: ModelCard, lesion_cases) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for kind in ("darker", "brighter", "half_resolution", "speckle"):
        d = [dice(pred.predict_image(_shifted(c.image, kind, rng)) >= card.threshold, c.mask > 0)
             for c in lesion_cases]
        out[f"val_dice_{kind}"] = float(np.mean(d))
    return out


def _duke_box_check(pred: Predictor, card: ModelCard) -> dict:
    """Where the model puts lesion on the whole Duke 153 subtraction volume (its training case: a sanity check of
    false positives outside the tumour box, not a validation)."""
    import nibabel as nib

    duke = DATA / "mri" / "duke_153"
    if not (duke / "post1.nii.gz").exists():
        return {}
    post = nib.load(str(duke / "post1.nii.gz"))
    sub = (np.asarray(post.dataobj, np.float32) - np.asarray(nib.load(str(duke / "pre.nii.gz")).dataobj,
                                                               np.float32)).transpose(2, 1, 0)
    seg = pred.predict_volume(sub) >= card.threshold
    from make_mri_pseudolabels import DUKE_BOX_ZYX

    box = np.zeros(seg.shape, bool)
    box[DUKE_BOX_ZYX] = True
    vox_ml = float(np.prod(post.header.get_zooms()[:3])) / 1000
    return {"duke153_share_inside_box": float((seg & box).sum() / max(seg.sum(), 1)),
            "duke153_ml_outside_box": float((seg & ~box).sum() * vox_ml),
            "duke153_ml_inside_box": float((seg & box).sum() * vox_ml)}


# Data from sources that chose nothing about the models (no epoch, recipe or ensemble pair was picked on them):
# model -> (key, folder under shared/data, dataset, short name, unit, case filter, note).
EXTERNAL = {
    "ultrasound-lesion": [
        ("breast_lesions_usg", "ultrasound/breast_lesions_usg",
         "BrEaST-Lesions-USG (Pawlowska et al., Sci Data 2024; another hospital), the 15 images in ../shared/data",
         "BrEaST, another hospital", "lesion images", None, "No normal images in this set: no false-positive rate."),
    ],
    # mammography-mass: the CDD-CESM digital mammograms with usable outlines are now training data; its card's
    # figures come from cross-validation by woman and patient (benchmarks/cv_mammography.py), not from this table.
    # histology-nuclei: every MoNuSeg tile here is now training data; its card's figures come from
    # cross-validation over tiles (benchmarks/cv_histology_nuclei.py), not from this table.
}

SELECTION_NOTE = ("Measured on the validation split that chose the best epoch, or on the model's own training "
                  "images: optimistic, not a result to quote. See metrics.external.")


def evaluate_external(card: ModelCard) -> dict:
    """`lesionseg evaluate` on each second-source data set of this model: the card's `external` blocks."""
    out = {}
    for key, folder, dataset, short, unit, only, note in EXTERNAL.get(card.name, []):
        root = DATA / folder
        if not (root / "images").is_dir():
            print(f"  {key}: {root} not here, skipped")
            continue
        ev = evaluate_folder(card, root / "images", root / "masks", device="cpu", only=only)
        print(f"  {key}: {summary_line(ev.summary)}")
        for c in ev.cases:
            print(f"    {c.name:28s} Dice {'' if c.dice is None else f'{c.dice:.3f}':6s} "
                  f"{'missed' if c.missed else ''} {'hit' if c.hit else ''} {c.error}")
        out[key] = external_block(ev, dataset, short, unit, note)
    return out


SAME_MODEL_KEYS = ("n_lesion", "n_lesion_free", "mean_dice", "misses")


def merge_external(external: dict, blocks: dict) -> dict:
    """The card's `external` figures with `blocks` written in. What a card writer added to a block (the BrEaST
    figures with the image gate, per-case rows, its own note) is kept when the new figures are the same model's
    (the same counts and mean Dice); when they differ the old additions described another model and are dropped,
    with a message, rather than left beside figures they do not belong to."""
    merged = dict(external)
    for key, new in blocks.items():
        old = external.get(key) or {}
        extra = {k: v for k, v in old.items() if k not in new or k == "note"}
        if extra and all(old.get(k) == new.get(k) for k in SAME_MODEL_KEYS):
            merged[key] = {**new, **extra}
        else:
            if extra:
                print(f"  {key}: the card's {', '.join(sorted(extra))} described another model's figures; dropped "
                      "(re-run the model's card writer to add them back)")
            merged[key] = new
    return merged


def mark_selection_split(metrics: dict) -> None:
    """List the figures from data that chose something; a card's own note (what chose what) is kept."""
    note = (metrics.get("selection_split") or {}).get("note", SELECTION_NOTE)
    metrics["selection_split"] = {
        "keys": [k for k in metrics if k.startswith(("val_", "n_val", "member_val"))], "note": note}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="shipped model names (default: all with data here)")
    ap.add_argument("--card", help="evaluate this model card (JSON) instead, e.g. a candidate from `lesionseg train`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--update-cards", action="store_true", help="write the metrics into the cards in models/")
    ap.add_argument("--external", action="store_true",
                    help="instead: `lesionseg evaluate` on the second-source data sets (EXTERNAL); with "
                         "--update-cards they become the cards' `external` figures, and the validation figures "
                         "are marked `selection_split`")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.card:
        cards = [ModelCard.read(args.card)]
    else:
        cards = [c for c in ModelRegistry([shipped_models_dir()]).cards()
                 if not args.models or c.name in args.models]
    if args.external:
        for card in cards:
            if card.name not in EXTERNAL:
                continue
            print(card.name)
            blocks = evaluate_external(card)
            if args.update_cards and blocks and not args.card:
                path = shipped_models_dir() / f"{card.name}.json"
                data = json.loads(path.read_text())
                metrics = data.setdefault("metrics", {})
                metrics["external"] = merge_external(metrics.get("external") or {}, blocks)
                mark_selection_split(metrics)
                write_text_atomic(path, json.dumps(data, indent=2))
                os.chmod(path, 0o644)
                print(f"  → {path}")
        return
    for card in cards:
        try:
            TrainConfig.from_file(_recipe_path(card))
        except Exception as e:  # no recipe (a user's model) or its data is not here
            print(f"{card.name}: skipped ({e})")
            continue
        t0 = time.time()
        try:
            metrics = evaluate_model(card)
        except Exception as e:
            print(f"{card.name}: skipped ({e})")
            continue
        print(f"{card.name} ({time.time() - t0:.0f} s)")
        for k, v in metrics.items():
            print(f"  {k:40s} {v:.4g}" if isinstance(v, float) else f"  {k:40s} {v}")
        if args.update_cards and not args.card:
            path = shipped_models_dir() / f"{card.name}.json"
            data = json.loads(path.read_text())
            data.setdefault("metrics", {}).update(metrics)
            if "external" in data["metrics"]:
                mark_selection_split(data["metrics"])
            write_text_atomic(path, json.dumps(data, indent=2))
            os.chmod(path, 0o644)
            print(f"  → {path}")


if __name__ == "__main__":
    sys.exit(main())
