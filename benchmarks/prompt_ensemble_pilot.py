"""Issue 16 pilot (session 23): two seeds of the prompt network averaged, against the shipped recipe alone.

Inputs, all measured before this script runs:
- per-lesion CSVs of `eval_prompt_modalities.py --cv DIR --prompts line,box --save CSV` for the reference fold
  models (S0: the README's CV recipe, seed 0), the seed-1 fold models (S1) and the candidate (E: S0_k + S1_k per
  fold, `scripts/combine_prompt_networks.py`);
- the 3D figures of `prompt_mri_pilot.py` for the shipped network and the shipped network + R1 (seed 1, all data);
- the 2D line speed of `bench_line_to_mask.py` for both, measured in one run.
It pairs E with S0 lesion by lesion (bootstrap over patients for the spread) and applies the go/no-go written before
any fold model trained (`--rule`, quoted into the results).

    python benchmarks/prompt_ensemble_pilot.py --reference S0.csv --seed1 S1.csv --candidate E.csv \\
        --mri3d mri3d.json --speed SPEED.json --rule RULE.txt --out benchmarks/prompt_ensemble_pilot_results.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

SOURCES = ("busi", "mri_slices", "cdd_cesm")
PROMPTS = ("line", "box")


def read_rows(path: str | Path) -> dict[tuple[str, str, str, int], tuple[str, float]]:
    """(source, prompt, image name, k-th lesion of that image) → (patient, Dice) from an `eval_prompt_modalities
    --save` CSV (an image with several lesions has one row each, always in the same order)."""
    seen: dict[tuple[str, str, str], int] = {}
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["source"], r["prompt"], r["name"])
            seen[key] = seen.get(key, -1) + 1
            out[key + (seen[key],)] = (r["patient"], float(r["dice"]))
    return out


def write_pilot_results(out: str | Path, results: dict, rule: str | Path | None) -> None:
    """A pilot's results JSON with the text of its rule (written before it ran); prints the verdict."""
    if rule:
        results["rule"] = Path(rule).read_text()
    Path(out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results.get("verdict")))


def paired(reference: dict, candidate: dict, source: str, prompt: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean Dice of both on the same lesions, their difference and its 95 % bootstrap interval over patients."""
    keys = sorted(k for k in reference if k[0] == source and k[1] == prompt)
    missing = [k for k in keys if k not in candidate]
    if not keys or missing:
        raise ValueError(f"{source}/{prompt}: {len(keys)} reference lesions, {len(missing)} missing in the candidate")
    ref = np.array([reference[k][1] for k in keys])
    cand = np.array([candidate[k][1] for k in keys])
    patients = np.array([reference[k][0] for k in keys])
    groups = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        diffs.append(float((cand[idx] - ref[idx]).mean()))
    return {"lesions": len(keys), "patients": len(groups), "reference": round(float(ref.mean()), 4),
            "candidate": round(float(cand.mean()), 4), "difference": round(float((cand - ref).mean()), 4),
            "ci95": [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)],
            "better": int((cand > ref + 1e-9).sum()), "worse": int((cand < ref - 1e-9).sum())}


def verdict(table: dict, mri3d: dict, speed: dict | None) -> dict:
    """The rule of RULE.txt (session 23): all four clauses must hold."""
    c1 = table["mri_slices/line"]["difference"] >= 0.010
    c2 = all(v["difference"] >= -0.005 for v in table.values())
    vols = ("breast1", "brain1")
    ship, cand = mri3d["shipped"]["line_3d"], mri3d["candidate"]["line_3d"]
    c3 = all(cand[v]["mean_over_prompts"] >= ship[v]["mean_over_prompts"] - 0.005 for v in vols) and \
        cand["duke_153"]["inside_box"] >= 1.0
    c4 = None if speed is None else speed["candidate_2d_line_s"] <= 0.20
    clauses = {"1_ispy1_line_plus_0.010": bool(c1), "2_none_worse_than_0.005": bool(c2),
               "3_3d_breast1_brain1_duke": bool(c3), "4_speed_2d_line_le_0.20s": c4}
    return {"clauses": clauses, "go": all(v is True for v in clauses.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="S0 per-lesion CSV")
    ap.add_argument("--seed1", help="S1 per-lesion CSV (reported beside, not judged)")
    ap.add_argument("--candidate", required=True, help="E per-lesion CSV")
    ap.add_argument("--mri3d", required=True, help="prompt_mri_pilot.py output with networks shipped and E")
    ap.add_argument("--candidate-name", default="E", help="E's name in --mri3d")
    ap.add_argument("--speed", help="JSON {reference_2d_line_s, candidate_2d_line_s, how}")
    ap.add_argument("--rule", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ref, cand = read_rows(args.reference), read_rows(args.candidate)
    table = {f"{s}/{p}": paired(ref, cand, s, p) for s in SOURCES for p in PROMPTS}
    seed1 = None
    if args.seed1:
        s1 = read_rows(args.seed1)
        seed1 = {f"{s}/{p}": paired(ref, s1, s, p) for s in SOURCES for p in PROMPTS}
    nets = json.loads(Path(args.mri3d).read_text())["networks"]
    mri3d = {"shipped": nets["shipped"], "candidate": nets[args.candidate_name]}
    speed = json.loads(Path(args.speed).read_text()) if args.speed else None
    out = {"what": __doc__.split("\n\n")[0], "rule": Path(args.rule).read_text(),
           "cv_candidate_against_reference": table, "cv_seed1_against_reference": seed1,
           "mri3d": {k: {"line_3d": v["line_3d"], "box_3d": v["box_3d"]} for k, v in mri3d.items()},
           "speed": speed, "verdict": verdict(table, mri3d, speed)}
    for k, v in table.items():
        print(f"{k:18s} S0 {v['reference']:.3f}  E {v['candidate']:.3f}  diff {v['difference']:+.4f} "
              f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" + (f"   S1 {seed1[k]['candidate']:.3f}" if seed1 else ""))
    print("verdict", json.dumps(out["verdict"]))
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
