"""Variants of finished mammography cross-validation runs that need no training: the fold models of several recipes
averaged (an ensemble of the same fold's models, int8 as `lesionseg ensemble` stores it) and/or test-time flips,
scored exactly as `cv_mammography.py` scores a recipe (same folds, same held-out images, each fold's threshold
chosen on the other folds).

    cd <repo> && OMP_NUM_THREADS=1 nice -n 5 python benchmarks/cv_mammography_variants.py \\
        --runs /tmp/cv_mg.json:/tmp/cv_mg /tmp/cv_hp.json:/tmp/cv_hp --tta vflip --out /tmp/cv_ens_vflip.json

Each --runs entry is RESULTS.json:WORK of a finished `cv_mammography.py` run (its fold models in WORK/foldK).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_mammography import by_source, extra_cdd_cases, measure, pool  # noqa: E402


def fold_model(cards, key: str, tta: list[str]):
    """(card, net or None) of one fold: the one fold model, or the fold models combined; `tta` set on the card."""
    from napari_lesionseg.core.models.ensemble import combine

    net = None
    if len(cards) == 1:
        card = copy.deepcopy(cards[0])
    else:
        net, card = combine(cards, f"mammo-cv{key[4:]}-ensemble", "int8")
    card.tta = list(tta)
    return card, net


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="RESULTS.json:WORK of finished cross-validation runs")
    ap.add_argument("--tta", nargs="*", default=[], choices=["vflip"], help="test-time flips (no hflip: fit breast)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources

    torch.set_num_threads(args.threads)
    runs = [(json.loads(Path(r).read_text()), Path(w)) for r, w in (x.rsplit(":", 1) for x in args.runs)]
    first = runs[0][0]
    for res, _ in runs[1:]:
        if any(res["folds"][k]["held_out"] != f["held_out"] for k, f in first["folds"].items()):
            raise SystemExit("the runs' folds differ: they are not the same cross-validation")
    by_name = {c.name: c for c in load_sources(TrainConfig.from_file(first["recipe"])) + extra_cdd_cases()}
    results = {"folds": {}, "runs": args.runs, "tta": args.tta, "recipe": first["recipe"]}
    for key, fold in first["folds"].items():
        cards = [ModelCard.read(work / key / f"mammo-cv{key[4:]}.json") for _, work in runs]
        card, net = fold_model(cards, key, args.tta)
        rows = measure(card, [by_name[n] for n in fold["held_out"]], args.threads, net=net)
        results["folds"][key] = {"held_out": fold["held_out"], "rows": rows, "summary": by_source(rows)}
        print(key, json.dumps(results["folds"][key]["summary"].get("mias")), flush=True)
    pool(results)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("pooled over held-out folds", json.dumps(results["cv_pooled"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
