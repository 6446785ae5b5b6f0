"""Benchmark: a whole 448 × 448 × 160 MRI volume on the CPU, and the live threshold on its probabilities.

1. Time per slice of `Predictor.predict_volume` (2.5D input: each slice with its two neighbours as channels,
   z-score normalisation, batches of 8, stacking, activation, reassembly) against the bare network forward pass
   (+ sigmoid) on the very same prepared batches. Target: within 10 %. Whole-volume engine and bare passes
   alternate (E B B E …) and the fastest of each is kept, since contention on a shared machine only adds time;
   `--paired` also compares batch by batch. The engine's own work is measured once more with the network
   replaced by a no-op, which a loaded machine hardly disturbs.
2. The threshold update: `apply_threshold(probs, t, out)` into an existing uint8 label volume against a bare
   `probs > t` on the same array. Target: within 3 ×.

The network is an smp U-Net (resnet18 encoder, 3 input channels) with *random weights, for timing only*.
The volume is Duke Breast_MRI_153 post1.nii.gz from ../shared/data when present, else a synthetic volume.

    .venv/bin/python benchmarks/bench_volume.py [--slices 160] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DUKE = REPO.parent / "shared" / "data" / "mri" / "duke_153" / "post1.nii.gz"


def load_volume(n_slices: int) -> tuple[np.ndarray, str]:
    if DUKE.exists():
        from napari_lesionseg.core.io import read_scan

        vol = np.asarray(read_scan(DUKE)[0].data)
        return vol[:n_slices], f"Duke post1.nii.gz {vol.shape} {vol.dtype}"
    rng = np.random.default_rng(0)
    vol = rng.normal(300, 40, (n_slices, 448, 448)).astype(np.float32)
    return vol, "synthetic (Duke data absent)"


def bare_pass(net, batches) -> float:
    total = 0.0
    with torch.inference_mode():
        for x in batches():
            t0 = time.perf_counter()
            torch.sigmoid(net(torch.from_numpy(x))).numpy()
            total += time.perf_counter() - t0
    return total


def timeit(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=160)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternated engine/bare whole-volume runs")
    ap.add_argument("--paired", action="store_true", help="also compare batch by batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.threshold import apply_threshold
    from napari_lesionseg.core.models.build import build_network
    from napari_lesionseg.core.models.card import ModelCard
    from napari_lesionseg.core.preprocess import normalise, slices_input

    vol, source = load_volume(args.slices)
    card = ModelCard(name="random-init-timing-only", modality="mri", encoder="resnet18", in_channels=3,
                     input_kind="slices", fit="tile", patch_size=[448, 448], normalisation={"kind": "zscore"})
    torch.manual_seed(0)
    net = build_network(card).eval()  # random weights: timing only
    pred = Predictor(card, device="cpu", batch_size=args.batch, net=net)
    stats = pred.volume_stats(vol)
    n = vol.shape[0]

    def batches():  # the engine's own inputs, prepared outside the timed forward
        for s in range(0, n, args.batch):
            yield np.stack([normalise(slices_input(vol, i, 1), card.normalisation, stats)
                            for i in range(s, min(s + args.batch, n))])

    print(f"volume {source}, {n} slices of {vol.shape[1]}×{vol.shape[2]}; smp U-Net/resnet18, 3 channels (2.5D), "
          f"RANDOM WEIGHTS (timing only); batch {args.batch}; {args.threads} torch thread(s)")
    with torch.inference_mode():  # warm-up with a full batch (first-touch allocation of the activations)
        net(torch.from_numpy(next(batches())))
        net(torch.from_numpy(next(batches())))
    # (a) optional: paired, batch by batch (engine then bare, bare then engine, alternately)
    eng_pairs = bare_pairs = None
    if args.paired:
        eng_pairs = bare_pairs = 0.0
        with torch.inference_mode():
            for b, x in enumerate(batches()):
                idx = list(range(b * args.batch, b * args.batch + len(x)))
                for who in (("engine", "bare") if b % 2 == 0 else ("bare", "engine")):
                    t0 = time.perf_counter()
                    if who == "engine":
                        pred.predict_slices(vol, idx, stats=stats)
                        eng_pairs += time.perf_counter() - t0
                    else:
                        torch.sigmoid(net(torch.from_numpy(x))).numpy()
                        bare_pairs += time.perf_counter() - t0
    # (b) the whole-volume call a user makes (statistics, all batches, reassembly) and a bare pass, alternated
    # engine, bare, bare, engine…; the fastest of each is kept (contention only ever adds time)
    engines, bares = [], []
    for r in range(args.rounds):
        for who in (("engine", "bare") if r % 2 == 0 else ("bare", "engine")):
            if who == "engine":
                t0 = time.perf_counter()
                probs = pred.predict_volume(vol)
                engines.append(time.perf_counter() - t0)
            else:
                bares.append(bare_pass(net, batches))
    engine, bare = min(engines), min(bares)
    assert probs.shape == vol.shape

    # (c) the engine's own work with the network replaced by a no-op (slicing, 2.5D stacking, normalisation,
    # activation, reassembly): small against the forward pass, and hardly affected by the machine's load
    class NoOp(torch.nn.Module):
        def forward(self, x):
            return x[:, :1]

    noop = Predictor(card, device="cpu", batch_size=args.batch, net=NoOp())
    overhead = min(timeit(lambda: noop.predict_volume(vol), repeat=3), 1e9)

    out = np.zeros(probs.shape, np.uint8)
    t_bare = timeit(lambda: probs > 0.5)
    t_apply = timeit(lambda: apply_threshold(probs, 0.5, out))
    assert np.array_equal(out, probs >= 0.5)
    t_cast = timeit(lambda: np.greater_equal(probs, 0.5, out=out, casting="unsafe"))  # before the fix

    rows = [
        ("predict_volume, s/slice", engine / n, bare / n, 1.10,
         f"fastest of {args.rounds} alternated runs each; all engine "
         f"{'/'.join(f'{t / n:.3f}' for t in engines)}, bare {'/'.join(f'{t / n:.3f}' for t in bares)}"),
        ("engine-only work (no-op net), s/slice", overhead / n, bare / n, 0.10,
         "ratio = fraction of the bare forward spent outside the network"),
        ("threshold update, ms", t_apply * 1e3, t_bare * 1e3, 3.0,
         f"uint8 out via casting (old code): {t_cast * 1e3:.0f} ms"),
    ]
    if args.paired:
        rows.insert(0, ("predict_slices paired, s/slice", eng_pairs / n, bare_pairs / n, 1.10,
                        "engine and bare alternate batch by batch"))
    print()
    print(f"{'measure':<40}{'engine':>10}{'bare':>10}{'ratio':>8}{'target':>8}  result  note")
    for name, ours, ref, target, note in rows:
        r = ours / ref
        print(f"{name:<40}{ours:>10.3f}{ref:>10.3f}{r:>8.2f}{'≤' + format(target, '.2f'):>8}  "
              f"{'PASS' if r <= target else 'MISS'}    {note}")


if __name__ == "__main__":
    main()
