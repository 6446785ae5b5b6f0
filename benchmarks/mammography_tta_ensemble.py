"""Test-time flips and a two-seed ensemble for `mammography-mass`, measured on its own cross-validation fold models
under a rule written before they trained (session 21; the rule is quoted in the results).

R (reference): the seed-0 recipe's fold models as `cv_mammography.py` measured them (no test-time flips).
A: the same fold models with test-time vertical flips (`tta: [vflip]`): paired with R, only inference differs.
B: per fold, the seed-0 and seed-1 fold models combined by `core.models.ensemble.combine` (int8, as it would be
   stored), with vflip.
Every candidate goes through `cv_mammography.measure` (Predictor.predict_image) on each fold's held-out images and
`cv_mammography.pool` (each fold's operating threshold chosen on the other folds' held-out mini-MIAS rows).

    python benchmarks/cv_mammography.py --recipe models/mammography-mass.yaml --out R.json --work WORK0
    python benchmarks/cv_mammography.py --recipe models/mammography-mass-seed1.yaml --out S1.json --work WORK1
    python benchmarks/mammography_tta_ensemble.py --reference R.json:WORK0 --seed1 S1.json:WORK1 --rule RULE.txt \\
        --out benchmarks/mammography_tta_ensemble_results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_mammography import extra_cdd_cases, measure, pool  # noqa: E402

MORE_MASSES = 2
"""Condition 1: masses found beyond the reference's (of 33), and B's margin over A."""
MAX_FP_PER_IMAGE = 0.5
MORE_MASS_FREE_FP = 5
CDD_FEWER_REGIONS = 1
CDD_DICE_DROP = 0.03


def run_of(spec: str) -> tuple[dict, Path]:
    """RESULTS.json:WORK of one `cv_mammography.py` run: its results and its folder of fold models."""
    results, _, work = spec.rpartition(":")
    if not results:
        raise SystemExit(f"{spec!r}: expected RESULTS.json:WORK")
    return json.loads(Path(results).read_text()), Path(work)


def fold_card(work: Path, key: str, tta: list[str]):
    from napari_lesionseg.core.models.card import ModelCard

    card = ModelCard.read(work / key / f"mammo-cv{key.removeprefix('fold')}.json")
    card.tta = list(tta)
    return card


def remeasured(reference: dict, cases: dict, card_and_net) -> dict:
    """The reference's folds (same held-out images) measured again with `card_and_net(key)`, then pooled."""
    out = {"folds": {}}
    for key, fold in reference["folds"].items():
        card, net = card_and_net(key)
        t0 = time.monotonic()
        rows = measure(card, [cases[n] for n in fold["held_out"]], net=net)
        out["folds"][key] = {"held_out": fold["held_out"], "rows": rows,
                             "eval_minutes": round((time.monotonic() - t0) / 60, 2)}
        print(key, "measured", flush=True)
    pool(out)
    return out


def figures(results: dict) -> dict:
    """What the rule compares: mini-MIAS masses found and false regions at the nested thresholds, CDD-CESM digital."""
    m, d = results["cv_pooled"]["mias"], results["cv_pooled"].get("cdd_digital", {})
    return {"mias_found": round(m["sensitivity_at_threshold"] * m["n_mass"]), "mias_n_mass": m["n_mass"],
            "mias_sensitivity": m["sensitivity_at_threshold"], "fp_per_image": m["fp_per_image_at_threshold"],
            "mass_free_with_false_region": round(m["false_region_rate_mass_free"] * m["n_mass_free"]),
            "n_mass_free": m["n_mass_free"], "mias_sensitivity_at_0.5_fp": m["sensitivity_at_0.5_fp"],
            "mias_mass_dice": m.get("mean_dice_mass"),
            "cdd_found": round(d.get("sensitivity_at_threshold", 0) * d.get("n_mass", 0)),
            "cdd_n_mass": d.get("n_mass", 0), "cdd_mass_dice": d.get("mean_dice_mass"),
            "threshold_all_folds": results["threshold"],
            "fold_thresholds": [f["threshold"] for f in results["folds"].values()]}


def passes(c: dict, r: dict) -> dict:
    """The rule's three conditions for candidate figures `c` against the reference's `r`."""
    return {
        "1_masses_found_at_least_2_more_fp_le_0.5": [c["mias_found"], r["mias_found"], c["fp_per_image"],
                                                     c["mias_found"] >= r["mias_found"] + MORE_MASSES
                                                     and c["fp_per_image"] <= MAX_FP_PER_IMAGE],
        "2_mass_free_false_regions_at_most_5_more": [
            c["mass_free_with_false_region"], r["mass_free_with_false_region"],
            c["mass_free_with_false_region"] <= r["mass_free_with_false_region"] + MORE_MASS_FREE_FP],
        "3_cdd_regions_ge_minus_1_dice_ge_minus_0.03": [
            [c["cdd_found"], c["cdd_mass_dice"]], [r["cdd_found"], r["cdd_mass_dice"]],
            c["cdd_found"] >= r["cdd_found"] - CDD_FEWER_REGIONS
            and (c["cdd_mass_dice"] or 0) >= (r["cdd_mass_dice"] or 0) - CDD_DICE_DROP],
    }


def verdict(r: dict, a: dict, b: dict | None) -> dict:
    out = {"A": passes(a, r)}
    ok = {"A": all(v[-1] for v in out["A"].values())}
    if b is not None:
        out["B"] = passes(b, r)
        ok["B"] = all(v[-1] for v in out["B"].values())
    if ok.get("B") and (not ok["A"] or b["mias_found"] >= a["mias_found"] + MORE_MASSES):
        out["ship"] = "B"
    else:
        out["ship"] = "A" if ok["A"] else None
    return out


def dumps(res: dict) -> str:
    """The figures indented, each fold's per-image rows on one line (the file stays small and diffable)."""
    rows = res.pop("rows")
    text = json.dumps(res, indent=1)[:-2]
    parts = [f'  "{cand}": {{' + ", ".join(f'"{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in folds.items())
             + "}" for cand, folds in rows.items()]
    res["rows"] = rows
    return text + ',\n "rows": {\n' + ",\n".join(parts) + "\n }\n}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="RESULTS.json:WORK of the seed-0 recipe's CV")
    ap.add_argument("--seed1", help="RESULTS.json:WORK of the seed-1 recipe's CV (candidate B)")
    ap.add_argument("--rule", help="the rule as written before training (quoted in the results)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from napari_lesionseg.core.models.ensemble import combine
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_sources

    ref, work0 = run_of(args.reference)
    recipe = TrainConfig.from_file(str(REPO / ref["recipe"]))
    cases = {c.name: c for c in load_sources(recipe) + extra_cdd_cases()}
    ref = copy.deepcopy(ref)
    pool(ref)
    res = {"rule": Path(args.rule).read_text() if args.rule else None, "reference": figures(ref)}
    a = remeasured(ref, cases, lambda key: (fold_card(work0, key, ["vflip"]), None))
    res["A_vflip"] = figures(a)
    b = None
    if args.seed1:
        s1, work1 = run_of(args.seed1)
        if s1["split"] != ref["split"]:
            raise SystemExit("the seed-1 run has other folds than the reference")
        s1 = copy.deepcopy(s1)
        pool(s1)
        res["seed1_alone"] = figures(s1)

        def ensemble(key):
            net, card = combine([fold_card(work0, key, ["vflip"]), fold_card(work1, key, ["vflip"])],
                                f"mammo-ens-{key}")
            return card, net

        b = remeasured(ref, cases, ensemble)
        res["B_ensemble_vflip"] = figures(b)
    res["verdict"] = verdict(res["reference"], res["A_vflip"], res.get("B_ensemble_vflip"))
    res["rows"] = {"reference": {k: f["rows"] for k, f in ref["folds"].items()},
                   "A_vflip": {k: f["rows"] for k, f in a["folds"].items()}}
    if b is not None:
        res["rows"]["B_ensemble_vflip"] = {k: f["rows"] for k, f in b["folds"].items()}
    Path(args.out).write_text(dumps(res) + "\n")
    for key in ("reference", "A_vflip", "seed1_alone", "B_ensemble_vflip"):
        if key in res:
            print(key, json.dumps(res[key]))
    print("verdict:", json.dumps(res["verdict"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
