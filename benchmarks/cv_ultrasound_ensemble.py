"""Ensembles of finished ultrasound cross-validation runs, measured without training: per fold, the fold models of
several runs (recipes, seeds) averaged as `lesionseg ensemble` stores them (int8), scored exactly as
`cv_ultrasound_lesion.py` scores one recipe (same folds, same held-out images, gate off); with --final, the runs'
all-577-image models combined and measured on BrEaST (another hospital) through `lesionseg evaluate`'s core.

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_ultrasound_ensemble.py \\
        --runs /tmp/us12/cv.json:/tmp/us12/work /tmp/us12s1/cv.json:/tmp/us12s1/work --final --out ENS.json

Each --runs entry is RESULTS.json:WORK of a finished `cv_ultrasound_lesion.py` run (fold models in WORK/foldK, the
final one in WORK/final). A fold missing from any run is skipped and said so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_ultrasound_lesion import FOLDS, busi_folds, measure, summary  # noqa: E402
from us_lesion_card import breast_gate_off  # noqa: E402


def combined(card_paths: list[Path], name: str):
    """(card, network) of the models averaged, int8 as an ensemble is stored."""
    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.models.ensemble import combine

    net, card = combine([ModelCard.read(p) for p in card_paths], name, "int8")
    return card, net


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="RESULTS.json:WORK of finished cross-validation runs")
    ap.add_argument("--final", action="store_true", help="also combine the runs' final models and measure BrEaST")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recipe", help="recipe naming the BUSI folders (default: the first run's)")
    args = ap.parse_args(argv)

    import torch

    from napari_lesionseg.core.training.config import TrainConfig

    torch.set_num_threads(args.threads)
    runs = [(json.loads(Path(r).read_text()), Path(w)) for r, w in (x.rsplit(":", 1) for x in args.runs)]
    recipe = TrainConfig.from_file(args.recipe or runs[0][0]["recipe"])
    fold_of = busi_folds(recipe.cases_json)
    results = {"runs": args.runs, "folds": {}}
    for k in range(FOLDS):
        key = f"fold{k}"
        if any(key not in res["folds"] for res, _ in runs):
            print(f"{key}: not in every run, skipped", flush=True)
            continue
        card, net = combined([Path(res["folds"][key]["card"]) for res, _ in runs], f"us-cv{k}-ensemble")
        rows = measure(card, recipe.images, recipe.masks, {n for n, f in fold_of.items() if f == k}, args.threads,
                       net=net)
        results["folds"][key] = {"rows": rows, "summary": summary(rows)}
        print(key, json.dumps(results["folds"][key]["summary"]["all"]), flush=True)
    results["cv_summary"] = summary([r for f in results["folds"].values() for r in f["rows"]])
    print("pooled over the held-out folds", json.dumps(results["cv_summary"]), flush=True)
    if args.final:
        from napari_lesionseg.core.inference.engine import Predictor

        # combine() rounds every member to int8 in memory: nothing is written next to the runs' models
        card, net = combined([Path(res["final"]["card"]) for res, _ in runs], "ultrasound-ensemble-final")
        results["breast"] = breast_gate_off(card, Predictor(card, device="cpu", net=net))
        print("BrEaST", results["breast"]["mean_dice"], "missed", results["breast"]["misses"], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
