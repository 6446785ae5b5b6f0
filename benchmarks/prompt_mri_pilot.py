"""Prompt networks side by side on MRI outlines none of them trained on (issue 16 pilot, session 22).

Question: do ISPY1's enhancement-threshold references (branched slivers; README) pull the prompt network away from
clean MRI lesion outlines? Each network (a folder holding `prompt_unet.json` + weights, or `shipped`) is measured
through the functions the dock calls, with $LESIONSEG_LINE_MODEL_DIR pointing at it:
- 3D from one line and from one box on breast1, brain1 (pyradiomics, in no training set) and Duke 153 (its
  pseudo-label slices trained every network: only the share inside the tumour box), prompts of `eval_line3d.py`;
- line Dice on the breast1 and brain1 slices (`eval_prompt_finetune`'s lesions, as `eval_mri_line_finetune.py
  --second`);
- line and box Dice on the 60 ISPY1 lesions (held out only for a network that never saw them: `--unseen-ispy1`).
The go/no-go (`verdict`) was written before any candidate trained; its text goes into the results (`--rule`).

    python benchmarks/prompt_mri_pilot.py --network shipped --network A=/work/run22/A --network R1=/work/run22/R1 \\
        --candidate A --unseen-ispy1 A --rule RULE.txt --out benchmarks/prompt_no_ispy1_pilot_results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))

ISPY1_CV = 0.637
"""prompt_unet's 2-fold CV line Dice on the ISPY1 lesions (README); clause 4 allows 0.02 below it."""


@contextlib.contextmanager
def network_dir(directory: str | None):
    """Lines and boxes go through the prompt network in `directory` (None: the shipped one) inside the block."""
    old = os.environ.pop("LESIONSEG_LINE_MODEL_DIR", None)
    if directory:
        os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(directory)
    try:
        yield
    finally:
        os.environ.pop("LESIONSEG_LINE_MODEL_DIR", None)
        if old is not None:
            os.environ["LESIONSEG_LINE_MODEL_DIR"] = old


def volumes_3d(prompt: str) -> dict:
    """Per volume: Dice of the reference prompt and the mean over all prompts (Duke: share inside the box, mL)."""
    from eval_line3d import segmented_volumes

    from napari_lesionseg.core.metrics import dice

    out = {}
    for name, _, sp, lab, rows in segmented_volumes(prompt, "auto"):
        masks = [m for m, _ in rows]
        if name != "duke_153":
            scores = [float(dice(m, lab)) for m in masks]
            out[name] = {"reference": round(scores[0], 4), "mean_over_prompts": round(float(np.mean(scores)), 4),
                         "prompts": len(scores)}
        else:
            inside = [float((m & lab).sum() / max(m.sum(), 1)) for m in masks]
            out[name] = {"inside_box": round(inside[0], 4), "inside_box_mean": round(float(np.mean(inside)), 4),
                         "ml": round(float(masks[0].sum() * np.prod(sp) / 1000), 2), "prompts": len(masks)}
    return out


def slice_lines() -> dict:
    """Line Dice on the breast1 and brain1 slices (each labelled slice's lesion, its longest diameter)."""
    from eval_mri_line_finetune import line_dice, summary
    from eval_prompt_finetune import brain1, breast1

    return {name: summary(line_dice(load()[0], model="prompt_unet")) for name, load in
            (("breast1", breast1), ("brain1", brain1))}


def ispy1() -> dict:
    """Line and box Dice on the 60 ISPY1 lesions (cleaned threshold references, `prompt_lesions.mri_slices`)."""
    import prompt_lesions as pl
    from eval_mri_line_finetune import line_dice, summary
    from eval_prompt_modalities import segment

    from napari_lesionseg.core.metrics import dice

    lesions = pl.mri_slices()
    box = [float(dice(segment(l, "box", "learned"), l.mask)) for l in lesions]
    return {"line": summary(line_dice(lesions, model="prompt_unet")), "box": summary(box)}


def measure(directory: str | None, with_ispy1: bool) -> dict:
    with network_dir(directory):
        res = {"line_3d": volumes_3d("line"), "box_3d": volumes_3d("box"), "slices_line": slice_lines()}
        res["ispy1"] = ispy1()
        res["ispy1"]["held_out"] = with_ispy1
    return res


def verdict(candidate: dict, references: list[dict]) -> dict:
    """The go/no-go written before any candidate trained (session 22): all four clauses must hold."""
    vols = ("breast1", "brain1")
    cand3d = {v: candidate["line_3d"][v]["mean_over_prompts"] for v in vols}
    ref3d = {v: [r["line_3d"][v]["mean_over_prompts"] for r in references] for v in vols}
    c1 = all(cand3d[v] >= max(ref3d[v]) for v in vols) and any(cand3d[v] >= np.mean(ref3d[v]) + 0.02 for v in vols)
    cand_sl = np.mean([candidate["slices_line"][v]["mean"] for v in vols])
    ref_sl = np.mean([np.mean([r["slices_line"][v]["mean"] for v in vols]) for r in references])
    c2 = bool(cand_sl >= ref_sl - 0.01)
    c3 = candidate["line_3d"]["duke_153"]["inside_box"] >= 0.95
    c4 = candidate["ispy1"]["line"]["mean"] >= ISPY1_CV - 0.02
    clauses = {"1_3d_breast1_brain1": bool(c1), "2_slices": c2, "3_duke_inside_box": bool(c3),
               "4_ispy1_line": bool(c4)}
    return {"clauses": clauses, "go": all(clauses.values()),
            "figures": {"3d_candidate": cand3d, "3d_references": ref3d, "slices_candidate": round(float(cand_sl), 4),
                        "slices_references": round(float(ref_sl), 4)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", action="append", required=True,
                    help="NAME=DIR (a folder with prompt_unet.json), or 'shipped'")
    ap.add_argument("--candidate", help="the network the rule judges; the others are the references")
    ap.add_argument("--unseen-ispy1", nargs="*", default=[], help="networks that never trained on ISPY1")
    ap.add_argument("--rule", help="the go/no-go as written before training (text file)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    nets = dict(item.partition("=")[::2] for item in args.network)
    out = {"what": __doc__.split("\n\n")[0], "rule": Path(args.rule).read_text() if args.rule else None,
           "networks": {}}
    for name, directory in nets.items():
        out["networks"][name] = {"dir": directory or "shipped", **measure(directory or None,
                                                                          name in args.unseen_ispy1)}
        print(name, json.dumps(out["networks"][name]), flush=True)
    if args.candidate:
        refs = [v for k, v in out["networks"].items() if k != args.candidate]
        out["verdict"] = verdict(out["networks"][args.candidate], refs)
        print("verdict", json.dumps(out["verdict"]))
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
