"""Train the prompt U-Net (models/line_prompt/) on every modality, on the CPU: line, box and click prompts.

Lesions come from `scripts/prompt_lesions.py` (BUSI ultrasound, BreastDCEDL DCE-MRI slices with cleaned threshold
masks, CDD-CESM mammograms, mini-MIAS disks, MoNuSeg nuclei, Duke pseudo-label slices). Each sample is one lesion
with one prompt drawn at random:

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

    python scripts/train_line_model.py --fold 0 --folds 2 --out /tmp/prompt_cv/f0   # cross-validation model
    python scripts/train_line_model.py --folds 1 --steps 1030 --out models/line_prompt  # shipped model, all patients

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

NAME = "prompt_unet"
REPEAT = {"busi": 1, "mri_slices": 6, "cdd_cesm": 10, "mias": 2, "monuseg": 0.5, "duke": 4}
"""Times each lesion of a source appears per epoch (fractions: a random share of it)."""


def frame_for(rng, les: pl.Lesion, kind: str):
    """(LineFrame, prompt geometry for `prompt_channels`) for one prompt kind, with a reader's imprecision."""
    from napari_lesionseg.core.annotations.frame import LineFrame
    from napari_lesionseg.core.annotations.prompts import box_frame

    L = float(np.hypot(*(les.p1 - les.p0)))
    if kind == "line":
        a = les.p0 + rng.normal(0, 0.04 * L, 2)
        b = les.p1 + rng.normal(0, 0.04 * L, 2)
        if rng.random() < 0.5:
            a, b = b, a
        return LineFrame.from_line(a, b), {"line": (a, b)}
    if kind == "box":
        rows, cols = np.flatnonzero(les.mask.any(1)), np.flatnonzero(les.mask.any(0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        top, bottom = rows[0] + rng.normal(0, 0.03 * h), rows[-1] + rng.normal(0, 0.03 * h)
        left, right = cols[0] + rng.normal(0, 0.03 * w), cols[-1] + rng.normal(0, 0.03 * w)
        frame, corners = box_frame((top, left), (bottom, right))
        return frame, {"box": corners}
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(les.mask)
    c = np.array(np.unravel_index(np.argmax(dist), dist.shape), float) + rng.normal(0, 0.05 * L, 2)
    half = 0.5 * L * np.exp(rng.normal(0, 0.3))
    ang = rng.uniform(0, np.pi)
    d = half * np.array([np.sin(ang), np.cos(ang)])
    return LineFrame.from_line(c - d, c + d), {"positive": [c]}


def refinement_clicks(rng, tgt_frame, frame):
    """1–3 clicks in array coordinates: positive inside the lesion, negative outside but within 12 frame px."""
    from scipy import ndimage as ndi

    pos, neg = [], []
    near = ndi.binary_dilation(tgt_frame, iterations=12) & ~tgt_frame
    for _ in range(rng.integers(1, 4)):
        pool = tgt_frame if rng.random() < 0.5 else near
        pts = np.argwhere(pool)
        if len(pts):
            p = frame.to_array(pts[rng.integers(len(pts))][None].astype(float))[0]
            (pos if pool is tgt_frame else neg).append(p)
    return pos, neg


def augment_crop(rng, crop):
    from scipy import ndimage as ndi

    if rng.random() < 0.5:
        crop = 1 - crop
    if rng.random() < 0.2:  # a coarser scanner
        f = rng.uniform(1.5, 3)
        small = ndi.zoom(crop, 1 / f, order=1)
        crop = ndi.zoom(small, np.array(crop.shape) / small.shape, order=1)
    if rng.random() < 0.3:
        crop = ndi.gaussian_filter(crop, rng.uniform(0.3, 1.5))
    crop = np.clip(crop, 0, 1) ** np.exp(rng.normal(0, 0.4))
    crop = crop * rng.uniform(0.7, 1.2) + rng.uniform(-0.1, 0.1) + rng.normal(0, rng.uniform(0, 0.08), crop.shape)
    return np.clip(crop, 0, 1).astype(np.float32)


def make_sample(rng, les: pl.Lesion, kind: str | None = None):
    from napari_lesionseg.core.annotations.line_model import normalised_crop, prompt_channels

    kind = kind or rng.choice(["line", "box", "click"], p=[0.5, 0.25, 0.25])
    frame, geo = frame_for(rng, les, kind)
    crop = augment_crop(rng, normalised_crop(les.image, frame))
    tgt = frame.sample(les.mask.astype(np.float32), order=1, cval=0.0) > 0.5
    segs = [geo["line"]] if "line" in geo else []
    if kind == "line" and rng.random() < 0.3:
        from napari_lesionseg.core.annotations.frame import short_axis

        s = short_axis(les.mask, les.p0, les.p1)
        if s is not None:
            segs.append((s[0] + rng.normal(0, 1.5, 2), s[1] + rng.normal(0, 1.5, 2)))
    pos, neg = list(geo.get("positive", [])), []
    if rng.random() < 0.3 and tgt.any():
        p, n = refinement_clicks(rng, tgt, frame)
        pos, neg = pos + p, neg + n
    chans = prompt_channels(frame, segs, geo.get("box"), pos, neg)
    x = np.concatenate([crop[None], chans])
    y = tgt[None].astype(np.float32)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def epoch_order(rng, train: list[pl.Lesion]) -> np.ndarray:
    idx = []
    for i, les in enumerate(train):
        r = REPEAT.get(les.source, 1)
        idx += [i] * int(r) + ([i] if rng.random() < r - int(r) else [])
    return rng.permutation(np.array(idx))


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
    args = ap.parse_args()

    import torch

    from napari_lesionseg.core.annotations.line_model import PROMPT_CHANNELS, build_net
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
    counts = {s: sum(l.source == s for l in train) for s in pl.SOURCES}
    print(f"{len(train)} training lesions {counts} ({time.time() - t0:.0f} s to load)", flush=True)

    net = build_net(in_channels=len(PROMPT_CHANNELS))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    per_epoch = len(epoch_order(np.random.default_rng(0), train))
    steps = args.steps or args.epochs * int(np.ceil(per_epoch / args.batch)) + args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    bce = torch.nn.BCEWithLogitsLoss()
    done = ep = 0
    while (done < args.steps) if args.steps else (ep < args.epochs):
        net.train()
        order = epoch_order(rng, train)
        tot = 0.0
        for i in range(0, len(order), args.batch):
            if args.steps and done >= args.steps:
                order = order[:i]
                break
            xs, ys = zip(*(make_sample(rng, train[j]) for j in order[i:i + args.batch]))
            x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
            logit = net(x)
            p = torch.sigmoid(logit)
            dl = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
            loss = bce(logit, y) + dl.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            tot += float(loss.detach()) * len(xs)
        ep += 1
        print(f"epoch {ep:3d} step {done} loss {tot / max(len(order), 1):.4f}  [{time.time() - t0:.0f} s]", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(net, out / f"{NAME}.safetensors")
    held = f"patients of fold {args.fold} of {args.folds} held out" if args.folds > 1 else "all patients"
    recipe = f"scripts/train_line_model.py --folds {args.folds}" + (
        f" --fold {args.fold}" if args.folds > 1 else "") + (f" --steps {args.steps}" if args.steps else f" --epochs {args.epochs}")
    card = {
        "name": NAME, "modality": "any", "kind": "prompt", "architecture": "TinyUNet", "encoder": "none",
        "in_channels": len(PROMPT_CHANNELS), "input_kind": "prompt",
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
    (out / f"{NAME}.json").write_text(json.dumps(card, indent=2))
    print("saved", out / f"{NAME}.safetensors", flush=True)


if __name__ == "__main__":
    main()
