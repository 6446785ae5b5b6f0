"""Cross-validation by woman of the mammography-mass recipe (mini-MIAS film + CDD-CESM digital), fixed schedule.

Each fold holds out a quarter of the MIAS women (left/right pair: `woman_NNN` in cases.json) and of the CDD-CESM
patients, trains on the rest exactly as the recipe says (no validation split, the last EMA weights: nothing is
chosen on held-out images) and measures the held-out images with the inference engine users get
(`Predictor.predict_image`, the call `lesionseg predict`/`evaluate` make). CDD-CESM images the recipe does not train
on (skin-line masks, contrast-subtracted images) are measured by the fold model of their patient and reported
apart. The old shipped model is measured on CDD-CESM (it trained on most of MIAS: no fair MIAS comparison).

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_mammography.py \\
        --recipe models/mammography-mass.yaml --out /tmp/cv_mg.json --work /tmp/cv_mg --final --card-into models

Resumable: a fold whose result is in --out is not trained again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package (a snapshot's, when run there)
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # cv_common
from cv_common import cv_parser, publish_card, start, train_final, train_fold  # noqa: E402

CDD = REPO.parent / "shared" / "data" / "mammography" / "cdd_cesm"
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)
FP_RATES = (0.25, 0.5, 1.0)
FP_BUDGET = 0.4
"""False regions per image the operating threshold may give on held-out mini-MIAS (under the goal's 0.5: margin)."""


def assign_folds(groups: dict[str, bool], n_folds: int) -> dict[str, int]:
    """Group → fold: groups with a mass dealt round-robin first, then the others, each in name order, so masses
    spread evenly over the folds."""
    order = sorted(g for g, m in groups.items() if m) + sorted(g for g, m in groups.items() if not m)
    return {g: i % n_folds for i, g in enumerate(order)}


def extra_cdd_cases():
    """CDD-CESM images the recipe leaves out of training (skin-line masks, contrast-subtracted), as cases."""
    from make_cdd_masks import SKIN_LINE, patient, usable

    from napari_lesionseg.core.training.data import load_folder

    if not (CDD / "images").is_dir():
        return []
    cases = [c for c in load_folder(CDD / "images", CDD / "masks") if not usable(c.name)]
    for c in cases:
        c.group = f"cdd_{patient(c.name)}"
        c.label = "skin_line" if c.name in SKIN_LINE else "contrast_subtracted"
    return cases


def source_of(case) -> str:
    if case.group.startswith("cdd_"):
        return "cdd_" + (case.label if case.label in ("skin_line", "contrast_subtracted") else "digital")
    return "mias"


def measure(card, cases, threads: int = 1, net=None) -> list[dict]:
    """Per image at every threshold of THRESHOLDS: masses hit and false regions (FROC), and Dice. `net`: a network
    already built for `card` (an ensemble not yet written to disk), else the card's weights."""
    import torch
    from make_cdd_masks import drop_specks

    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.metrics import detection_counts, dice

    torch.set_num_threads(threads)
    pred = Predictor(card, device="cpu", net=net)
    rows = []
    for c in cases:
        p = pred.predict_image(c.image)
        truth = c.mask > 0
        lesions = drop_specks(truth)  # specks of a drawn outline are not lesions
        hits, fps, n_les = detection_counts(p, lesions, THRESHOLDS)
        rows.append({"name": c.name, "source": source_of(c), "n_mass": int(n_les), "hits": hits.tolist(),
                     "fps": fps.tolist(),
                     "dice_at": [round(dice(p >= t, truth), 4) for t in THRESHOLDS] if truth.any() else None})
    return rows


def _index(threshold: float) -> int:
    return int(np.argmin(np.abs(THRESHOLDS - threshold)))


def choose_threshold(rows: list[dict], budget: float = FP_BUDGET) -> float:
    """The operating threshold, chosen on held-out predictions only: the most masses found with at most `budget`
    false regions per image (ties: the higher threshold, fewer false regions)."""
    if not rows:
        return 0.5
    hits = np.sum([r["hits"] for r in rows], 0)
    fps = np.sum([r["fps"] for r in rows], 0) / len(rows)
    ok = np.flatnonzero(fps <= budget)
    if not len(ok):
        return float(THRESHOLDS[-1])
    best = hits[ok].max()
    return float(THRESHOLDS[ok[hits[ok] == best].max()])


def summary(rows: list[dict], threshold: float | None = None) -> dict:
    """Per-mass sensitivity at 0.25/0.5/1 false regions per image (FROC points: the best threshold within each
    budget), and at the operating threshold (`threshold`, or each row's own `t`: its fold's, chosen on the other
    folds): sensitivity, false regions per image, mass Dice, share of mass-free images with a false region."""
    if not rows:
        return {}
    hits = np.sum([r["hits"] for r in rows], 0)
    fps = np.sum([r["fps"] for r in rows], 0) / len(rows)
    n_mass = sum(r["n_mass"] for r in rows)
    sens = hits / max(n_mass, 1)
    out = {"n_images": len(rows), "n_mass": n_mass}
    for rate in FP_RATES:
        ok = fps <= rate
        out[f"sensitivity_at_{rate:g}_fp"] = round(float(sens[ok].max()), 4) if ok.any() else 0.0
    idx = [_index(threshold if threshold is not None else r.get("t", 0.5)) for r in rows]
    out["sensitivity_at_threshold"] = round(sum(r["hits"][i] for r, i in zip(rows, idx)) / max(n_mass, 1), 4)
    out["fp_per_image_at_threshold"] = round(sum(r["fps"][i] for r, i in zip(rows, idx)) / len(rows), 4)
    d = [r["dice_at"][i] for r, i in zip(rows, idx) if r["dice_at"] is not None]
    if d:
        out["mean_dice_mass"] = round(float(np.mean(d)), 4)
        out["n_mass_images"] = len(d)
    free = [r["fps"][i] > 0 for r, i in zip(rows, idx) if r["dice_at"] is None]
    if free:
        out["false_region_rate_mass_free"] = round(float(np.mean(free)), 4)
        out["n_mass_free"] = len(free)
    return out


def by_source(rows: list[dict], threshold: float | None = None) -> dict:
    return {s: summary([r for r in rows if r["source"] == s], threshold) for s in sorted({r["source"] for r in rows})}


def nested_thresholds(results: dict) -> float:
    """Each fold's operating threshold from the other folds' held-out mini-MIAS predictions (so a fold's figure at
    it is honest), its summary at it; returns the threshold all folds together give (the shipped model's)."""
    folds = results["folds"]
    for key, fold in folds.items():
        others = [r for k, f in folds.items() if k != key for r in f["rows"] if r["source"] == "mias"]
        fold["threshold"] = choose_threshold(others)
        for r in fold["rows"]:
            r["t"] = fold["threshold"]
        fold["summary"] = by_source(fold["rows"])
    return choose_threshold([r for f in folds.values() for r in f["rows"] if r["source"] == "mias"])


def spread(results: dict, source: str, key: str) -> dict:
    """Mean ± SD over folds of one figure (folds without that source left out)."""
    v = [f["summary"][source][key] for f in results["folds"].values()
         if key in f["summary"].get(source, {})]
    if not v:
        return {}
    return {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else 0.0,
            "per_fold": v}


def pool(results: dict) -> None:
    """Each fold's nested threshold and summary, the threshold over all folds, the pooled figures and their spread."""
    results["threshold"] = nested_thresholds(results)
    all_rows = [r for f in results["folds"].values() for r in f["rows"]]
    results["cv_pooled"] = by_source(all_rows)
    results["cv_pooled_at_0.5"] = by_source(all_rows, 0.5)
    results["cv_spread"] = {s: {k: spread(results, s, k) for k in results["cv_pooled"][s]
                                if not k.startswith("n_")} for s in results["cv_pooled"]}


def remeasure(results: dict, work: Path, cases, threads: int) -> None:
    """Measure again, from their saved models, the folds measured before rows held Dice at every threshold."""
    from napari_lesionseg.core.models.card import ModelCard

    by_name = {c.name: c for c in cases}
    for k, (key, fold) in enumerate(results["folds"].items(), 1):
        if fold["rows"] and "dice_at" not in fold["rows"][0]:
            card = ModelCard.read(work / key / f"mammo-cv{key[4:]}.json")
            fold["rows"] = measure(card, [by_name[n] for n in fold["held_out"]], threads)


def run_folds(args, recipe, cases, extra, fold_of, results, save) -> None:
    for k in range(args.folds):
        key = f"fold{k + 1}"
        if key in results["folds"] or (args.only_folds and k + 1 not in args.only_folds):
            continue
        held = [c for c in cases + extra if fold_of[c.group] == k]
        train = [c for c in cases if fold_of[c.group] != k]
        card, info = train_fold(args.recipe, train, f"mammo-cv{k + 1}", Path(args.work) / key, args.threads)
        t0 = time.monotonic()
        rows = measure(card, held, args.threads)
        info["eval_minutes"] = round((time.monotonic() - t0) / 60, 2)
        results["folds"][key] = {"held_out": sorted(c.name for c in held), "rows": rows,
                                 "summary": by_source(rows), **info}
        save()
        print(key, json.dumps(results["folds"][key]["summary"]), flush=True)


SOURCES = {
    "mias": ("mias_cv", "mini-MIAS (Suckling et al. 1994): every image measured by the one of {k} cross-validation "
                        "models that did not train on its woman (left/right pair); masses as the MIAS circles (disks)",
             "mini-MIAS, {k}-fold CV by woman", "mass images of held-out women"),
    "cdd_digital": ("cdd_cesm_dm_cv", "CDD-CESM (Khaled et al., Sci Data 2022), the 7 low-energy digital mammograms "
                                      "with usable outlines, each measured by the fold model that never saw its "
                                      "patient; coarse polygon outlines",
                    "CDD-CESM digital, {k}-fold CV by patient", "digital mammograms of held-out patients"),
    "cdd_skin_line": ("cdd_cesm_dm_skin_line", "CDD-CESM, the 3 low-energy digital mammograms whose masks include a "
                                               "drawn skin line (never trained on; outline figures meaningless)",
                      "CDD-CESM skin-line masks", "digital mammograms, masks with a skin line"),
    "cdd_contrast_subtracted": ("cdd_cesm_cm", "CDD-CESM, the 2 contrast-subtracted images (never trained on)",
                                "CDD-CESM contrast-subtracted", "contrast-subtracted images"),
}


def external_blocks(results: dict) -> dict:
    """The card's `metrics.external`: per source, the held-out figures pooled over folds, with their spread."""
    from napari_lesionseg.core.evaluate import MISS_DICE, bootstrap_ci

    k = len(results["folds"])
    out = {}
    for source, (key, dataset, short, unit) in SOURCES.items():
        rows = [r for f in results["folds"].values() for r in f["rows"] if r["source"] == source]
        if not rows:
            continue
        pooled = summary(rows)
        dice_at_t = {r["name"]: r["dice_at"][_index(r["t"])] for r in rows if r["dice_at"] is not None}
        d = np.array(list(dice_at_t.values()), float)
        lo, hi = bootstrap_ci(d)
        block = {"dataset": dataset.format(k=k), "short": short.format(k=k), "unit": unit,
                 "measured_with": "Predictor.predict_image (the call lesionseg predict/evaluate make), per fold model",
                 "n_lesion": int(len(d)), "n_lesion_free": pooled.get("n_mass_free", 0),
                 "mean_dice": round(float(d.mean()), 4), "ci95_mean_dice": [round(lo, 4), round(hi, 4)],
                 "median_dice": round(float(np.median(d)), 4), "misses": int((d < MISS_DICE).sum()),
                 "n_mass_regions": pooled["n_mass"]}
        if pooled.get("n_mass_free"):
            block["fp_images"] = int(round(pooled["false_region_rate_mass_free"] * pooled["n_mass_free"]))
        for name in ("sensitivity_at_0.25_fp", "sensitivity_at_0.5_fp", "sensitivity_at_1_fp",
                     "sensitivity_at_threshold", "fp_per_image_at_threshold", "mean_dice_mass",
                     "false_region_rate_mass_free"):
            if name in pooled:
                block[name] = pooled[name]
                if source == "mias":
                    block[name + "_per_fold"] = spread(results, source, name)
        if source != "mias":  # a handful of images: each one's figure
            block["per_image_dice"] = dice_at_t
        out[key] = block
    return out


def write_card(results: dict, recipe_path: str, models_dir: Path) -> Path:
    """Publish the final model into `models_dir` as the recipe's name, its card carrying the cross-validated
    figures (`metrics.external`) and, marked as the selection split, its figures on its own training images."""
    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources

    recipe = TrainConfig.from_file(recipe_path)
    final = ModelCard.read(results["final"]["card"])
    if "training_images" not in results:
        rows = measure(final, load_sources(recipe))
        results["training_images"] = by_source(rows, results["threshold"])
    own = results["training_images"]
    ext = external_blocks(results)
    mias = ext["mias_cv"]
    m = {"val_dice": own["mias"]["mean_dice_mass"], "n_val_lesion": own["mias"]["n_mass_images"],
         "val_sensitivity_at_0.5_fp_per_image": own["mias"]["sensitivity_at_0.5_fp"],
         "n_train_cases": results["final"]["n_train"], "epochs_trained": results["final"]["epochs"],
         "training_minutes": results["final"]["minutes"],
         "cv_sensitivity_at_0.25_fp_per_image": mias["sensitivity_at_0.25_fp"],
         "cv_sensitivity_at_0.5_fp_per_image": mias["sensitivity_at_0.5_fp"],
         "cv_sensitivity_at_1_fp_per_image": mias["sensitivity_at_1_fp"],
         "cv_fold_minutes": [f["minutes"] for f in results["folds"].values()],
         "cv_fold_thresholds": [f["threshold"] for f in results["folds"].values()],
         "external": ext,
         "baseline_on_cdd": results.get("baseline_cdd", {}).get("summary"),
         "selection_split": {"keys": ["val_dice", "n_val_lesion", "val_sensitivity_at_0.5_fp_per_image"],
                             "note": "Measured on the shipped model's own training images: optimistic, not a "
                                     "result to quote. See metrics.external: cross-validation by woman of the "
                                     "same recipe."}}
    card = final.to_dict()
    name = recipe.name
    card.update(name=name, metrics=m, recipe=recipe_path, weights=f"{name}.safetensors",
                threshold=results["threshold"])
    card["notes"] = card_notes(results, ext)
    return publish_card(card, final.weights_path, models_dir)


def _pm(block: dict, key: str) -> str:
    s = block.get(key + "_per_fold") or {}
    return f"{block[key]:.2f}" + (f" (folds {s['mean']:.2f} ± {s['sd']:.2f})" if s else "")


def card_notes(results: dict, ext: dict) -> str:
    """What to expect, in words, from the held-out figures only."""
    k, mias = len(results["folds"]), ext["mias_cv"]
    text = (f"WHAT TO EXPECT, from {k}-fold cross-validation by woman of this recipe (fixed schedule, last EMA "
            f"weights: nothing chosen on held-out images). mini-MIAS film, {mias['n_mass_regions']} masses on "
            f"{mias['n_lesion']} images of held-out women: {_pm(mias, 'sensitivity_at_0.5_fp')} of masses found at "
            f"0.5 false regions per image ({_pm(mias, 'sensitivity_at_0.25_fp')} at 0.25, "
            f"{_pm(mias, 'sensitivity_at_1_fp')} at 1). At the operating threshold (each fold's chosen on the other "
            f"folds' held-out images for at most {FP_BUDGET:g} false regions per image; the shipped model's, "
            f"{results['threshold']:.2f}, on all of them) "
            f"{mias['sensitivity_at_threshold']:.2f} found with {mias['fp_per_image_at_threshold']:.2f} false regions "
            f"per image, {mias.get('fp_images', 0)} of {mias['n_lesion_free']} mass-free images with a false region; "
            f"mass Dice against the MIAS disks {mias['mean_dice']:.2f} (95% CI {mias['ci95_mean_dice'][0]:.2f}–"
            f"{mias['ci95_mean_dice'][1]:.2f}).")
    dm = ext.get("cdd_cesm_dm_cv")
    if dm:
        text += (f" CDD-CESM digital mammograms (each by the fold model that never saw its patient): Dice "
                 f"{dm['mean_dice']:.2f} on {dm['n_lesion']} images, {dm['n_lesion'] - dm['misses']} of "
                 f"{dm['n_lesion']} masses found (Dice >= 0.1).")
    sk = ext.get("cdd_cesm_dm_skin_line")
    if sk:
        text += (f" The 3 CDD-CESM images whose masks include a drawn skin line were not trained on and are "
                 f"reported apart (Dice {sk['mean_dice']:.2f}, meaningless against a skin outline).")
    return text + " The shipped weights trained on all of these images, so these figures are the recipe's."


def main(argv=None) -> int:
    ap = cv_parser(__doc__, folds=4)
    ap.add_argument("--baseline", default=None, help="the old model's card, measured on CDD-CESM only")
    args = ap.parse_args(argv)

    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.training.data import load_sources

    results, save, recipe, work = start(args)
    cases, extra = load_sources(recipe), extra_cdd_cases()
    has_mass = {}
    for c in cases:  # extra CDD images never train: their masks do not count
        has_mass[c.group] = has_mass.get(c.group, False) or bool(c.mask.any())
    for c in extra:
        has_mass.setdefault(c.group, False)
    mias = assign_folds({g: m for g, m in has_mass.items() if not g.startswith("cdd_")}, args.folds)
    cdd = assign_folds({g: m for g, m in has_mass.items() if g.startswith("cdd_")}, args.folds)
    fold_of = {**mias, **cdd}
    results["recipe"] = args.recipe
    results["split"] = {f"fold{k + 1}": sorted(g for g, f in fold_of.items() if f == k) for k in range(args.folds)}

    if args.baseline and "dice_at" not in (results.get("baseline_cdd", {}).get("rows") or [{}])[0]:
        rows = measure(ModelCard.read(args.baseline), [c for c in cases + extra if c.group.startswith("cdd_")],
                       args.threads)
        baseline_t = ModelCard.read(args.baseline).threshold
        results["baseline_cdd"] = {"card": args.baseline, "rows": rows, "summary": by_source(rows, baseline_t)}
        save()
        print("baseline on CDD-CESM", json.dumps(results["baseline_cdd"]["summary"]), flush=True)

    run_folds(args, recipe, cases, extra, fold_of, results, save)
    remeasure(results, work, cases + extra, args.threads)
    pool(results)
    save()
    print("pooled over held-out folds", json.dumps(results["cv_pooled"]), flush=True)

    if len(results["folds"]) == args.folds:  # the shipped model only after every fold is measured
        train_final(args, results, save, cases, recipe, work)
    if args.card_into and "final" in results:
        print("published", write_card(results, args.recipe, Path(args.card_into)))
        save()  # with the figures on the final model's own training images
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
