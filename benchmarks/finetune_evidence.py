"""Does fine-tuning on a few corrected cases of a new kind help? BUSI: train a small model on benign images only,
fine-tune it on 20 malignant ones, and compare Dice on the other malignant images before and after.

Malignant lesions look different from benign ones (irregular, shadowing), so a benign-only model is a fair stand-in
for "a model meeting a clinic's new kind of case". Splits are by BUSI duplicate group: no fine-tuning image has a
near-duplicate among the test images, and groups that also hold benign images are left out of the test set.
A control fine-tunes the base model for the same time on 20 benign images (more training alone is not the
point). Sized for one CPU thread (128 px, ResNet-10-T): about 20 minutes. Prints a table; `--json` also writes one.

    .venv/bin/python benchmarks/finetune_evidence.py [--base-minutes 9] [--finetune-minutes 4] [--json out.json]
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
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data")) / "ultrasound" / "busi"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-minutes", type=float, default=9.0)
    ap.add_argument("--finetune-minutes", type=float, default=4.0)
    ap.add_argument("--n-finetune", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-control", action="store_true", help="skip the control run (fine-tuning on benign)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("LESIONSEG_USER_MODELS_DIR", tempfile.mkdtemp(prefix="finetune-evidence-"))
    from napari_lesionseg.core.models.build import load_model
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import load_folder
    from napari_lesionseg.core.training.loop import evaluate, train

    if not DATA.is_dir():
        print(f"BUSI not found at {DATA}", file=sys.stderr)
        return 2
    t_start = time.monotonic()
    cases = load_folder(DATA / "images", DATA / "masks", DATA / "cases.json")
    by_group: dict[str, set] = {}
    for c in cases:
        by_group.setdefault(c.group, set()).add(c.label)
    benign = [c for c in cases if c.label == "benign"]
    malignant = [c for c in cases if c.label == "malignant" and by_group[c.group] == {"malignant"}]
    rng = np.random.default_rng(args.seed)
    groups = sorted({c.group for c in malignant})
    rng.shuffle(groups)
    ft_groups, n = set(), 0
    for g in groups:  # whole groups until n_finetune images
        k = sum(c.group == g for c in malignant)
        if n + k > args.n_finetune:
            continue
        ft_groups.add(g)
        n += k
        if n == args.n_finetune:
            break
    finetune = [c for c in malignant if c.group in ft_groups]
    test = [c for c in malignant if c.group not in ft_groups]
    print(f"{len(benign)} benign for the base model, {len(finetune)} malignant to fine-tune on, "
          f"{len(test)} other malignant to test on", flush=True)

    out_dir = Path(tempfile.mkdtemp(prefix="finetune-evidence-models-"))
    common = dict(modality="ultrasound", encoder="tu-resnet10t", decoder_channels=[64, 32, 16, 8, 8],
                  input_kind="gray", preprocessing=["clahe"], fit="resize", patch_size=[args.size, args.size],
                  batch_size=8, augment=["flip", "affine", "intensity"], num_threads=args.threads,
                  output_dir=str(out_dir), seed=args.seed, early_stopping=0)

    def log(ev):
        from napari_lesionseg.core.training.events import EpochDone

        if isinstance(ev, EpochDone):
            print(f"  epoch {ev.epoch}: loss {ev.loss:.3f} val Dice {ev.metrics.get('val_dice', float('nan')):.3f} "
                  f"({ev.minutes:.1f} min)", flush=True)

    print("training the benign-only base model…", flush=True)
    base_cfg = TrainConfig(name="busi-benign-only", epochs=200, max_minutes=args.base_minutes, learning_rate=2e-3,
                           val_fraction=0.15, positive_fraction=1.0,
                           checkpoint_dir=str(out_dir / ".ckpt-base"), **common)
    base = train(base_cfg, progress=log, cases=benign, resume=False).card

    print("fine-tuning on the malignant cases…", flush=True)
    ft_cfg = TrainConfig(name="busi-malignant-finetuned", base=str(base.path), epochs=200,
                         max_minutes=args.finetune_minutes, learning_rate=5e-4, val_fraction=0.0,
                         positive_fraction=1.0, checkpoint_dir=str(out_dir / ".ckpt-ft"), **common)
    tuned = train(ft_cfg, progress=log, cases=finetune, resume=False).card
    models = [("benign-only base", base), ("fine-tuned on 20 malignant", tuned)]
    if not args.no_control:  # same extra training on benign images: is it the malignant cases that help?
        print("control: the same fine-tuning on benign images…", flush=True)
        control_cases = [benign[i] for i in rng.choice(len(benign), size=len(finetune), replace=False)]
        ctl_cfg = TrainConfig(**{**ft_cfg.to_dict(), "name": "busi-benign-finetuned",
                                 "checkpoint_dir": str(out_dir / ".ckpt-ctl")})
        control = train(ctl_cfg, progress=log, cases=control_cases, resume=False).card
        models.insert(1, (f"control: fine-tuned on {len(finetune)} benign", control))

    print("evaluating on the other malignant images…", flush=True)
    rows = {}
    for label, card in models:
        m = load_model(card)
        r = evaluate(m.net, card, test, m.device)
        rows[label] = r["val_dice"]
    minutes = (time.monotonic() - t_start) / 60
    print()
    print(f"| model (BUSI, {args.size} px, {args.threads} thread) | mean Dice on {len(test)} other malignant |")
    print("|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |")
    print(f"\nfine-tuning set: {len(finetune)} malignant images; base trained {args.base_minutes:g} min on "
          f"{len(benign)} benign, fine-tuned {args.finetune_minutes:g} min; total {minutes:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({"dice": rows, "n_test": len(test), "n_finetune": len(finetune),
                                               "minutes": minutes, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
