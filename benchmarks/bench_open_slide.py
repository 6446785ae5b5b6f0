"""Benchmark: open a generated 40,000 × 40,000 RGB pyramidal TIFF in a real napari viewer.

Reports peak resident memory (must stay under 1.5 GB: the slide itself is 4.8 GB uncompressed) and the time from
`viewer.open` to the first rendered view. The slide is generated tile by tile (JPEG tiles, pyramid down to
< 1024 px) in a temporary folder that is deleted afterwards. Generation and viewing each run in a fresh process so
their peaks are measured separately.

    xvfb-run -a .venv/bin/python benchmarks/bench_open_slide.py [--size 40000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

LIMIT_GB = 1.5


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def generate(path: str, size: int, tile: int = 512) -> dict:
    import numpy as np

    from napari_lesionseg.core.io import write_pyramidal_tiff

    rng = np.random.default_rng(0)
    # A bank of H&E-coloured textured tiles; each output tile picks one by position (cheap, deterministic).
    yy, xx = np.mgrid[:tile, :tile]
    bank = []
    for i in range(16):
        nuclei = (np.sin(xx / (5 + i) + i) * np.cos(yy / (7 + i)) > 0.6)
        base = np.array([230, 190, 215], np.float32) - rng.normal(0, 6, (tile, tile, 1)).astype(np.float32)
        tissue = np.where(nuclei[..., None], np.array([90, 60, 150], np.float32), base)
        bank.append(np.clip(tissue, 0, 255).astype(np.uint8))
    background = np.full((tile, tile, 3), 242, np.uint8)

    def region(factor, y, x, h, w):
        # Tissue is a disk in the middle of the slide; outside it, glass.
        ty, tx = y // tile, x // tile
        corners = [((cy_ * factor) / size - 0.5) ** 2 + ((cx_ * factor) / size - 0.5) ** 2 < 0.16
                   for cy_ in (y, y + h) for cx_ in (x, x + w)]
        if all(corners):  # the disk is convex: a tile with all four corners inside is all tissue
            return bank[(ty * 7 + tx * 3) % 16][:h, :w]
        cy = ((y + yy[:h, :w]) * factor) / size - 0.5
        cx = ((x + xx[:h, :w]) * factor) / size - 0.5
        inside = (cx * cx + cy * cy) < 0.16
        if not inside.any():
            return background[:h, :w]
        return np.where(inside[..., None], bank[(ty * 7 + tx * 3) % 16][:h, :w], background[:h, :w])

    t0 = time.perf_counter()
    write_pyramidal_tiff(path, (size, size, 3), np.uint8, region, spacing=(0.00025, 0.00025), tile=tile,
                         compression="jpeg")
    return {"seconds": time.perf_counter() - t0, "peak_rss_gb": peak_rss_gb(), "file_gb": os.path.getsize(path) / 1e9}


def view(path: str) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    QApplication.processEvents()
    rss_before = peak_rss_gb()
    t0 = time.perf_counter()
    layers = viewer.open(path, plugin="napari-lesionseg")
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)  # forces a full render of the visible tiles
    t_first = time.perf_counter() - t0
    layer = layers[0]
    level_first = int(layer.data_level)
    # Zoom to full resolution in the middle and draw again (reads level-0 tiles only).
    h, w = layer.data[0].shape[:2]
    sy, sx = layer.scale
    viewer.camera.center = (h * sy / 2, w * sx / 2)
    viewer.camera.zoom = viewer.camera.zoom * (max(h, w) / 1000)
    t1 = time.perf_counter()
    shot2 = viewer.screenshot(canvas_only=True, flash=False)
    t_zoom = time.perf_counter() - t1
    level_zoomed = int(layer.data_level)
    out = {
        "levels": [tuple(int(v) for v in lv.shape) for lv in layer.data],
        "multiscale": bool(layer.multiscale),
        "data_level_shown": level_first,
        "seconds_to_first_view": t_first,
        "seconds_zoomed_view": t_zoom,
        "data_level_zoomed": level_zoomed,
        "peak_rss_gb_before_open": rss_before,
        "peak_rss_gb": peak_rss_gb(),
        "first_view_nonblank": bool(shot[..., :3].std() > 1),
        "zoomed_view_nonblank": bool(shot2[..., :3].std() > 1),
    }
    viewer.close()
    return out


def _child(role: str, path: str, size: int) -> dict:
    cmd = [sys.executable, __file__, "--role", role, "--path", path, "--size", str(size)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"{role} failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40000)
    ap.add_argument("--role", choices=["generate", "view"])
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.role == "generate":
        print(json.dumps(generate(args.path, args.size)))
        return 0
    if args.role == "view":
        print(json.dumps(view(args.path)))
        return 0
    if not os.environ.get("DISPLAY"):
        print("bench_open_slide: needs a display; run under xvfb-run -a", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="lesionseg-bench-")
    try:
        path = os.path.join(tmp, "slide.tif")
        gen = _child("generate", path, args.size)
        v = _child("view", path, args.size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = v["peak_rss_gb"] < LIMIT_GB and v["multiscale"] and v["first_view_nonblank"]
    print(f"bench_open_slide: {args.size:,} x {args.size:,} RGB pyramidal TIFF ({len(v['levels'])} levels, "
          f"{gen['file_gb']:.2f} GB on disk, {args.size**2 * 3 / 1e9:.1f} GB uncompressed)")
    print(f"{'step':<34}{'seconds':>10}{'peak RSS GB':>14}")
    print(f"{'generate (tile by tile)':<34}{gen['seconds']:>10.1f}{gen['peak_rss_gb']:>14.2f}")
    print(f"{'napari viewer started':<34}{'':>10}{v['peak_rss_gb_before_open']:>14.2f}")
    print(f"{'open + first view (level ' + str(v['data_level_shown']) + ')':<34}"
          f"{v['seconds_to_first_view']:>10.2f}{v['peak_rss_gb']:>14.2f}")
    print(f"{'zoom in, redraw (level ' + str(v['data_level_zoomed']) + ')':<34}{v['seconds_zoomed_view']:>10.2f}{'':>14}")
    print(f"limit {LIMIT_GB} GB peak RSS: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
