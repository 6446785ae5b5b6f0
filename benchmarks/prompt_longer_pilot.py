"""Issue 16 pilot (session 26): the prompt network trained twice as long (50 epochs), against the README's 25.

Inputs, measured before this script runs: per-lesion CSVs of `eval_prompt_modalities.py --cv DIR --prompts line,box
--save CSV` for the reference fold models (S0: the README's CV recipe, 25 epochs, seed 0) and the candidate (L50:
`scripts/train_line_model.py --fold k --folds 2 --epochs 50`). Pairs them lesion by lesion (bootstrap over patients,
`prompt_ensemble_pilot.paired`) and applies the go/no-go written before either fold model trained (`--rule`).

    python benchmarks/prompt_longer_pilot.py --reference S0.csv --candidate L50.csv --rule RULE.txt \\
        --out benchmarks/prompt_longer_pilot_results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompt_ensemble_pilot import PROMPTS, SOURCES, paired, read_rows, write_pilot_results  # noqa: E402

GAIN = {"mri_slices/line": 0.650, "mri_slices/box": 0.701, "cdd_cesm/line": 0.835}
"""Clause 1: any one of these means reached (S0 + 0.015)."""
MAX_LOSS = 0.005
"""Clause 2: no source x prompt mean below S0's by more than this."""


def verdict(table: dict) -> dict:
    c1 = any(table[k]["candidate"] >= v for k, v in GAIN.items())
    c2 = all(v["candidate"] >= v["reference"] - MAX_LOSS for v in table.values())
    clauses = {"1_mri_line_or_box_or_cdd_line_plus_0.015": bool(c1), "2_none_worse_than_0.005": bool(c2)}
    return {"clauses": clauses, "go": all(clauses.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="S0 per-lesion CSV")
    ap.add_argument("--candidate", required=True, help="L50 per-lesion CSV")
    ap.add_argument("--rule", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only-fold", type=int, help="only the lesions of this fold (the other fold's model is missing): "
                                                  "figures are reported, the rule (on both folds) is not judged")
    args = ap.parse_args(argv)
    ref, cand = read_rows(args.reference), read_rows(args.candidate)
    if args.only_fold is not None:
        ref = {k: v for k, v in ref.items() if k in cand}  # the candidate CSV holds that fold's lesions only
    table = {f"{s}/{p}": paired(ref, cand, s, p) for s in SOURCES for p in PROMPTS}
    judged = verdict(table) if args.only_fold is None else {
        "go": None, "why": f"fold {args.only_fold} only: the rule is on both folds, not judged"}
    for k, v in table.items():
        print(f"{k:18s} S0 {v['reference']:.3f}  L50 {v['candidate']:.3f}  diff {v['difference']:+.4f} "
              f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]")
    write_pilot_results(args.out, {"what": __doc__.split("\n\n")[0], "only_fold": args.only_fold,
                                   "cv_candidate_against_reference": table, "verdict": judged}, args.rule)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
