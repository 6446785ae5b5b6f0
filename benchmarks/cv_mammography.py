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

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package (a snapshot's, when run there)
sys.path.insert(0, str(REPO / "scripts"))

CDD = REPO.parent / "shared" / "data" / "mammography" / "cdd_cesm"
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)
FP_RATES = (0.25, 0.5, 1.0)


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


def measure(card, cases, threads: int = 1) -> list[dict]:
    """Per image: Dice at the card's threshold, and lesions hit / false regions at every threshold (FROC)."""
    import torch
    from make_cdd_masks import drop_specks

    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.metrics import detection_counts, dice

    torch.set_num_threads(threads)
    pred = Predictor(card, device="cpu")
    rows = []
    for c in cases:
        p = pred.predict_image(c.image)
        truth = c.mask > 0
        lesions = drop_specks(truth)  # specks of a drawn outline are not lesions
        hits, fps, n_les = detection_counts(p, lesions, THRESHOLDS)
        seg = p >= card.threshold
        rows.append({"name": c.name, "source": source_of(c), "n_mass": int(n_les), "hits": hits.tolist(),
                     "fps": fps.tolist(), "dice": dice(seg, truth) if truth.any() else None,
                     "false_region": bool(seg.any()) if not truth.any() else None})
    return rows


def summary(rows: list[dict], threshold: float = 0.5) -> dict:
    """Per-mass sensitivity at 0.25/0.5/1 false regions per image (FROC points: the best threshold within each
    budget), sensitivity and false regions per image at the card's threshold, mass Dice, false-region rate."""
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
    i = int(np.argmin(np.abs(THRESHOLDS - threshold)))
    out["sensitivity_at_threshold"] = round(float(sens[i]), 4)
    out["fp_per_image_at_threshold"] = round(float(fps[i]), 4)
    d = [r["dice"] for r in rows if r["dice"] is not None]
    if d:
        out["mean_dice_mass"] = round(float(np.mean(d)), 4)
        out["n_mass_images"] = len(d)
    free = [r["false_region"] for r in rows if r["false_region"] is not None]
    if free:
        out["false_region_rate_mass_free"] = round(float(np.mean(free)), 4)
        out["n_mass_free"] = len(free)
    return out


def by_source(rows: list[dict]) -> dict:
    return {s: summary([r for r in rows if r["source"] == s]) for s in sorted({r["source"] for r in rows})}


def spread(results: dict, source: str, key: str) -> dict:
    """Mean ± SD over folds of one figure (folds without that source left out)."""
    v = [f["summary"][source][key] for f in results["folds"].values()
         if key in f["summary"].get(source, {})]
    if not v:
        return {}
    return {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else 0.0,
            "per_fold": v}


def train_fold(recipe: str, cases, name: str, out_dir: Path, threads: int):
    """The recipe as it stands, on `cases` only; returns the published card and the time it took."""
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.loop import train

    cfg = TrainConfig.from_file(recipe, name=name, output_dir=str(out_dir), checkpoint_dir=str(out_dir / "ckpt"),
                                num_threads=threads)
    t0 = time.monotonic()

    def show(ev):
        if ev["kind"] == "epoch":
            print(f"  {name} epoch {ev['epoch']}: loss {ev['loss']:.4f} ({ev['minutes']:.1f} min)", flush=True)
        elif ev["kind"] == "log":
            print(f"  {name}: {ev['message']}", flush=True)

    result = train(cfg, progress=show, cases=cases, resume=True, publish=True)
    if result.card is None:
        raise SystemExit(f"{name}: nothing was published")
    return result.card, {"minutes": round((time.monotonic() - t0) / 60, 2), "epochs": len(result.history),
                         "n_train": len(cases)}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out", required=True, help="JSON with every figure (also read to resume)")
    ap.add_argument("--work", required=True, help="folder for the fold models and checkpoints")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--only-folds", type=int, nargs="*", help="run these fold numbers (1-based) only")
    ap.add_argument("--baseline", default=None, help="the old model's card, measured on CDD-CESM only")
    ap.add_argument("--final", action="store_true", help="then train on all data and publish to --work/final")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--card-into", help="publish the finished final model with its figures into this folder")
    args = ap.parse_args(argv)

    import torch

    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources

    torch.set_num_threads(args.threads)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {"folds": {}}
    save = lambda: out_path.write_text(json.dumps(results, indent=1))  # noqa: E731
    recipe = TrainConfig.from_file(args.recipe)
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

    if args.baseline and "baseline_cdd" not in results:
        rows = measure(ModelCard.read(args.baseline), [c for c in cases + extra if c.group.startswith("cdd_")],
                       args.threads)
        results["baseline_cdd"] = {"card": args.baseline, "rows": rows, "summary": by_source(rows)}
        save()
        print("baseline on CDD-CESM", json.dumps(results["baseline_cdd"]["summary"]), flush=True)

    run_folds(args, recipe, cases, extra, fold_of, results, save)
    all_rows = [r for f in results["folds"].values() for r in f["rows"]]
    results["cv_pooled"] = by_source(all_rows)
    results["cv_spread"] = {s: {k: spread(results, s, k) for k in results["cv_pooled"][s]
                                if not k.startswith("n_")} for s in results["cv_pooled"]}
    save()
    print("pooled over held-out folds", json.dumps(results["cv_pooled"]), flush=True)

    if args.final and "final" not in results and len(results["folds"]) == args.folds:
        card, info = train_fold(args.recipe, cases, recipe.name, Path(args.work) / "final", args.threads)
        results["final"] = {"card": str(card.path), **info}
        save()
        print("final", json.dumps(results["final"]), flush=True)
    if args.card_into and "final" in results:
        from cv_mammography_card import write_card

        print("published", write_card(results, args.recipe, Path(args.card_into)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
