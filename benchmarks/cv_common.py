"""What the cross-validation drivers in benchmarks/ share (cv_histology_nuclei, cv_mammography, cv_ultrasound_lesion):
training one fold with the recipe as it stands, their common command line, and the results file that is also the
point a stopped run resumes from. One copy, so a fix to how a fold trains reaches every model's figures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def train_fold(recipe: str, cases, name: str, out_dir: Path, threads: int, log_every: int = 1, **overrides):
    """The recipe on `cases` only (resumable, published into `out_dir`); returns the card and what the run took.
    `overrides` are TrainConfig fields for this run (e.g. a time cap) and are recorded with it."""
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.loop import train

    cfg = TrainConfig.from_file(recipe, name=name, output_dir=str(out_dir), checkpoint_dir=str(out_dir / "ckpt"),
                                num_threads=threads, **overrides)
    t0 = time.monotonic()
    last = {}

    def show(ev):
        if ev["kind"] == "epoch":
            last.update(ev)
            if ev["epoch"] % log_every == 0:
                print(f"  {name} epoch {ev['epoch']}: loss {ev['loss']:.4f} ({ev['minutes']:.1f} min)", flush=True)
        elif ev["kind"] == "log":
            print(f"  {name}: {ev['message']}", flush=True)

    result = train(cfg, progress=show, cases=cases, resume=True, publish=True)
    if result.card is None:
        raise SystemExit(f"{name}: nothing was published")
    return result.card, {"minutes": round((time.monotonic() - t0) / 60, 2), "epochs": last.get("epoch") or 0,
                         "kept_epoch": result.card.metrics.get("best_epoch"), "n_train": len(cases), **overrides}


def cv_parser(doc: str, recipe: str | None = None, folds: int | None = None) -> argparse.ArgumentParser:
    """The options every driver takes; a driver adds its own after."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--recipe", required=recipe is None, default=recipe)
    ap.add_argument("--out", required=True, help="JSON with every figure (also read to resume)")
    ap.add_argument("--work", required=True, help="folder for the fold models and checkpoints")
    if folds is not None:
        ap.add_argument("--folds", type=int, default=folds)
    ap.add_argument("--only-folds", type=int, nargs="*", help="run these fold numbers only")
    ap.add_argument("--final", action="store_true", help="then train on all data and publish to --work/final")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--card-into", help="only publish the finished final model with its figures into this folder")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="first add the folds (and final model) of these --out files, from runs of other folds side "
                         "by side, to --out")
    return ap


def merge_results(results: dict, others: list[dict], sources: list[str]) -> None:
    """Fold results of runs side by side (each its own --out, one writer per file) into one `results`; a fold
    present twice with different figures is refused rather than silently overwritten."""
    for other, source in zip(others, sources):
        for key, fold in other.get("folds", {}).items():
            if key in results["folds"] and results["folds"][key] != fold:
                raise SystemExit(f"{key} is in --out and in {source} with different results: refusing to merge")
            results["folds"][key] = fold
        if "final" in other:
            if "final" in results and results["final"] != other["final"]:
                raise SystemExit(f"the final model is in --out and in {source} and differs: refusing to merge")
            results["final"] = other["final"]
    results["folds"] = dict(sorted(results["folds"].items()))


def open_results(out: str | Path):
    """(results so far, a function that saves them): the file is read back to resume a stopped run."""
    path = Path(out)
    results = json.loads(path.read_text()) if path.exists() else {"folds": {}}

    def save():
        path.write_text(json.dumps(results, indent=1))

    return results, save


def start(args):
    """As every driver begins: its thread count, the work folder, the results so far (with their saver) and the
    recipe."""
    import torch

    from napari_lesionseg.core.training.config import TrainConfig

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results, save = open_results(args.out)
    if getattr(args, "merge", None):
        merge_results(results, [json.loads(Path(p).read_text()) for p in args.merge], args.merge)
        save()
    return results, save, TrainConfig.from_file(args.recipe), work


def publish_card(card: dict, weights_path, models_dir) -> Path:
    """The final model's weights, then its card, into `models_dir`, each written whole or not at all."""
    import shutil

    from napari_lesionseg.core.io.atomic import atomic_path

    models_dir, name = Path(models_dir), card["name"]
    with atomic_path(models_dir / f"{name}.safetensors") as tmp:
        shutil.copyfile(weights_path, tmp)
    with atomic_path(models_dir / f"{name}.json") as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2) + "\n")
    return models_dir / f"{name}.json"


def train_final(args, results: dict, save, cases, recipe, work: Path, **overrides) -> None:
    """With --final and once: the recipe on every case (the shipped model), recorded in the results."""
    if not args.final or "final" in results:
        return
    card, info = train_fold(args.recipe, cases, recipe.name, work / "final", args.threads, **overrides)
    results["final"] = {"card": str(card.path), **info}
    save()
    print("final", json.dumps(results["final"]), flush=True)
