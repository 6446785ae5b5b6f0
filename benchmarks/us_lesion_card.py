"""The card of the single-network `ultrasound-lesion`, written from its cross-validation (cv_ultrasound_lesion.py),
the cross-validated image gate (us_gate_cv.py) and its figure on BrEaST (another hospital, measured here through
`lesionseg evaluate`'s core). Every figure shown comes from data that chose nothing about the model; the Dice on
its own 577 training images is kept under `metrics.selection_split` only (they trained it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cv_common import publish_card

BREAST = ("../shared/data/ultrasound/breast_lesions_usg/images", "../shared/data/ultrasound/breast_lesions_usg/masks")
SHIPPED_CARD = "models/ultrasound-lesion.json"


def _spread(values) -> dict:
    v = np.asarray(values, float)
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4),
            "min": round(float(v.min()), 4), "max": round(float(v.max()), 4)}


def _lesion_figures(rows: list[dict]) -> dict:
    from napari_lesionseg.core.evaluate import MISS_DICE, bootstrap_ci

    d = np.array([r["dice"] for r in rows if r["has_lesion"]], float)
    lo, hi = bootstrap_ci(d)
    return {"n_lesion": int(len(d)), "mean_dice": round(float(d.mean()), 4), "sd_dice": round(float(d.std(ddof=1)), 4),
            "ci95_mean_dice": [round(lo, 4), round(hi, 4)], "median_dice": round(float(np.median(d)), 4),
            "p10_dice": round(float(np.percentile(d, 10)), 4), "misses": int((d < MISS_DICE).sum())}


def cv_block(results: dict) -> dict:
    """`metrics.external` entry: every BUSI image measured by the fold model that never saw its duplicate group."""
    folds = list(results["folds"].values())
    rows = [r for f in folds for r in f["rows"]]
    normals = [r for r in rows if not r["has_lesion"]]
    fold_fp = [np.mean([r["false_positive"] for r in f["rows"] if not r["has_lesion"]]) for f in folds]
    block = {"dataset": f"BUSI, all 577 images: each measured by the one of {len(folds)} cross-validation models that "
                        "did not train on its duplicate group (folds of ultrasound-class; the recipe's fixed schedule, "
                        "nothing chosen on held-out images; int8 weights as shipped)",
             "short": f"BUSI {len(folds)}-fold CV", "unit": "lesion images",
             "measured_with": "lesionseg evaluate's core (segment_file + case_metrics), one fold model per image",
             **_lesion_figures(rows), "n_lesion_free": len(normals),
             "fp_images": int(sum(r["false_positive"] for r in normals)),
             "folds": {"n": len(folds), "mean_dice": [f["summary"]["all"]["mean_dice"] for f in folds],
                       "sd_mean_dice": _spread([f["summary"]["all"]["mean_dice"] for f in folds])["sd"],
                       "normal_fp_rate": [round(float(x), 4) for x in fold_fp],
                       "sd_normal_fp_rate": _spread(fold_fp)["sd"]},
             "per_class": {}}
    for cls in ("benign", "malignant"):
        sub = [r for r in rows if r["cls"] == cls]
        block["per_class"][cls] = {**_lesion_figures(sub), "fold_mean_dice": _spread(
            [f["summary"][cls]["mean_dice"] for f in folds])}
    block["note"] = ("The shipped weights trained on all 577 images, so no unseen BUSI image is left: this is the "
                     "recipe's figure, measured by cross-validation (gate off).")
    return block


def measured_card(final_card, gate: dict, work: Path):
    """The final model as shipped (int8 weights) with its gate, in `work`, ready to be measured."""
    from cv_ultrasound_lesion import as_int8

    from napari_lesionseg.core.models.card import ModelCard

    card = as_int8(final_card, work)
    d = card.to_dict()
    d["gate"] = gate
    Path(card.path).write_text(json.dumps(d, indent=2))
    return ModelCard.read(card.path)


def breast_gate_off(card, predictor=None) -> dict:
    """BrEaST (another hospital; nothing was tuned on it) through `lesionseg evaluate`'s core, gate off, with the
    Dice of every image. `predictor`: one holding a network already in memory (an ensemble of fold models)."""
    from napari_lesionseg.core.evaluate import evaluate_folder, external_block

    off = evaluate_folder(card, *BREAST, gate=False, predictor=predictor)
    block = external_block(off, "BrEaST-Lesions-USG (Pawlowska et al., Sci Data 2024; another hospital), the 15 "
                                "images in ../shared/data", "BrEaST, another hospital")
    block["per_case"] = {c.name: round(c.dice, 4) for c in off.cases if c.dice is not None}
    block["note"] = "No normal images in this set: no false-positive rate."
    return block


def breast_block(card, threads: int, gate_off: dict | None = None) -> dict:
    """BrEaST, gate off (the default) and on. `gate_off`: that half already measured on the same int8 weights
    (`cv_ultrasound_lesion.py --breast`), kept rather than measured again."""
    import torch

    from napari_lesionseg.core.evaluate import evaluate_folder

    torch.set_num_threads(threads)
    block = dict(gate_off) if gate_off else breast_gate_off(card)
    s = evaluate_folder(card, *BREAST, gate=True).summary
    block["gate"] = {"lesion_images_gated": s.get("gate", {}).get("suppressed_lesion", 0),
                     "with_gate": {k: (round(s[k], 4) if isinstance(s[k], float) else s[k])
                                   for k in ("mean_dice", "median_dice", "misses") if k in s}}
    return block


def training_images_figures(card, recipe, threads: int) -> dict:
    """Dice on the 577 images the model trained on: kept as `selection_split` (not a result)."""
    import json as _json

    from cv_ultrasound_lesion import measure, summary

    names = {c["name"] for c in _json.loads(Path(recipe.cases_json).read_text())}
    s = summary(measure(card, recipe.images, recipe.masks, names, threads))
    return {"val_dice": s["all"]["mean_dice"], "n_val_lesion": s["all"]["n"],
            "val_dice_benign": s["benign"]["mean_dice"], "val_dice_malignant": s["malignant"]["mean_dice"],
            "val_missed_lesions_dice_below_0.1": s["all"]["misses"],
            "n_val_lesion_free": s["normal"]["n"],
            "val_fp_rate_lesion_free": round(s["normal"]["false_region"] / max(1, s["normal"]["n"]), 4)}


def classifier_cv() -> dict:
    """The classifier's own cross-validated gate figures, carried over from the card being replaced."""
    old = json.loads(Path(SHIPPED_CARD).read_text()).get("metrics", {}).get("image_gate", {})
    return {k: old[k] for k in ("classifier", "classifier_cv_5fold_by_group") if k in old}


def write_card(results: dict, gate_cv: dict, recipe, models_dir: Path, work: Path, threads: int,
               gate: dict, gate_note: str) -> Path:
    """Publish the final model as `ultrasound-lesion` (int8) into `models_dir` with its honest figures."""
    from napari_lesionseg.core.models.card import ModelCard

    final = ModelCard.read(results["final"]["card"])
    card = measured_card(final, gate, work / "final")
    if "gate" not in results.get("breast", {}):  # absent, or only the gate-off half from --breast
        results["breast"] = breast_block(card, threads, results.get("breast"))
    if "training_images" not in results:
        results["training_images"] = training_images_figures(card, recipe, threads)
    cv = cv_block(results)
    train_fig = results["training_images"]
    m = {"external": {"busi_cv_5fold": cv, "breast_lesions_usg": results["breast"]},
         "cross_validated": {"BUSI lesion images": cv["mean_dice"]},
         "image_gate": {"rule": gate_note, **classifier_cv(),
                        "cross_validated_with_this_segmenter": {
                            **{k: gate_cv[k] for k in ("none", "p_normal", "mask")},
                            "mask_rule_all_folds": gate_cv["mask_rule_all_folds"],
                            "note": "Each BUSI image's mask from the segmentation fold model and its P(normal) from "
                                    "the classifier fold model that never saw its group (benchmarks/us_gate_cv.py). "
                                    "none: no gate; p_normal: the shipped rule at each fold's own threshold; mask: "
                                    "P(normal) > t1 or the largest lesion probability < t2, chosen on the other "
                                    "four folds (nested). Not used: it lost twice the lesions of p_normal."}},
         "n_train_cases": final.metrics.get("n_train_cases") or results["final"].get("n_train"),
         "epochs_trained": results["final"]["epochs"],
         "kept_epoch": results["final"]["kept_epoch"], "training_minutes": results["final"]["minutes"],
         **train_fig,
         "selection_split": {"keys": list(train_fig), "note": "Measured on the 577 BUSI images the model trained on: "
                             "not a result. See metrics.external: 5-fold cross-validation of the same recipe, and "
                             "BrEaST from another hospital."}}
    d = card.to_dict()
    name = "ultrasound-lesion"
    d.update(name=name, weights=f"{name}.safetensors", metrics=m, recipe=results["recipe"],
             notes=card_notes(cv, results["breast"], results["final"], card) + " " + gate_sentence(gate_cv, gate))
    return publish_card(d, card.weights_path, models_dir)


def network_sentence(final: dict, card) -> str:
    """What the shipped network is and how it was trained (one U-Net, or an ensemble of the runs' final models).
    The precision is not said: the run does not record it (bf16 only on CPUs that have it natively)."""
    members = int(card.members or 1)
    unet = (f"an ImageNet-pretrained EfficientNet-Lite1 encoder (4.5 M parameters, {card.patch_size[0]} px input)")
    schedule = f"all 577 BUSI images for a fixed {final['epochs']} epochs ({final['minutes']:.0f} min"
    if members == 1:
        return f"One U-Net with {unet}, trained on {schedule} on a CPU, no GPU)"
    return (f"An ensemble of {members} U-Nets (probabilities averaged), each with {unet} and its own seed, each "
            f"trained on {schedule} in all on a CPU, no GPU); the cross-validation measures the same ensemble of "
            "fold models")


def card_notes(cv: dict, breast: dict, final: dict, card) -> str:
    b, mal = cv["per_class"]["benign"], cv["per_class"]["malignant"]
    return (f"WHAT TO EXPECT. 5-fold cross-validation over BUSI duplicate groups (each image measured by the model "
            f"that never saw its group; the recipe's fixed schedule, nothing chosen on held-out images): mean Dice "
            f"{cv['mean_dice']:.3f} ± {cv['folds']['sd_mean_dice']:.3f} (SD of the 5 fold means; SD over images "
            f"{cv['sd_dice']:.3f}, median {cv['median_dice']:.3f}) on {cv['n_lesion']} lesion images; benign "
            f"{b['mean_dice']:.3f} (n={b['n_lesion']}), malignant {mal['mean_dice']:.3f} (n={mal['n_lesion']}); "
            f"{cv['misses']} lesions missed (Dice < 0.1); a false region on {cv['fp_images']} of "
            f"{cv['n_lesion_free']} normal images without the gate. On BrEaST-Lesions-USG (another hospital, 15 "
            f"lesions) mean Dice {breast['mean_dice']:.3f} (95% CI {breast['ci95_mean_dice'][0]:.2f}-"
            f"{breast['ci95_mean_dice'][1]:.2f}), {breast['misses']} missed. {network_sentence(final, card)}; "
            "weights stored as int8 per output channel (the figures are the int8 models'). Horizontal-flip "
            "test-time averaging. "
            "Fine-tune on your own corrected cases before relying on it.")



def gate_field(gate_cv: dict, on_by_default: bool, why: str) -> tuple[dict, str]:
    """The card's `gate` (read by core/inference/gate.py): P(normal) above the threshold the classifier's
    cross-validation chose on all five folds empties the mask. The mask-aware rule of us_gate_cv.py is reported on
    the card, not used: held out it lost twice the lesions for a quarter fewer false regions."""
    g = {"classifier": "ultrasound-class", "suppress_class": "normal",
         "threshold": gate_cv["p_normal_threshold_all_folds"], "on_by_default": on_by_default,
         "why_on_by_default" if on_by_default else "why_off_by_default": why}
    text = (f"mask emptied when P(normal) > {g['threshold']:g} (threshold: at most 2% of lesion images suppressed on "
            "the classifier's held-out folds)")
    return g, text


def gate_sentence(gate_cv: dict, gate: dict) -> str:
    none, pn = gate_cv["none"]["pooled"], gate_cv["p_normal"]["pooled"]
    state = "on" if gate.get("on_by_default") else "off"
    return (f"Image gate (ultrasound-class; {state} by default, --gate/--no-gate or the dock's checkbox): "
            f"cross-validated "
            f"with both networks held out, normal images with a false region {none['normal_false_region']} -> "
            f"{pn['normal_false_region']} of {pn['n_normal']}, at the cost of {pn['lesions_lost']} found lesions "
            f"emptied ({pn['lesion_images_emptied']} of {pn['n_lesion']} lesion images; misses {none['misses']} -> "
            f"{pn['misses']}, mean Dice "
            f"{none['mean_dice']:.3f} -> {pn['mean_dice']:.3f}).")
