"""Train the prompt U-Net (models/line_prompt/) on every modality, on the CPU: line, box and click prompts.

Lesions come from `scripts/prompt_lesions.py` (BUSI ultrasound, BreastDCEDL DCE-MRI slices with cleaned threshold
masks, CDD-CESM mammograms, mini-MIAS disks, MoNuSeg nuclei, Duke pseudo-label slices). Each sample is one lesion
with one prompt drawn at random (`napari_lesionseg.core.training.prompt_samples`, shared with the fine-tuning on a
user's corrected masks):

- line (50 %): its longest diameter, ends jittered by N(0, 0.04 L), in 30 % with the RECIST short axis (±1.5 px);
- box (25 %): its bounding box, each side moved by N(0, 0.03 × the box side); the frame runs along the box's
  longer middle line;
- click (25 %): a click near its deepest point (N(0, 0.05 L)); the frame is centred there at a random angle, its
  size the true diameter × exp(N(0, 0.3)) (at inference the size comes from the image: `prompts.click_to_mask`);
- in 30 % of samples, one to three refinement clicks: positive ones inside the lesion, negative ones outside it
  but near it.

Intensity polarity and contrast do not decide the answer: the crop is inverted in half of the samples, then gamma,
contrast, noise, blur and a lower resolution are jittered. Small sources are repeated so that each epoch holds
about as many non-ultrasound as ultrasound lesions (`REPEAT`). Cross-validation splits by patient
(`prompt_lesions.assign_folds`); sources that are never reported (MIAS disks, nuclei, Duke) train every fold.

    python scripts/train_line_model.py --fold 0 --folds 2 --epochs 25 --out /tmp/prompt_cv/f0   # cross-validation model
    python scripts/train_line_model.py --folds 1 --steps 1050 --out models/line_prompt  # shipped model, all patients

The shipped model takes as many optimiser steps as a fold model (`--steps`: the fold's 25 epochs of about 660
samples, batch 16), so the recipe measured by cross-validation is the one shipped, on twice the patients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_lesions as pl  # noqa: E402

from napari_lesionseg.core.training.prompt_samples import make_sample, prompt_loss  # noqa: E402

NAME = "prompt_unet"
REPEAT = {"busi": 1, "mri_slices": 6, "cdd_cesm": 10, "mias": 2, "monuseg": 0.5, "duke": 4}
"""Times each lesion of a source appears per epoch (fractions: a random share of it)."""


def repeat_table(overrides: list[str]) -> dict[str, float]:
    """REPEAT with `SOURCE=R` overrides from the command line (a source left out of a pilot: R = 0)."""
    table = dict(REPEAT)
    for item in overrides:
        source, _, value = item.partition("=")
        try:
            r = float(value)
        except ValueError:
            r = -1.0
        if source not in pl.SOURCES or r < 0:
            raise SystemExit(f"--repeat wants SOURCE=R with SOURCE one of {', '.join(pl.SOURCES)} and R >= 0, "
                             f"not {item!r}")
        table[source] = r
    return table


MODALITIES = ("ultrasound", "mri", "mammography", "histology")
"""--modality-channels: one constant input channel per modality, after the prompt channels (issue-16 pilot)."""


def modality_channels(modality: str, size: int) -> np.ndarray:
    """(4, size, size): ones in the modality's channel, zeros elsewhere (a source's: `prompt_lesions.MODALITY`)."""
    out = np.zeros((len(MODALITIES), size, size), np.float32)
    out[MODALITIES.index(modality)] = 1.0
    return out


def epoch_order(rng, train: list[pl.Lesion], repeat: dict[str, float] = REPEAT) -> np.ndarray:
    idx = []
    for i, les in enumerate(train):
        r = repeat.get(les.source, 1)
        idx += [i] * int(r) + ([i] if rng.random() < r - int(r) else [])
    return rng.permutation(np.array(idx))


def total_steps(train: list[pl.Lesion], repeat: dict[str, float], batch: int, epochs: int,
                steps: int | None = None) -> int:
    """Optimiser steps of the one-cycle schedule: `steps`, else `epochs` of seed 0's epoch length plus one step
    per epoch of slack (fractional repeats make each epoch's length random)."""
    per_epoch = len(epoch_order(np.random.default_rng(0), train, repeat))
    return steps or epochs * int(np.ceil(per_epoch / batch)) + epochs


def batches(rng, train: list[pl.Lesion], repeat: dict[str, float], batch: int, steps: int, epochs: int | None):
    """(False, lesion indices) per optimiser step and (True, None) at each epoch's end, for `epochs` epochs
    (None: until `steps`), never more than `steps` steps: a seed whose epochs run longer than seed 0's stops at
    the schedule's end instead of stepping past it (session 23: seed 1 crashed at step 1051 of 1050)."""
    done = ep = 0
    while done < steps and (epochs is None or ep < epochs):
        order = epoch_order(rng, train, repeat)
        for i in range(0, len(order), batch):
            if done >= steps:
                break
            done += 1
            yield False, order[i:i + batch]
        ep += 1
        yield True, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fold", type=int, default=0, help="fold held out for validation")
    ap.add_argument("--folds", type=int, default=2, help="1 = train on every patient")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, help="optimiser steps instead of --epochs (epochs run until reached)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", action="append", default=[], metavar="SOURCE=R",
                    help="times each lesion of SOURCE appears per epoch instead of REPEAT's (0 leaves it out)")
    ap.add_argument("--click-context", type=float, nargs=2, metavar=("LO", "HI"),
                    help="click frames of side 2 × diameter × U_log(LO, HI) (size-free click pilot; default: the "
                         "diameter × 2·exp(N(0, 0.3)))")
    ap.add_argument("--modality-channels", action="store_true",
                    help="pilot: the lesion's modality as four one-hot input channels (MODALITIES)")
    args = ap.parse_args()
    repeat = repeat_table(args.repeat)

    import torch

    from napari_lesionseg.core.annotations.line_model import PROMPT_CHANNELS
    from napari_lesionseg.core.models.prompt_net import build_prompt_network
    from napari_lesionseg.core.models.build import save_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    lesions = pl.load()
    folds = pl.assign_folds(lesions, args.folds)
    if args.folds > 1:
        train = [l for l in lesions if l.source not in pl.REPORTED or folds[l.patient] != args.fold]
    else:
        train = lesions
    train = [l for l in train if repeat.get(l.source, 1) > 0]
    counts = {s: sum(l.source == s for l in train) for s in pl.SOURCES}
    print(f"{len(train)} training lesions {counts} ({time.time() - t0:.0f} s to load)", flush=True)

    in_channels = len(PROMPT_CHANNELS) + (len(MODALITIES) if args.modality_channels else 0)
    net = build_prompt_network(in_channels=in_channels)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = total_steps(train, repeat, args.batch, args.epochs, args.steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    done = ep = 0
    tot = n_seen = 0.0
    net.train()
    for ep_end, idx in batches(rng, train, repeat, args.batch, steps, None if args.steps else args.epochs):
        if ep_end:
            ep += 1
            print(f"epoch {ep:3d} step {done} loss {tot / max(n_seen, 1):.4f}  [{time.time() - t0:.0f} s]", flush=True)
            tot = n_seen = 0.0
            continue
        xs, ys = zip(*(make_sample(rng, train[j], click_context=args.click_context) for j in idx))
        if args.modality_channels:
            xs = [np.concatenate([x, modality_channels(pl.MODALITY[train[j].source], x.shape[-1])]) for x, j in zip(xs, idx)]
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        loss = prompt_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        done += 1
        tot += float(loss.detach()) * len(xs)
        n_seen += len(xs)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(net, out / f"{NAME}.safetensors")
    held = f"patients of fold {args.fold} of {args.folds} held out" if args.folds > 1 else "all patients"
    recipe = f"scripts/train_line_model.py --folds {args.folds}" + (
        f" --fold {args.fold}" if args.folds > 1 else "") + (f" --steps {args.steps}" if args.steps else f" --epochs {args.epochs}") + (
        "".join(f" --repeat {r}" for r in args.repeat)) + (f" --seed {args.seed}" if args.seed else "") + (
        " --click-context {} {}".format(*args.click_context) if args.click_context else "") + (
        " --modality-channels" if args.modality_channels else "")
    card = {
        "name": NAME, "modality": "any", "kind": "prompt", "architecture": "TinyUNet", "encoder": "none",
        "in_channels": in_channels, "input_kind": "prompt",
        "normalisation": {"kind": "percentile", "low": 1, "high": 99}, "tta": ["mirror", "invert"],
        "weights": f"{NAME}.safetensors", "weight_storage": "fp16",
        "training_data": f"{', '.join(f'{s} {n}' for s, n in counts.items())} lesions ({held})",
        "licence": "CC BY-NC-SA 4.0 (the strictest of its training data: MoNuSeg; BUSI open access, ISPY1, Duke "
                   "and CDD-CESM CC BY(-NC) 4.0, mini-MIAS research use)",
        "intended_use": "Research use only, not for diagnosis: a first mask from a line, box or click, to correct.",
        "recipe": recipe, "date": time.strftime("%Y-%m-%d"), "metrics": {},
        "channels": [16, 32, 64, 128], "prompt_channels": list(PROMPT_CHANNELS), "prompts": ["line", "box", "click"],
        "frame_size": 128, "n_train_lesions": len(train), "epochs": ep, "steps": done, "batch": args.batch,
        "lr": args.lr, "seed": args.seed, "train_seconds": round(time.time() - t0),
    }
    if args.modality_channels:
        card["modality_channels"] = list(MODALITIES)
    (out / f"{NAME}.json").write_text(json.dumps(card, indent=2))
    print("saved", out / f"{NAME}.safetensors", flush=True)


if __name__ == "__main__":
    main()
