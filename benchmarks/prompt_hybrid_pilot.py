"""The line's mask from the prompt network and the classical method together (issue 16 pilot, session 27).

On the ISPY1 MRI slices the classical line (random walker × ellipse band) and the prompt network score alike against
the threshold references (README: 0.643 / 0.637). If their errors differ, a blend of their frame probabilities,
p = (1 - w) p_network + w p_classical, could beat both. For every lesion both probabilities are computed once, on
the frame `line_to_mask` uses, and the mask is made as `line_to_mask` makes it for each w of a grid
(`lines._mask_from_frame_probability`: threshold 0.5, the part the line crosses, holes filled).

Held out: with --cv DIR each lesion goes through DIR/f{k}, the fold model trained without its patients (the
README's split, `prompt_lesions.assign_folds`); w is chosen per source on the OTHER fold's lesions and applied to
this fold's (nested), then paired lesion by lesion with w = 0 (`prompt_ensemble_pilot.paired`). --slices adds the
breast1 and brain1 slices (clean outlines no network trained on) with the installed network. The rule written
before any figure (--rule) goes into --out with the verdict.

    python benchmarks/prompt_hybrid_pilot.py --cv /work/run23/S0 --slices --rule RULE.txt --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""w = 0 is the network alone (today's line), w = 1 the classical method alone."""
MODALITY_SOURCE = {"mri": "mri_slices", "mammography": "cdd_cesm"}


def blend_dice(lesion, weights=WEIGHTS) -> tuple[list[float], float]:
    """Dice of the line's mask for every w, and the seconds both probabilities took, for one lesion."""
    from napari_lesionseg.core.annotations.frame import LineFrame
    from napari_lesionseg.core.annotations.lines import (Line, _frame_probability, _mask_from_frame_probability,
                                                         check_line)
    from napari_lesionseg.core.errors import LesionSegError
    from napari_lesionseg.core.metrics import dice

    line = check_line(Line(np.asarray(lesion.p0, float), np.asarray(lesion.p1, float)), lesion.image.shape)
    frame = LineFrame.from_line(line.p0, line.p1, np.ones(2))
    t = time.perf_counter()
    try:
        p_net = _frame_probability(lesion.image, frame, None, "learned", "The line")
        p_cls = _frame_probability(lesion.image, frame, None, "classical", "The line")
    except LesionSegError:
        return [0.0] * len(weights), time.perf_counter() - t
    seconds = time.perf_counter() - t
    out = []
    for w in weights:
        m = _mask_from_frame_probability((1 - w) * p_net + w * p_cls, frame, lesion.image.shape, line)
        if m.sum() < 3:  # as `lines._mask_2d`: a speck falls back to the classical mask
            m = _mask_from_frame_probability(p_cls, frame, lesion.image.shape, line)
        out.append(float(dice(m, lesion.mask)))
    return out, seconds


def held_out_rows(cv: str, sources: list[str]) -> list[dict]:
    """One row per lesion: source, patient, fold, Dice per w, seconds; each through the fold model without it."""
    import prompt_lesions as pl

    lesions = pl.load(sources)
    folds = pl.assign_folds(lesions)
    rows = []
    for les in lesions:
        k = folds[les.patient]
        os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(Path(cv) / f"f{k}")
        d, s = blend_dice(les)
        rows.append({"source": les.source, "patient": les.patient, "name": les.name, "fold": k, "dice": d,
                     "seconds": s})
    os.environ.pop("LESIONSEG_LINE_MODEL_DIR", None)
    return rows


def best_weight(rows: list[dict]) -> int:
    """Index of the w with the highest mean Dice over rows (ties to the smaller w, i.e. towards the network)."""
    means = np.mean([r["dice"] for r in rows], axis=0)
    return int(np.flatnonzero(means >= means.max() - 1e-12)[0])


def nested(rows: list[dict], source: str) -> dict:
    """w chosen on the other fold's lesions of `source`, applied to this fold's; paired with w = 0."""
    from prompt_ensemble_pilot import paired

    sel = [r for r in rows if r["source"] == source]
    chosen, ref, cand = {}, {}, {}
    seen: dict[str, int] = {}
    for k in (0, 1):
        chosen[k] = WEIGHTS[best_weight([r for r in sel if r["fold"] != k])]
    for r in sel:
        seen[r["name"]] = seen.get(r["name"], -1) + 1
        key = (source, "line", r["name"], seen[r["name"]])
        ref[key] = (r["patient"], r["dice"][0])
        cand[key] = (r["patient"], r["dice"][WEIGHTS.index(chosen[r["fold"]])])
    means = np.mean([r["dice"] for r in sel], axis=0)
    return {"w_chosen_per_fold": {f"f{k}": w for k, w in chosen.items()},
            "w_on_all_lesions": WEIGHTS[best_weight(sel)],
            "mean_per_w (not held out for the choice)": {str(w): round(float(m), 4) for w, m in zip(WEIGHTS, means)},
            "nested_vs_network": paired(ref, cand, source, "line")}


def slice_rows() -> dict[str, list[list[float]]]:
    """breast1 and brain1 slices: Dice per w with the installed network (it never saw these volumes)."""
    from eval_prompt_finetune import brain1, breast1

    return {name: [blend_dice(les)[0] for les in load()[0]] for name, load in (("breast1", breast1),
                                                                                 ("brain1", brain1))}


def verdict(results: dict, slices: dict | None) -> dict:
    """The rule in --rule, clauses (1)-(3) per modality; (4), the 3D check, is run after a GO."""
    out = {}
    for modality, source in MODALITY_SOURCE.items():
        if source not in results:
            continue
        n = results[source]["nested_vs_network"]
        c1 = n["difference"] >= 0.015 and n["ci95"][0] > 0
        clauses = {"1_nested_gain": c1}
        if modality == "mri" and slices is not None:
            w = WEIGHTS.index(results[source]["w_on_all_lesions"])
            clauses["2_slices_not_worse"] = all(np.mean([d[w] for d in s]) >= np.mean([d[0] for d in s]) - 0.01
                                                for s in slices.values())
        clauses["3_time"] = results[source]["median_seconds"] <= 0.2
        out[modality] = {"clauses": clauses, "go": all(clauses.values())}
    return out


def main() -> None:
    from prompt_ensemble_pilot import write_pilot_results

    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", required=True, help="folder with f0/ f1/ prompt fold models")
    ap.add_argument("--sources", default="mri_slices,cdd_cesm")
    ap.add_argument("--slices", action="store_true", help="also the breast1 / brain1 slices (installed network)")
    ap.add_argument("--rule", help="text of the rule, written before the pilot ran")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = held_out_rows(args.cv, args.sources.split(","))
    results = {}
    for source in args.sources.split(","):
        results[source] = nested(rows, source)
        results[source]["median_seconds"] = round(float(np.median([r["seconds"] for r in rows
                                                                   if r["source"] == source])), 3)
        print(source, json.dumps(results[source]), flush=True)
    slices = slice_rows() if args.slices else None
    summary = {"weights": list(WEIGHTS), "cv": args.cv, "held_out": results}
    if slices is not None:
        summary["slices_mean_per_w"] = {k: [round(float(np.mean([d[i] for d in v])), 4) for i in range(len(WEIGHTS))]
                                        for k, v in slices.items()}
        print("slices", json.dumps(summary["slices_mean_per_w"]))
    summary["verdict"] = verdict(results, slices)
    write_pilot_results(args.out, summary, args.rule)


if __name__ == "__main__":
    main()
