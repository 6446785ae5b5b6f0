"""Benchmark: sliding-window prediction on a 4096 × 4096 RGB image with tissue in ~30 % of it — our
`predict_tiled` (background skipped) against MONAI's `sliding_window_inference` as the reference, same network,
same 256 × 256 tiles, same 0.25 overlap, same Gaussian blending (sigma = 0.125 × tile), same batch of 8 tiles.

The network is an smp U-Net (resnet18 encoder) with *random weights, for timing only*: it is not a model and its
output means nothing; both methods run the very same weights. The tissue is a disk of real MoNuSeg H&E tiles
(../shared/data/histology/monuseg_breast, tiled) on white glass; synthetic H&E-like texture when that data is absent.

Each method runs in its own child process (one torch thread each, so a loaded machine affects both alike) and
reports wall time and peak resident memory above its baseline (image and network already loaded). Then:
- correctness of our blending: on a 1024 × 1024 crop, ours with background skipping *off* against MONAI
  (expected equal to float rounding), and on the full image, ours (skipping on) against MONAI on the tissue
  away from skipped tiles;
- targets: ours ≤ 0.5 × MONAI's time; ours' memory ≤ the stated bound (accumulators 4·H·W·(K+1) bytes +
  256 MB for a batch of tiles and the network's activations).

Sigma convention: both use exp(-d²/2σ²) per axis with σ = 0.125 × tile and d measured from the tile centre
(tile−1)/2; MONAI clamps weights at 1e-3 without rescaling, we divide by the maximum first (max 0.99976 for an
even tile) then floor at 1e-3 — a constant factor that cancels in the blend except where the floor applies.

    .venv/bin/python benchmarks/bench_sliding_window.py [--size 4096] [--tile 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MONUSEG = REPO.parent / "shared" / "data" / "histology" / "monuseg_breast" / "images"
TISSUE_FRACTION = 0.30


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_image(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """RGB uint8 (size, size, 3) and its tissue mask: a disk covering TISSUE_FRACTION of the area."""
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:size, :size]
    r = size * np.sqrt(TISSUE_FRACTION / np.pi)
    c = size * 0.42
    tissue = (yy - c) ** 2 + (xx - c) ** 2 <= r * r
    tiles = sorted(MONUSEG.glob("*.tif"))[:4] if MONUSEG.is_dir() else []
    if len(tiles) == 4:
        import tifffile

        t = [tifffile.imread(p)[..., :3] for p in tiles]
        mosaic = np.concatenate([np.concatenate(t[:2], 1), np.concatenate(t[2:], 1)], 0)
        reps = -(-size // mosaic.shape[0])
        texture = np.tile(mosaic, (reps, reps, 1))[:size, :size]
        source = f"real MoNuSeg tiles ({', '.join(p.stem for p in tiles)}) tiled"
    else:
        base = np.array([215, 150, 190], np.float32)
        nuclei = (rng.random((size, size)) < 0.04)[..., None] * np.array([-120, -80, -30], np.float32)
        texture = np.clip(base + rng.normal(0, 20, (size, size, 1)) + nuclei, 0, 255).astype(np.uint8)
        source = "synthetic H&E-like texture"
    image = np.clip(rng.normal(243, 3, (size, size, 3)), 0, 255).astype(np.uint8)
    image[tissue] = texture[tissue]
    return image, tissue, source


def make_card(tile: int):
    from napari_lesionseg.core.models.card import ModelCard

    return ModelCard(name="random-init-timing-only", modality="histology", encoder="resnet18", in_channels=3,
                     input_kind="rgb", fit="tile", patch_size=[tile, tile],
                     normalisation={"kind": "range", "max": 255.0})


def make_net(card):
    import torch

    from napari_lesionseg.core.models.build import build_network

    torch.manual_seed(0)
    return build_network(card).eval()  # random weights: timing only


def _counting():
    import torch

    class Counting(torch.nn.Module):
        """Counts the tiles the network is run on (both methods call the same wrapped network)."""

        def __init__(self, net):
            super().__init__()
            self.net, self.images = net, 0

        def forward(self, x):
            self.images += len(x)
            return self.net(x)

    return Counting


def child(method: str, image_path: str, out_path: str, tile: int, overlap: float, batch: int) -> None:
    import torch

    torch.set_num_threads(1)
    Counting = _counting()
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.tiles import predict_tiled

    image = np.load(image_path)  # in memory (not a memmap) for both methods, counted in the baseline
    card = make_card(tile)
    net = Counting(make_net(card))
    with torch.inference_mode():  # warm-up: the network's own working set for one batch is in the baseline
        net(torch.zeros(batch, 3, tile, tile))
    net.images = 0
    base = peak_rss_mb()
    t0 = time.perf_counter()
    if method in ("ours", "ours-noskip"):
        pred = Predictor(card, device="cpu", batch_size=batch, net=net)
        probs = predict_tiled(pred, image, overlap=overlap, skip_background=method == "ours")[0]
    else:
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0 / 2).sub_(1.0)  # = our 'range' norm.
        with torch.inference_mode():
            y = sliding_window_inference(x, roi_size=(tile, tile), sw_batch_size=batch,
                                         predictor=lambda t: torch.sigmoid(net(t)), overlap=overlap,
                                         mode="gaussian", sigma_scale=0.125, padding_mode="constant")
        probs = y[0, 0].numpy()
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    np.save(out_path, probs.astype(np.float32))
    print(json.dumps({"method": method, "seconds": seconds, "baseline_mb": base,
                      "peak_mb": peak, "extra_mb": peak - base, "tiles": net.images}))


def run_child(method, image_path, out_path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--image", image_path, "--out", out_path,
           "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=1024, help="side of the crop for the no-skip equality check")
    ap.add_argument("--child")
    ap.add_argument("--image")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.image, args.out, args.tile, args.overlap, args.batch)
        return

    from napari_lesionseg.core.inference.tiles import tile_starts

    tmp = Path(tempfile.mkdtemp(prefix="bench-sw-"))
    image, tissue, source = make_image(args.size)
    np.save(tmp / "image.npy", image)
    # the crop straddles the tissue's edge (glass and tissue)
    c0 = int(args.size * 0.42 + args.size * np.sqrt(TISSUE_FRACTION / np.pi) - args.crop / 2)
    c0 = max(0, min(args.size - args.crop, c0))
    crop = np.ascontiguousarray(image[c0:c0 + args.crop, args.size // 2 - args.crop // 2:][:, :args.crop])
    np.save(tmp / "crop.npy", crop)
    n_grid = len(tile_starts(args.size, args.tile, int(args.tile * (1 - args.overlap)))) ** 2
    print(f"image {args.size}×{args.size} RGB, tissue {tissue.mean():.0%} of the area ({source}); "
          f"{n_grid} tiles of {args.tile}² at overlap {args.overlap}; network: smp U-Net/resnet18, "
          "RANDOM WEIGHTS (timing only); 1 torch thread per method")

    # equality on a crop first (cheap), then the timed full-size runs
    a = run_child("ours-noskip", str(tmp / "crop.npy"), str(tmp / "crop_ours.npy"), args)
    b = run_child("monai", str(tmp / "crop.npy"), str(tmp / "crop_monai.npy"), args)
    d = np.abs(np.load(tmp / "crop_ours.npy") - np.load(tmp / "crop_monai.npy"))
    print(f"blending check on a {args.crop}² crop, background skipping off: max |ours − MONAI| = {d.max():.2e}, "
          f"mean {d.mean():.2e}  ({'OK' if d.max() < 1e-4 else 'DIFFERENT'})")

    ours = run_child("ours", str(tmp / "image.npy"), str(tmp / "ours.npy"), args)
    monai = run_child("monai", str(tmp / "image.npy"), str(tmp / "monai.npy"), args)
    po, pm = np.load(tmp / "ours.npy"), np.load(tmp / "monai.npy")
    # tissue at least one tile away from glass: every tile covering it touched tissue, so none was skipped
    from scipy import ndimage as ndi

    step = 16
    square = np.ones((3, 3), bool)
    inner = ndi.binary_erosion(tissue[::step, ::step], square, iterations=args.tile // step + 1)
    inner = np.repeat(np.repeat(inner, step, 0), step, 1)[:args.size, :args.size]
    d_t = np.abs(po - pm)[inner]
    glass_far = ~ndi.binary_dilation(tissue[::step, ::step], square, iterations=args.tile // step + 1)
    glass_far = np.repeat(np.repeat(glass_far, step, 0), step, 1)[:args.size, :args.size]
    far = po[glass_far]
    print(f"full image, skipping on: max |ours − MONAI| on tissue ≥ 1 tile from glass = "
          f"{d_t.max() if d_t.size else float('nan'):.2e} ({d_t.size} px); "
          f"ours on glass ≥ 1 tile from tissue = {far.max() if far.size else float('nan'):.1f} "
          f"({far.size} px, skipped)")

    k = 1
    bound = (4 * args.size * args.size * (k + 1) + args.size * args.size * 3) / 2**20 + 64
    ratio = ours["seconds"] / monai["seconds"]
    print()
    print(f"{'method':<34}{'tiles run':>10}{'time s':>9}{'s/tile':>8}{'peak RSS MB':>13}{'above baseline MB':>19}")
    for name, r in (("ours predict_tiled (skip glass)", ours), ("MONAI sliding_window_inference", monai)):
        print(f"{name:<34}{r['tiles']:>10}{r['seconds']:>9.1f}{r['seconds'] / r['tiles']:>8.3f}"
              f"{r['peak_mb']:>13.0f}{r['extra_mb']:>19.0f}")
    print()
    print(f"time ratio ours / MONAI = {ratio:.2f}  (target ≤ 0.50: {'PASS' if ratio <= 0.5 else 'MISS'})")
    print(f"memory above baseline (baseline = image + network after one warm-up batch): ours "
          f"{ours['extra_mb']:.0f} MB, MONAI {monai['extra_mb']:.0f} MB; stated bound for ours {bound:.0f} MB "
          f"= accumulators 4·H·W·(K+1) B + one H·W·3 B copy + 64 MB: "
          f"{'PASS' if ours['extra_mb'] <= bound else 'MISS'}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
