"""Train the line-prompt U-Net (models/line_prompt/) on BUSI, on the CPU.

Each lesion (connected component of a BUSI mask) gets its longest diameter from the mask; every epoch the line's
ends are jittered (a clinician's line is not exact), sometimes swapped and mirrored, and half the samples also get
the RECIST short axis. Images are split by BUSI `group` (one lesion = one group), never by image.

    python scripts/train_line_model.py --fold 0 --folds 2 --out /tmp/line_f0     # cross-validation model
    python scripts/train_line_model.py --folds 1 --out models/line_prompt        # shipped model, all groups
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

BUSI = Path(os.environ.get("LESIONSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ultrasound" / "busi"


def group_fold(group: str, folds: int) -> int:
    return int(hashlib.md5(group.encode()).hexdigest(), 16) % max(folds, 1)


def load_lesions(names=None):
    """[(name, group, image, component mask, p0, p1)] for every lesion of ≥ 30 px in BUSI's lesion images."""
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    from napari_lesionseg.core.annotations.frame import longest_diameter

    cases = json.loads((BUSI / "cases.json").read_text())
    out = []
    for c in cases:
        if c["cls"] == "normal" or (names is not None and c["name"] not in names):
            continue
        img = iio.imread(BUSI / "images" / f"{c['name']}.png")
        if img.ndim == 3:
            img = img[..., :3].mean(-1)
        mask = iio.imread(BUSI / "masks" / f"{c['name']}.png") > 0
        if mask.ndim == 3:
            mask = mask.any(-1)
        lab, n = ndi.label(mask)
        for k in range(1, n + 1):
            comp = lab == k
            if comp.sum() < 30:
                continue
            p0, p1 = longest_diameter(comp)
            out.append((c["name"], c["group"], img.astype(np.float32), comp, p0, p1))
    return out


def make_sample(rng, img, comp, p0, p1, jitter=0.04):
    from napari_lesionseg.core.annotations.frame import LineFrame
    from napari_lesionseg.core.annotations.line_model import draw_segment

    L = float(np.hypot(*(p1 - p0)))
    a = p0 + rng.normal(0, jitter * L, 2)
    b = p1 + rng.normal(0, jitter * L, 2)
    if rng.random() < 0.5:
        a, b = b, a
    fr = LineFrame.from_line(a, b)
    crop = fr.sample(img, order=1)
    lo, hi = np.percentile(crop, [1, 99])
    crop = np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1)
    crop = crop ** np.exp(rng.normal(0, 0.25))
    crop = np.clip(crop * rng.uniform(0.85, 1.15) + rng.normal(0, 0.05), 0, 1)
    tgt = fr.sample(comp.astype(np.float32), order=1, cval=0.0) > 0.5
    chan = np.zeros_like(crop)
    if rng.random() < 0.5 and tgt.any():
        ext = [(np.flatnonzero(tgt[:, c]), c) for c in np.flatnonzero(tgt.any(0))]
        rows, c = max(ext, key=lambda e: e[0][-1] - e[0][0])
        j = rng.normal(0, 1.5, 2)
        draw_segment(chan, (rows[0] + j[0], c), (rows[-1] + j[1], c))
    x = np.stack([crop, chan]).astype(np.float32)
    y = tgt[None].astype(np.float32)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fold", type=int, default=0, help="fold held out for validation")
    ap.add_argument("--folds", type=int, default=2, help="1 = train on every group")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from napari_lesionseg.core.annotations.line_model import build_net
    from napari_lesionseg.core.models.build import save_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    lesions = load_lesions()
    if args.folds > 1:
        train = [l for l in lesions if group_fold(l[1], args.folds) != args.fold]
        val = [l for l in lesions if group_fold(l[1], args.folds) == args.fold]
    else:
        train, val = lesions, []
    print(f"{len(train)} training lesions, {len(val)} validation lesions ({time.time() - t0:.0f} s to load)", flush=True)
    val_batch = [make_sample(np.random.default_rng(1000 + i), *l[2:], jitter=0.0) for i, l in enumerate(val)]

    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * int(np.ceil(len(train) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    bce = torch.nn.BCEWithLogitsLoss()
    for ep in range(args.epochs):
        net.train()
        order = rng.permutation(len(train))
        tot = 0.0
        for i in range(0, len(order), args.batch):
            xs, ys = zip(*(make_sample(rng, *train[j][2:]) for j in order[i:i + args.batch]))
            x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
            logit = net(x)
            p = torch.sigmoid(logit)
            dl = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
            loss = bce(logit, y) + dl.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(xs)
        msg = f"epoch {ep + 1:3d} loss {tot / len(train):.4f}"
        if val_batch and (ep % 5 == 4 or ep == args.epochs - 1):
            net.eval()
            with torch.inference_mode():
                x = torch.from_numpy(np.stack([v[0] for v in val_batch]))
                y = np.stack([v[1] for v in val_batch])[:, 0] > 0.5
                pr = torch.sigmoid(net(x))[:, 0].numpy() > 0.5
            d = [2 * (a & b).sum() / max(a.sum() + b.sum(), 1) for a, b in zip(pr, y)]
            msg += f"  val frame Dice {np.mean(d):.4f} (p10 {np.percentile(d, 10):.3f})"
        print(msg + f"  [{time.time() - t0:.0f} s]", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "busi_line_unet"
    save_weights(net, out / f"{name}.safetensors")
    card = {
        "name": name, "weights": f"{name}.safetensors", "channels": [16, 32, 64, 128], "in_channels": 2,
        "frame_size": 128, "training_data": "BUSI lesion images" + (f", groups with md5(group) % {args.folds} != {args.fold}" if args.folds > 1 else ", all groups"),
        "n_train_lesions": len(train), "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "train_seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d"),
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2))
    print("saved", out / f"{name}.safetensors")


if __name__ == "__main__":
    main()
