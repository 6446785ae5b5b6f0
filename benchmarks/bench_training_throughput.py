"""Training throughput (images/s) of the project's `train()` against a plain PyTorch loop on the same model and
data, in one run side by side (target: within 10%).

Both train the same U-Net on the same 128 × 128 BUSI-like inputs (real BUSI images when ../shared/data has them,
synthetic blobs otherwise), batch 8, AdamW, BCE + Dice, flips, one thread. The plain loop is the textbook
minimum: shuffled tensors, forward, loss, backward, step. Our loop adds balanced sampling, augmentation, progress
events and the cancel check. Validation is off for both (it is not throughput). Both run in fp32 for the
like-for-like ratio; a third arm runs `train()` with `precision: auto` (bf16 autocast + channels-last on CPUs with
native bf16) to show what mixed precision buys. Runs alternate A/B/C so a neighbour's CPU load hits all alike; the
table gives the median of the repeats.

    .venv/bin/python benchmarks/bench_training_throughput.py [--repeats 3] [--batches 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
DATA = Path(os.environ.get("LESIONSEG_SHARED_DATA", REPO.parent / "shared" / "data")) / "ultrasound" / "busi"


def load_cases(n: int, size: int):
    from napari_lesionseg.core.training.data import Case, load_folder

    if DATA.is_dir():  # n images picked at random, linked into a temporary folder (no copies)
        names = sorted(p.name for p in (DATA / "images").glob("*.png"))
        pick = np.random.default_rng(0).choice(len(names), size=min(n, len(names)), replace=False)
        tmp = Path(tempfile.mkdtemp(prefix="bench-busi-"))
        for sub in ("images", "masks"):
            (tmp / sub).mkdir()
            for i in pick:
                (tmp / sub / names[i]).symlink_to(DATA / sub / names[i])
        return load_folder(tmp / "images", tmp / "masks", DATA / "cases.json"), "BUSI"
    from tiny_models import blob_image

    rng = np.random.default_rng(0)
    return [Case(f"c{i}", *blob_image(rng, shape=(size * 2, size * 2)), group=f"g{i}") for i in range(n)], "synthetic"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30, help="batches per timed run")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("LESIONSEG_USER_MODELS_DIR", tempfile.mkdtemp(prefix="bench-train-"))
    from napari_lesionseg.core.models.build import build_network
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import make_examples, resize_examples
    from napari_lesionseg.core.training.losses import compute_loss
    from napari_lesionseg.core.training.loop import card_for, train

    n_images = args.batches * args.batch_size  # one epoch = the timed batches
    cases, source = load_cases(n_images, args.size)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cfg_kw = dict(name="bench", modality="ultrasound", encoder="tu-resnet10t", decoder_channels=[64, 32, 16, 8, 8],
                  fit="resize", patch_size=[args.size, args.size], preprocessing=["clahe"], batch_size=args.batch_size,
                  epochs=1, augment=["flip"], val_fraction=0.0, early_stopping=0, num_threads=args.threads,
                  output_dir=str(tmp / "models"), precision="fp32")

    # Plain PyTorch: the same prepared inputs as our loop gets (CLAHE, normalisation, resize done up front).
    card = card_for(TrainConfig(**cfg_kw))
    examples = make_examples(cases, card)
    resize_examples(examples, (args.size, args.size))
    X = torch.from_numpy(np.stack([e.x for e in examples]).astype(np.float32))
    Y = torch.from_numpy(np.stack([e.y for e in examples]).astype(np.int64))

    def plain() -> float:
        torch.manual_seed(0)
        net = build_network(card)
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        perm = torch.randperm(len(X))
        times = []
        for b in range(args.batches):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            x, y = X[idx], Y[idx]
            f = torch.rand(len(idx)) < 0.5
            x[f], y[f] = x[f].flip(-1), y[f].flip(-1)
            loss, _ = compute_loss("bce_dice", net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            times.append(time.perf_counter())
        return args.batch_size / ((times[-1] - times[0]) / (len(times) - 1))  # measured as for train() below

    def ours(precision: str = "fp32") -> float:
        times = []

        def progress(ev):
            from napari_lesionseg.core.training.events import BatchDone

            if isinstance(ev, BatchDone):
                times.append(time.perf_counter())

        k = len(list(tmp.glob("run*")))
        cfg = TrainConfig(**{**cfg_kw, "checkpoint_dir": str(tmp / f"run{k}"), "precision": precision})
        train(cfg, progress=progress, cancelled=lambda: False, cases=cases, resume=False, publish=False)
        # Mean batch time from the first batch's end to the last's: leaves out data preparation (done once per
        # run, outside the plain loop's timer too) and the end-of-epoch checkpoint.
        per_batch = (times[-1] - times[0]) / (len(times) - 1)
        return args.batch_size / per_batch

    print(f"{source} images, {args.size} px, batch {args.batch_size}, {args.batches} batches per run, "
          f"{args.threads} thread(s), ResNet-10-T U-Net", flush=True)
    plain()  # warm-up (allocator, kernels)
    a, b, c = [], [], []
    for r in range(args.repeats):
        a.append(plain())
        b.append(ours())
        c.append(ours("auto"))
        print(f"  repeat {r + 1}: plain {a[-1]:.2f} img/s, train() {b[-1]:.2f} img/s, "
              f"train() precision auto {c[-1]:.2f} img/s", flush=True)
    pa, pb, pc = float(np.median(a)), float(np.median(b)), float(np.median(c))
    print()
    print("| loop | images/s (median) |")
    print("|---|---|")
    print(f"| plain PyTorch | {pa:.2f} |")
    print(f"| lesionseg train() | {pb:.2f} |")
    print(f"| ratio | {pb / pa:.2f} |")
    print(f"| lesionseg train(), precision auto | {pc:.2f} ({pc / pb:.2f}x fp32 train()) |")
    ok = pb >= 0.9 * pa
    print("within 10% of plain PyTorch" if ok else "MORE than 10% slower than plain PyTorch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
