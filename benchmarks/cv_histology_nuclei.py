"""Cross-validation of a multi-source nuclei recipe over MoNuSeg tiles, with the recipe's FIXED schedule.

Each fold holds out 2 breast and 4 other-organ tiles, trains on the rest exactly as the recipe says (no validation
split, no early stopping: nothing is chosen on the held-out tiles), and measures the held-out tiles through
`lesionseg evaluate`'s path (`core.evaluate.evaluate_folder`). The shipped model is measured on the same tiles
(it was trained and validated on all 6 breast tiles, so only its other-organ figure is a fair comparison).
Then, with --final, the recipe trains once on all tiles and is published to --final-dir.

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_histology_nuclei.py \\
        --recipe models/histology-nuclei-all-organs.yaml --out /tmp/cv.json --work /tmp/cv --final

Resumable: a fold whose result is in --out is not trained again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package (a snapshot's, when run there)

BREAST = "breast"
OTHER = "other_organs"


def fold_tiles(names: list[str], n_folds: int) -> list[list[str]]:
    """Interleaved over sorted names, so sites (the second field of a TCGA name) spread over the folds."""
    names = sorted(names)
    return [names[k::n_folds] for k in range(n_folds)]


def source_kind(src: dict) -> str:
    return BREAST if "breast" in src["images"] else OTHER


def measure(card, sources: list[dict], held_out: set[str], threads: int = 1) -> list[dict]:
    """Per-tile Dice of `card` on the held-out tiles of every source, as `lesionseg evaluate` measures them."""
    import torch

    from napari_lesionseg.core.evaluate import evaluate_folder
    from napari_lesionseg.core.inference.engine import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor(card, device="cpu")
    rows = []
    for src in sources:
        names = {n for n in held_out}
        try:
            ev = evaluate_folder(card, src["images"], src["masks"], predictor=predictor, only=lambda n: n in names)
        except Exception as e:  # noqa: BLE001 - a source with no held-out tile in this fold
            if "kind asked for" in str(e):
                continue
            raise
        rows += [{"tile": c.name, "kind": source_kind(src), "dice": c.dice, "error": c.error} for c in ev.cases]
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for kind in (BREAST, OTHER, "all"):
        d = np.array([r["dice"] for r in rows if (kind == "all" or r["kind"] == kind) and r["dice"] is not None])
        if len(d):
            out[kind] = {"n_tiles": int(len(d)), "mean_dice": round(float(d.mean()), 4),
                         "sd_dice": round(float(d.std(ddof=1)), 4) if len(d) > 1 else 0.0,
                         "min_dice": round(float(d.min()), 4), "max_dice": round(float(d.max()), 4)}
    return out


def train_fold(recipe: str, cases, name: str, out_dir: Path, threads: int):
    """The recipe as it stands, on `cases` only; returns the published card and the training history."""
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.loop import train

    cfg = TrainConfig.from_file(recipe, name=name, output_dir=str(out_dir), checkpoint_dir=str(out_dir / "ckpt"),
                                num_threads=threads)
    t0 = time.monotonic()
    last = {}

    def show(ev):
        if ev["kind"] == "epoch" and ev["epoch"] % 10 == 0:
            print(f"  {name} epoch {ev['epoch']}: loss {ev['loss']:.4f} ({ev['minutes']:.1f} min)", flush=True)
        if ev["kind"] == "epoch":
            last.update(ev)
        elif ev["kind"] == "log":
            print(f"  {name}: {ev['message']}", flush=True)

    result = train(cfg, progress=show, cases=cases, resume=True, publish=True)
    if result.card is None:
        raise SystemExit(f"{name}: nothing was published")
    return result.card, {"minutes": round((time.monotonic() - t0) / 60, 2), "epochs": last.get("epoch"),
                         "best_epoch": result.card.metrics.get("best_epoch"), "patches": cfg.epochs *
                         (cfg.samples_per_epoch or 0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out", required=True, help="JSON with every figure (also read to resume)")
    ap.add_argument("--work", required=True, help="folder for the fold models and checkpoints")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--only-folds", type=int, nargs="*", help="run these fold numbers (1-based) only")
    ap.add_argument("--baseline", default="models/histology-nuclei.json", help="the shipped model's card")
    ap.add_argument("--final", action="store_true", help="then train on all tiles and publish to --work/final")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources

    torch.set_num_threads(args.threads)
    out_path, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_path.read_text()) if out_path.exists() else {"folds": {}}
    save = lambda: out_path.write_text(json.dumps(results, indent=1))  # noqa: E731
    recipe = TrainConfig.from_file(args.recipe)
    sources = recipe.folder_pairs()
    cases = load_sources(recipe)
    kind_of = {}
    for src in sources:
        from napari_lesionseg.core.training.data import load_folder

        kind_of.update({c.name: source_kind(src) for c in load_folder(src["images"], src["masks"])})
    splits = list(zip(fold_tiles([n for n, k in kind_of.items() if k == BREAST], args.folds),
                      fold_tiles([n for n, k in kind_of.items() if k == OTHER], args.folds)))
    results["recipe"] = args.recipe
    results["split"] = {f"fold{k + 1}": b + o for k, (b, o) in enumerate(splits)}

    if "baseline" not in results and Path(args.baseline).exists():
        t0 = time.monotonic()
        rows = measure(ModelCard.read(args.baseline), sources, set(kind_of), args.threads)
        results["baseline"] = {"card": args.baseline, "tiles": rows, "summary": summary(rows),
                               "minutes": round((time.monotonic() - t0) / 60, 2)}
        save()
        print("baseline", json.dumps(results["baseline"]["summary"]), flush=True)

    for k, (b, o) in enumerate(splits, 1):
        key = f"fold{k}"
        if key in results["folds"] or (args.only_folds and k not in args.only_folds):
            continue
        held = set(b + o)
        card, info = train_fold(args.recipe, [c for c in cases if c.name not in held], f"nuclei-cv{k}",
                                work / key, args.threads)
        t0 = time.monotonic()
        rows = measure(card, sources, held, args.threads)
        info["eval_minutes"] = round((time.monotonic() - t0) / 60, 2)
        results["folds"][key] = {"held_out": sorted(held), "tiles": rows, "summary": summary(rows), **info}
        save()
        print(key, json.dumps(results["folds"][key]["summary"]), flush=True)

    all_rows = [r for f in results["folds"].values() for r in f["tiles"]]
    results["cv_summary"] = summary(all_rows)
    held_names = {r["tile"] for r in all_rows}
    if "baseline" in results:
        results["baseline_same_tiles"] = summary([r for r in results["baseline"]["tiles"] if r["tile"] in held_names])
    save()
    print("cross-validated", json.dumps(results["cv_summary"]), flush=True)

    if args.final and "final" not in results:
        card, info = train_fold(args.recipe, cases, recipe.name, work / "final", args.threads)
        results["final"] = {"card": str(card.path), **info}
        save()
        print("final", json.dumps(results["final"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
