"""The README's model table: every shipped model's size, CPU time per 512 x 512 image, and its card's metrics.

    .venv/bin/python benchmarks/bench_models.py [--threads 2]

Time is the median of 5 runs of `Predictor.predict_image` on a 512 x 512 image of the model's kind (after one
warm-up run), on the CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_lesionseg.core.inference.engine import Predictor
from napari_lesionseg.core.models.registry import ModelRegistry, shipped_models_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"| model | modality | network | weights (MB) | CPU s per 512x512 ({args.threads} threads) | measured on unseen data |")
    print("|---|---|---|---|---|---|")
    for card in ModelRegistry([shipped_models_dir()]).cards():
        pred = Predictor(card, device="cpu")
        if card.input_kind == "rgb":
            img = rng.integers(0, 255, (512, 512, 3)).astype(np.uint8)
        else:
            img = rng.integers(0, 255, (512, 512)).astype(np.uint8)
        if card.input_kind == "slices":
            vol = np.stack([img] * (card.in_channels + 2)).astype(np.float32)
            run = lambda: pred.predict_slices(vol, [card.in_channels // 2 + 1])  # noqa: E731
        else:
            run = lambda: pred.predict_image(img)  # noqa: E731
        run()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        size = card.weights_path.stat().st_size / 1e6
        metrics = card.headline_metric()  # never the split that chose the epoch (card.py)
        print(f"| {card.name} | {card.modality} | {card.network} | {size:.1f} | "
              f"{np.median(times):.2f} | {metrics} |")


if __name__ == "__main__":
    main()
