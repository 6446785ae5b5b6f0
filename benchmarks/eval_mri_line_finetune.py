"""An MRI line network: the BUSI-only line network fine-tuned on DCE-MRI slices, measured held out by patient.

Recipe under test: `busi_line_unet` (BUSI ultrasound only: it never saw an MRI slice) fine-tuned with the product's
`core.training.prompt_finetune.finetune_prompt_model` (line-only samples, lr 3e-4 cosine, batch 8, BatchNorm frozen,
seed 0) on the ISPY1 slice masks cleaned as `scripts/prompt_lesions.py` cleans them. Because the base saw no MRI,
the recipe can be cross-validated in minutes, which the all-modality `prompt_unet` (an hour per fold) cannot.

--cv: the two patient folds of `eval_prompt_modalities.py --cv` (`prompt_lesions.assign_folds`). In each outer fold
the number of steps (200, the function's default, or the one alternative 600) is chosen INSIDE the training fold
(its patients split in two the same way, each setting trained on one half and measured on the other, 600 only if
strictly better); the chosen setting is trained on the whole training fold and measured on the held-out fold.
Both settings' outer figures are also printed (the final network takes the better one, 200 on a tie). The
classical line and `busi_line_unet` (plain and on the inverted image), which never trained on MRI, are measured on
the same lesions per fold; `prompt_unet` too, but it trained on every ISPY1 patient (its figure is optimistic).
The decision rule was fixed before any figure of the candidate existed; it and every figure are in
benchmarks/eval_mri_line_finetune_results.json. Result: held out 0.651, no better than the classical line, worse in
3D on breast1 and brain1, so nothing was shipped (DEVELOPERS.md, "Tried and not shipped (issue 16)").

--final DIR: fine-tune on all ISPY1 slices into DIR as `mri_line_unet` (the network the 3D and second-source checks
used; with LESIONSEG_USER_MODELS_DIR=X and DIR=X/line_prompt the other commands find it by name).
--second NAME: the line Dice of NAME and of the shipped networks on the slices of pyradiomics breast1 and brain1
(neither network saw them). 3D: `benchmarks/eval_line3d.py --model NAME`.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/eval_mri_line_finetune.py --cv --json benchmarks/eval_mri_line_finetune_results.json
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/eval_mri_line_finetune.py --final models/line_prompt --steps 200
    python benchmarks/eval_mri_line_finetune.py --second mri_line_unet
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.metrics import dice  # noqa: E402

BASE = "busi_line_unet"
SETTINGS = (200, 600)
"""Steps: the fine-tuning's default (primary) and the one alternative, both declared before any figure."""
NAME = "mri_line_unet"


def training_masks(lesions) -> tuple[list, list, list]:
    """(images, masks, names): one mask per slice, the union of its cleaned lesions (prompt_lesions.mri_slices),
    so the fine-tuning's components (≥ 30 px) are exactly those lesions."""
    names = sorted({l.name for l in lesions})
    images = [next(l.image for l in lesions if l.name == n) for n in names]
    masks = [np.any([l.mask for l in lesions if l.name == n], axis=0) for n in names]
    return images, masks, names


def finetune(lesions, steps: int, name: str, output_dir=None):
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model

    images, masks, names = training_masks(lesions)
    note = f"ISPY1 DCE-MRI slices (BreastDCEDL), {len({l.patient for l in lesions})} patients, cleaned threshold masks"
    return finetune_prompt_model(BASE, images, masks, name, steps=steps, names=names, seed=0, data_note=note,
                                 output_dir=output_dir).name


def line_dice(lesions, method: str = "learned", model: str | None = None, inverted: bool = False) -> list[float]:
    """Per-lesion Dice, line = the lesion's longest diameter (as the README's table)."""
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.errors import LesionSegError

    out = []
    for les in lesions:
        img = les.image.max() - les.image if inverted else les.image
        try:
            m = line_to_mask(img, les.p0, les.p1, method=method, model=model)
        except LesionSegError:
            m = np.zeros_like(les.mask)
        out.append(float(dice(m, les.mask)))
    return out


def baselines(lesions) -> dict[str, list[float]]:
    return {"classical": line_dice(lesions, "classical"), BASE: line_dice(lesions, model=BASE),
            BASE + " inverted": line_dice(lesions, model=BASE, inverted=True),
            "prompt_unet (trained on these patients)": line_dice(lesions, model="prompt_unet")}


def split(lesions) -> tuple[list, list]:
    """The two patient halves of `prompt_lesions.assign_folds` (the README's CV split)."""
    folds = pl.assign_folds(lesions)
    return ([l for l in lesions if folds[l.patient] == 0], [l for l in lesions if folds[l.patient] == 1])


def inner_choice(train, tag: str) -> tuple[int, dict]:
    """The setting chosen inside a training fold: each setting fine-tuned on one half of its patients and measured
    on the other, both ways; the alternative only if strictly better."""
    halves = split(train)
    scores = {}
    for steps in SETTINGS:
        d = []
        for k in (0, 1):
            d += line_dice(halves[1 - k], model=finetune(halves[k], steps, f"{tag}-inner{k}-s{steps}"))
        scores[steps] = float(np.mean(d))
    chosen = SETTINGS[1] if scores[SETTINGS[1]] > scores[SETTINGS[0]] else SETTINGS[0]
    return chosen, scores


def summary(v) -> dict:
    v = np.asarray(v, float)
    return {"mean": round(float(v.mean()), 4), "p10": round(float(np.percentile(v, 10)), 4), "n": len(v)}


def cross_validate(out_json: str | None) -> dict:
    lesions = pl.mri_slices()
    folds = split(lesions)
    res = {"base": BASE, "settings_steps": list(SETTINGS), "folds": []}
    for k in (0, 1):
        test, train = folds[k], folds[1 - k]
        t0 = time.time()
        chosen, inner = inner_choice(train, f"f{k}")
        outer = {s: line_dice(test, model=finetune(train, s, f"f{k}-s{s}")) for s in SETTINGS}
        fold = {"fold": k, "test_patients": sorted({l.patient for l in test}), "test_lesions": len(test),
                "train_lesions": len(train), "inner_scores": inner, "chosen_steps": chosen,
                "candidate": outer[chosen], **{f"steps_{s}": outer[s] for s in SETTINGS},
                **baselines(test), "names": [l.name for l in test], "seconds": round(time.time() - t0)}
        res["folds"].append(fold)
        print(json.dumps({key: (summary(v) if isinstance(v, list) and key not in ("test_patients", "names") else v)
                          for key, v in fold.items() if key != "names"}), flush=True)
    keys = [k for k in res["folds"][0] if isinstance(res["folds"][0][k], list)
            and k not in ("test_patients", "names")]
    res["pooled"] = {key: summary(sum((f[key] for f in res["folds"]), [])) for key in keys}
    res["per_fold_mean"] = {key: [summary(f[key])["mean"] for f in res["folds"]] for key in keys}
    pooled = {s: res["pooled"][f"steps_{s}"]["mean"] for s in SETTINGS}
    res["final_steps"] = SETTINGS[1] if pooled[SETTINGS[1]] > pooled[SETTINGS[0]] else SETTINGS[0]
    print("\nheld-out ISPY1 line Dice, pooled (mean / 10th pct) and per fold:")
    for key in keys:
        print(f"  {key:42s} {res['pooled'][key]['mean']:.3f} / {res['pooled'][key]['p10']:.3f}   "
              f"folds {', '.join(f'{m:.3f}' for m in res['per_fold_mean'][key])}")
    print(f"final network's steps (better pooled outer figure): {res['final_steps']}")
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=1))
    return res


def second_source(name: str) -> dict:
    """Slices of the pyradiomics volumes (never seen by any of these networks): line Dice per network."""
    from eval_prompt_finetune import brain1, breast1

    out = {}
    for source, load in (("breast1", breast1), ("brain1", brain1)):
        les = load()[0]
        out[source] = {"lesions": len(les), name: summary(line_dice(les, model=name)),
                       "prompt_unet": summary(line_dice(les, model="prompt_unet")),
                       BASE: summary(line_dice(les, model=BASE)), "classical": summary(line_dice(les, "classical"))}
        print(source, json.dumps(out[source]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cv", action="store_true")
    ap.add_argument("--final", help="folder for the network fine-tuned on all ISPY1 slices (models/line_prompt)")
    ap.add_argument("--steps", type=int, default=SETTINGS[0])
    ap.add_argument("--second", help="a prompt network's name: line Dice on breast1 / brain1 slices")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.cv:
        os.environ["LESIONSEG_USER_MODELS_DIR"] = tempfile.mkdtemp(prefix="mriline-")  # fold models stay out
        cross_validate(args.json)
    if args.final:
        print("published", finetune(pl.mri_slices(), args.steps, NAME, output_dir=args.final))
    if args.second:
        res = second_source(args.second)
        if args.json and not args.cv:
            Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
