"""Ensembles of finished ultrasound cross-validation runs, measured without training: per fold, the fold models of
several runs (recipes, seeds) averaged as `lesionseg ensemble` stores them (int8), scored exactly as
`cv_ultrasound_lesion.py` scores one recipe (same folds, same held-out images, gate off); with --final, the runs'
all-577-image models combined and measured on BrEaST (another hospital) through `lesionseg evaluate`'s core.

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_ultrasound_ensemble.py \\
        --runs /tmp/us12/cv.json:/tmp/us12/work /tmp/us12s1/cv.json:/tmp/us12s1/work --final --out ENS.json

Each --runs entry is RESULTS.json:WORK of a finished `cv_ultrasound_lesion.py` run (fold models in WORK/foldK, the
final one in WORK/final). A fold missing from any run is skipped and said so. Resumable: folds already in --out are
not measured again. With --work the combined final model (int8) is kept in WORK/final, and a later call with
--card-into DIR --gate-cv GATE.json publishes it as `ultrasound-lesion` with its figures (us_lesion_card.write_card,
the writer of the single-network card).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_common import open_results  # noqa: E402
from cv_ultrasound_lesion import FOLDS, busi_folds, measure, summary  # noqa: E402
from us_lesion_card import breast_gate_off, gate_field, write_card  # noqa: E402


def combined(card_paths: list[Path], name: str):
    """(card, network) of the models averaged, int8 as an ensemble is stored."""
    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.models.ensemble import combine

    net, card = combine([ModelCard.read(p) for p in card_paths], name, "int8")
    return card, net


def final_record(runs: list[tuple[dict, Path]], card) -> dict:
    """`results["final"]` of the combined model, as the card writer reads it: the members' schedules."""
    finals = [res["final"] for res, _ in runs]
    return {"card": str(card.path), "members": [f["card"] for f in finals], "epochs": finals[0]["epochs"],
            "kept_epoch": [f["kept_epoch"] for f in finals], "minutes": round(sum(f["minutes"] for f in finals), 2),
            "n_train": finals[0]["n_train"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="RESULTS.json:WORK of finished cross-validation runs")
    ap.add_argument("--final", action="store_true", help="also combine the runs' final models and measure BrEaST")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", help="keep the combined final model (int8) in WORK/final, to publish it later")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recipe", help="recipe naming the BUSI folders (default: the first run's)")
    ap.add_argument("--card-into", help="only publish the kept final ensemble with its figures into this folder")
    ap.add_argument("--gate-cv", help="benchmarks/us_gate_cv.py --out of this ensemble's folds (with --card-into)")
    ap.add_argument("--gate-on-by-default", action="store_true")
    ap.add_argument("--gate-why", default="", help="the held-out figures that decided on_by_default, for the card")
    args = ap.parse_args(argv)

    import torch

    from napari_lesionseg.core.training.config import TrainConfig

    torch.set_num_threads(args.threads)
    runs = [(json.loads(Path(r).read_text()), Path(w)) for r, w in (x.rsplit(":", 1) for x in args.runs)]
    recipe = TrainConfig.from_file(args.recipe or runs[0][0]["recipe"])
    results, save = open_results(args.out)
    results.update(runs=args.runs, recipe=" + ".join(res["recipe"] for res, _ in runs))
    if args.card_into:
        return publish(args, results, save, recipe)
    fold_of = busi_folds(recipe.cases_json)
    for k in range(FOLDS):
        key = f"fold{k}"
        if key in results["folds"]:
            continue
        if any(key not in res["folds"] for res, _ in runs):
            print(f"{key}: not in every run, skipped", flush=True)
            continue
        card, net = combined([Path(res["folds"][key]["card"]) for res, _ in runs], f"us-cv{k}-ensemble")
        rows = measure(card, recipe.images, recipe.masks, {n for n, f in fold_of.items() if f == k}, args.threads,
                       net=net)
        results["folds"][key] = {"rows": rows, "summary": summary(rows)}
        save()
        print(key, json.dumps(results["folds"][key]["summary"]["all"]), flush=True)
    results["cv_summary"] = summary([r for f in results["folds"].values() for r in f["rows"]])
    save()
    print("pooled over the held-out folds", json.dumps(results["cv_summary"]), flush=True)
    if args.final and "breast" not in results:
        from napari_lesionseg.core.inference.engine import Predictor

        # combine() rounds every member to int8 in memory; the runs' own models are left as they are
        card, net = combined([Path(res["final"]["card"]) for res, _ in runs], "ultrasound-ensemble-final")
        if args.work:
            from napari_lesionseg.core.training.publish import publish_model

            card = publish_model(net, card, Path(args.work) / "final")
            results["final"] = final_record(runs, card)
        results["breast"] = breast_gate_off(card, Predictor(card, device="cpu", net=net))
        save()
        print("BrEaST", results["breast"]["mean_dice"], "missed", results["breast"]["misses"], flush=True)
    return 0


def publish(args, results: dict, save, recipe) -> int:
    """--card-into: the kept final ensemble as `ultrasound-lesion`, with the cross-validated figures and gate."""
    if "final" not in results or len(results["folds"]) < FOLDS or not args.gate_cv or not args.work:
        raise SystemExit("needs a finished run with --final --work in --out, and --gate-cv and that --work")
    gate_cv = json.loads(Path(args.gate_cv).read_text())
    gate, gate_note = gate_field(gate_cv, args.gate_on_by_default, args.gate_why)
    path = write_card(results, gate_cv, recipe, Path(args.card_into), Path(args.work), args.threads, gate, gate_note)
    save()
    print("published", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
