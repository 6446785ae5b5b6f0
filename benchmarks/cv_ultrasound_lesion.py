"""Cross-validation of the single-network ultrasound recipe over BUSI duplicate groups, with its FIXED schedule.

The 5 folds are those of the image classifier `ultrasound-class` (`fold_of_group` in scripts/train_us_classifier.py:
duplicate groups dealt per class), so its held-out probabilities (/tmp/usclass/fold<k>/probs.csv) can gate the
held-out masks with both parts unseen (benchmarks/us_gate_cv.py). Each fold trains the recipe as written on the other
four folds (no validation split, no early stopping: nothing is chosen on the held-out images), rounds the weights to
int8 as they would ship, and measures every held-out image (lesion and normal) through `lesionseg predict`'s path
(`core.inference.run.segment_file` + `core.evaluate.case_metrics`, as `lesionseg evaluate`), gate off. Per image it
keeps Dice, misses, predicted area, and the largest probability (for mask-aware gate rules). With --final the recipe
then trains once on all 577 images; --breast measures that model (int8, gate off) on BrEaST (another hospital).
--card-into then publishes that model as `ultrasound-lesion` (int8) with the cross-validated figures, its BrEaST
figures with the gate off and on, and the cross-validated gate (--gate-cv, from benchmarks/us_gate_cv.py) on its card.

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_ultrasound_lesion.py \\
        --recipe models/ultrasound-lesion-single.yaml --out /tmp/uscv.json --work /tmp/uscv --final

Resumable: a fold whose result is in --out is not trained again. A fold's time cap (`max_minutes`) is the recipe's
scaled by its share of the images, so a busy machine gives every run the same time per image.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package (a snapshot's, when run there)
sys.path.insert(0, str(REPO / "benchmarks"))
from cv_common import cv_parser, publish_card, start, train_final, train_fold  # noqa: E402

FOLDS = 5
SEED = 0  # the classifier recipe's seed: the same folds


def busi_folds(cases_json: str | Path, folds: int = FOLDS, seed: int = SEED) -> dict[str, int]:
    """Fold of every BUSI image, exactly as the classifier's cross-validation deals them."""
    spec = importlib.util.spec_from_file_location("train_us_classifier", REPO / "scripts" / "train_us_classifier.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cases = json.loads(Path(cases_json).read_text())
    labels = np.array([mod.CLASSES.index(c["cls"]) for c in cases])
    fold = mod.fold_of_group([c["group"] for c in cases], labels, folds, seed)
    return {c["name"]: int(f) for c, f in zip(cases, fold)}


def as_int8(card, out_dir: Path):
    """The fold model with int8 weights, as `ultrasound-lesion` ships: what is measured is what would ship."""
    from napari_lesionseg.core.models.build import load_model, save_weights
    from napari_lesionseg.core.models.card import ModelCard

    net = load_model(card).net
    save_weights(net, out_dir / f"{card.name}-int8.safetensors", int8=True)
    d = card.to_dict()
    d.update(name=f"{card.name}-int8", weights=f"{card.name}-int8.safetensors", weight_storage="int8")
    (out_dir / f"{card.name}-int8.json").write_text(json.dumps(d, indent=2))
    return ModelCard.read(out_dir / f"{card.name}-int8.json")


def measure(card, images: str, masks: str, names: set[str], threads: int = 1, net=None) -> list[dict]:
    """Per image (lesion and normal): Dice, miss, false region, areas and the largest lesion probability, through
    the path of `lesionseg evaluate` with the gate off (the gate is studied on these rows afterwards). `net`: a
    network already in memory for `card` (an ensemble of fold models), else the card's weights are loaded."""
    import torch

    from napari_lesionseg.core.evaluate import case_metrics, pair_files, read_truth
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.run import segment_file

    torch.set_num_threads(threads)
    predictor = Predictor(card, device="cpu", net=net)
    rows = []
    for name, img, msk in pair_files(images, masks).pairs:
        if name not in names:
            continue
        _scan, probs, predicted = segment_file(predictor, img, gate=False)
        r = case_metrics(predicted, read_truth(msk), name)
        p = np.asarray(probs, np.float32)
        rows.append({"name": name, "cls": r.cls, "has_lesion": r.has_lesion, "dice": r.dice, "missed": r.missed,
                     "false_positive": r.false_positive, "truth_area_px": r.truth_area_px,
                     "predicted_area_px": r.predicted_area_px, "image_px": int(predicted.size),
                     "max_prob": round(float(p.max()), 5),
                     "mean_prob_in_mask": round(float(p[predicted > 0].mean()), 5) if predicted.any() else 0.0})
    return rows


def summary(rows: list[dict]) -> dict:
    """Lesion images: mean/SD/median Dice, per class, misses; normal images: how many got a false region."""
    from napari_lesionseg.core.evaluate import MISS_DICE

    out = {}
    for kind in ("all", "benign", "malignant"):
        d = np.array([r["dice"] for r in rows if r["has_lesion"] and kind in ("all", r["cls"])], float)
        if len(d):
            out[kind] = {"n": int(len(d)), "mean_dice": round(float(d.mean()), 4),
                         "sd_dice": round(float(d.std(ddof=1)), 4), "median_dice": round(float(np.median(d)), 4),
                         "misses": int((d < MISS_DICE).sum())}
    normals = [r for r in rows if not r["has_lesion"]]
    out["normal"] = {"n": len(normals), "false_region": int(sum(r["false_positive"] for r in normals))}
    return out


def main(argv=None) -> int:
    ap = cv_parser(__doc__, recipe="models/ultrasound-lesion-single.yaml")
    ap.add_argument("--gate-cv", help="benchmarks/us_gate_cv.py --out (the gate rule and its held-out figures)")
    ap.add_argument("--gate-on-by-default", action="store_true")
    ap.add_argument("--gate-why", default="", help="the held-out figures that decided on_by_default, for the card")
    ap.add_argument("--breast", action="store_true",
                    help="after the final model: measure it (int8) on BrEaST, gate off, into the results")
    args = ap.parse_args(argv)

    from napari_lesionseg.core.training.data import load_sources

    results, save, recipe, work = start(args)
    cases = load_sources(recipe)
    fold_of = busi_folds(recipe.cases_json)
    results.update(recipe=args.recipe, fold_of=fold_of)
    if args.card_into:
        from us_lesion_card import gate_field, write_card

        if "final" not in results or len(results["folds"]) < FOLDS:
            raise SystemExit("no finished cross-validation and final model in --out yet")
        gate_cv = json.loads(Path(args.gate_cv).read_text())
        gate, gate_note = gate_field(gate_cv, args.gate_on_by_default, args.gate_why)
        path = write_card(results, gate_cv, recipe, Path(args.card_into), work, args.threads, gate, gate_note)
        save()
        print("published", path)
        return 0

    for k in range(FOLDS):
        key = f"fold{k}"
        if key in results["folds"] or (args.only_folds is not None and k not in args.only_folds):
            continue
        train_cases = [c for c in cases if fold_of[c.name] != k]
        cap = recipe.max_minutes * len(train_cases) / len(cases) if recipe.max_minutes else None
        card, info = train_fold(args.recipe, train_cases, f"us-cv{k}", work / key, args.threads, max_minutes=cap)
        card = as_int8(card, work / key)
        t0 = time.monotonic()
        rows = measure(card, recipe.images, recipe.masks, {n for n, f in fold_of.items() if f == k}, args.threads)
        info["eval_minutes"] = round((time.monotonic() - t0) / 60, 2)
        results["folds"][key] = {"card": str(card.path), "rows": rows, "summary": summary(rows), **info}
        save()
        print(key, json.dumps(results["folds"][key]["summary"]), flush=True)

    all_rows = [r for f in results["folds"].values() for r in f["rows"]]
    results["cv_summary"] = summary(all_rows)
    save()
    print("cross-validated", json.dumps(results["cv_summary"]), flush=True)

    train_final(args, results, save, cases, recipe, work, max_minutes=recipe.max_minutes)
    if args.breast and "final" in results and "breast" not in results:
        results["breast"] = final_on_breast(results)
        save()
        print("BrEaST", results["breast"]["mean_dice"], "missed", results["breast"]["misses"], flush=True)
    return 0


def final_on_breast(results: dict) -> dict:
    """The final model of a candidate recipe, int8 as it would ship, on the second hospital (gate off): the figure
    its rule compares with the shipped model's, without publishing anything."""
    from us_lesion_card import breast_gate_off

    from napari_lesionseg.core.models.card import ModelCard

    final = Path(results["final"]["card"])
    return breast_gate_off(as_int8(ModelCard.read(final), final.parent))


if __name__ == "__main__":
    raise SystemExit(main())
