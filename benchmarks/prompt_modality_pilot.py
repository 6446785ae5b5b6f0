"""The image's modality fed to the prompt network (issue 16 pilot, session 27: "feed the modality if it helps").

Candidate fold models trained with `scripts/train_line_model.py --modality-channels` take four more input channels,
one-hot of the lesion's modality (`train_line_model.MODALITIES`). Product code does not know them (nothing ships
unless the pilot passes), so here `line_model.frame_input` is wrapped: for a card with `modality_channels` the
channels of the modality set by `given_modality` are appended, everything else (frames, views, masks) is the
dock's code. Lesions are those of the README's table, each through the fold model without its patient
(`eval_prompt_modalities.segment`, line and box); the reference is an `eval_prompt_modalities --save` CSV of the
same recipe without the channels, paired lesion by lesion (`prompt_ensemble_pilot.paired`). --slices adds line
Dice on the breast1 / brain1 slices (no fold model saw them), averaged over the two fold models of each network.

    python benchmarks/prompt_modality_pilot.py --cv /work/run27/M --reference-cv /work/run23/S0 \\
        --reference-csv /work/run23/S0.csv --slices --rule RULE.txt --out results.json --save M.csv
"""

from __future__ import annotations

import argparse
import contextlib
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

import prompt_lesions as pl  # noqa: E402
from prompt_ensemble_pilot import paired, read_rows, write_pilot_results  # noqa: E402

SOURCES, PROMPTS = pl.REPORTED, ("line", "box")
_GIVEN = {"modality": None}


@contextlib.contextmanager
def given_modality(modality: str):
    """Inside the block a network whose card has `modality_channels` is told `modality` (one-hot channels)."""
    from train_line_model import modality_channels

    from napari_lesionseg.core.annotations import line_model as lm

    original = lm.frame_input

    def frame_input(image2d, frame, short=None, *, card=None, **kw):
        x = original(image2d, frame, short, card=card, **kw)
        card = card or lm.load_line_model(lm.installed_model(), str(lm.model_dir()))[1]
        if card.get("modality_channels"):
            x = np.concatenate([x, modality_channels(_GIVEN["modality"], x.shape[-1])])
        return x

    _GIVEN["modality"], lm.frame_input = modality, frame_input
    try:
        yield
    finally:
        lm.frame_input, _GIVEN["modality"] = original, None


from eval_prompt_modalities import write_rows  # noqa: E402


def held_out_rows(cv: str) -> list[tuple]:
    """eval_prompt_modalities' CSV rows for line and box on the README's lesions, each through its fold model."""
    from eval_prompt_modalities import segment

    from napari_lesionseg.core.metrics import dice

    lesions = pl.load(SOURCES)
    folds = pl.assign_folds(lesions)
    rows = []
    for prompt in PROMPTS:
        for les in lesions:
            k = folds[les.patient]
            os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(Path(cv) / f"f{k}")
            t = time.time()
            with given_modality(pl.MODALITY[les.source]):
                d = float(dice(segment(les, prompt, "learned"), les.mask))
            rows.append((les.source, les.patient, les.name, k, "learned", prompt, d, time.time() - t))
    os.environ.pop("LESIONSEG_LINE_MODEL_DIR", None)
    return rows


def slice_means(cv: str) -> dict[str, float]:
    """Line Dice on the breast1 / brain1 slices (modality mri), each slice averaged over the two fold models."""
    from eval_mri_line_finetune import line_dice
    from eval_prompt_finetune import brain1, breast1

    out = {}
    for name, load in (("breast1", breast1), ("brain1", brain1)):
        lesions = load()[0]
        per_fold = []
        for k in (0, 1):
            os.environ["LESIONSEG_LINE_MODEL_DIR"] = str(Path(cv) / f"f{k}")
            with given_modality("mri"):
                per_fold.append(line_dice(lesions))
        out[name] = round(float(np.mean(per_fold)), 4)
    os.environ.pop("LESIONSEG_LINE_MODEL_DIR", None)
    return out


def verdict(table: dict, slices: dict | None, reference_slices: dict | None) -> dict:
    """The rule in --rule: (1) a gain on ISPY1 or CDD-CESM lines, (2) no loss > 0.005, (3) clean slices kept."""
    gain = any(table[f"{s}/line"]["difference"] >= 0.015 and table[f"{s}/line"]["ci95"][0] > 0
               for s in ("mri_slices", "cdd_cesm"))
    clauses = {"1_ispy1_or_cdd_line_plus_0.015": gain,
               "2_none_worse_than_0.005": all(v["difference"] >= -0.005 for v in table.values())}
    if slices is not None and reference_slices is not None:
        clauses["3_slices_within_0.01"] = all(slices[k] >= reference_slices[k] - 0.01 for k in slices)
    return {"clauses": clauses, "go": all(clauses.values())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", required=True, help="candidate fold models f0/ f1/ (trained with --modality-channels)")
    ap.add_argument("--reference-csv", required=True, help="eval_prompt_modalities --save CSV of the reference")
    ap.add_argument("--reference-cv", help="the reference's fold models (for --slices)")
    ap.add_argument("--slices", action="store_true")
    ap.add_argument("--rule")
    ap.add_argument("--save", help="the candidate's per-lesion CSV")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows = held_out_rows(args.cv)
    csv_path = Path(args.save) if args.save else Path(args.out).with_suffix(".csv")
    write_rows(csv_path, rows)
    ref, cand = read_rows(args.reference_csv), read_rows(csv_path)
    table = {f"{s}/{p}": paired(ref, cand, s, p) for s in SOURCES for p in PROMPTS}
    for k, v in table.items():
        print(k, json.dumps(v), flush=True)
    slices = ref_slices = None
    if args.slices:
        slices = slice_means(args.cv)
        ref_slices = slice_means(args.reference_cv) if args.reference_cv else None
        print("slices", slices, "reference", ref_slices, flush=True)
    write_pilot_results(args.out, {"cv": args.cv, "reference": args.reference_csv,
                                   "candidate_against_reference": table, "slices_line": slices,
                                   "slices_line_reference": ref_slices,
                                   "verdict": verdict(table, slices, ref_slices)}, args.rule)


if __name__ == "__main__":
    main()
