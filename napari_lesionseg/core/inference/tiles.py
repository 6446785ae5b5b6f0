"""Sliding-window prediction for images larger than a model's patch: overlap, Gaussian blending, batched tiles,
and background (glass, air outside the breast) skipped — which is where most of the speed comes from.

The image may be a numpy, dask or zarr array; only one batch of tiles is read at a time. Results for very large
images go to a zarr array on disk, so a whole slide never has to fit in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..errors import Cancelled, LesionSegError
from ..preprocess import normalisation_stats, to_channels, to_model_input

MAX_IN_MEMORY_PIXELS = 64_000_000


def gaussian_importance(size: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """Weights that fall off towards a tile's edge, so overlapping tiles blend without seams."""
    h, w = size
    yy = np.arange(h) - (h - 1) / 2
    xx = np.arange(w) - (w - 1) / 2
    g = np.exp(-(yy[:, None] ** 2) / (2 * (sigma_scale * h) ** 2) - (xx[None] ** 2) / (2 * (sigma_scale * w) ** 2))
    g = g / g.max()
    return np.maximum(g, 1e-3).astype(np.float32)


def tile_starts(length: int, patch: int, step: int) -> list[int]:
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch, step))
    starts.append(length - patch)
    return starts


def thumbnail(image, max_side: int = 1024, overview=None) -> tuple[np.ndarray, float]:
    """A small copy of the image and its step in image pixels. `overview` (a coarse pyramid level of a slide)
    is used when given: striding a lazy full-resolution level would decode every one of its tiles."""
    h, w = image.shape[:2]
    if overview is not None:
        oh = overview.shape[0]
        step = max(1, int(np.ceil(max(overview.shape[:2]) / (2 * max_side))))
        thumb = np.asarray(overview[::step, ::step])
        return thumb, h / oh * step
    stride = max(1, int(np.ceil(max(h, w) / max_side)))
    return np.asarray(image[::stride, ::stride]), stride


def pick_overview(levels, min_side: int = 1024):
    """The coarsest pyramid level whose longer side is still at least `min_side` (else the finest)."""
    for level in reversed(list(levels)):
        if max(level.shape[:2]) >= min_side:
            return level
    return levels[0]


def foreground_mask(thumb: np.ndarray, rgb: bool) -> np.ndarray:
    """Where there is tissue: not glass (bright, unsaturated) for H&E; above an Otsu level for gray images."""
    from skimage.filters import threshold_otsu

    t = thumb.astype(np.float32)
    if rgb:
        t = t[..., :3]
        mx, mn = t.max(axis=-1), t.min(axis=-1)
        sat = (mx - mn) / np.maximum(mx, 1e-6)
        scale = 255.0 if t.max() > 1.5 else 1.0
        return (sat > 0.07) & (mx < 0.92 * scale) | (mx < 0.5 * scale)
    if t.max() <= t.min():
        return np.zeros(t.shape, bool)
    level = threshold_otsu(t)
    return t > min(level, t.min() + 0.1 * (t.max() - t.min()))


def plan_tiles(image, card, overlap: float = 0.25, skip_background: bool = True, min_foreground: float = 0.01,
               overview=None):
    """Which tiles to run: ([(y, x) corners], (tile h, tile w), normalisation stats from a thumbnail).

    A tile is skipped when under `min_foreground` of it is tissue on the thumbnail (glass, air)."""
    h, w = image.shape[:2]
    ph, pw = (min(card.patch_size[0], h), min(card.patch_size[1], w))
    rgb = image.ndim == 3
    thumb, stride = thumbnail(image, overview=overview)
    stats = None
    if "clahe" not in card.preprocessing:
        stats = normalisation_stats(to_channels(thumb, "rgb" if card.input_kind == "rgb" else "gray"),
                                    card.normalisation)
    fg = foreground_mask(thumb, rgb) if skip_background else None
    sy = max(1, int(ph * (1 - overlap)))
    sx = max(1, int(pw * (1 - overlap)))
    tiles = []
    for y in tile_starts(h, ph, sy):
        for x in tile_starts(w, pw, sx):
            if fg is not None:
                f = fg[int(y // stride):int(np.ceil((y + ph) / stride)),
                       int(x // stride):int(np.ceil((x + pw) / stride))]
                if f.size and f.mean() < min_foreground:
                    continue
            tiles.append((y, x))
    return tiles, (ph, pw), stats


def predict_tiled(predictor, image, overlap: float = 0.25, progress=None, cancelled=None, spacing=None,
                  skip_background: bool = True, min_foreground: float = 0.01, out_store=None,
                  overview=None) -> np.ndarray:
    """(H, W[, 3]) image → (K, H, W) probabilities by sliding window. `overview`: a coarse level of the same
    slide, for finding tissue and normalisation statistics without reading the full-resolution level."""
    card = predictor.card
    if image.ndim not in (2, 3):
        raise LesionSegError(f"Expected a 2D image, got shape {image.shape}.")
    h, w = image.shape[:2]
    tiles, (ph, pw), stats = plan_tiles(image, card, overlap, skip_background, min_foreground, overview)

    k = card.n_outputs
    scratch = out_store is None and h * w * (k + 1) > MAX_IN_MEMORY_PIXELS
    if scratch:
        out_store = scratch_folder()
    if out_store is not None:
        import zarr

        acc = zarr.open(f"{out_store}/acc.zarr", mode="w", shape=(k, h, w), chunks=(k, 1024, 1024), dtype="f4")
        wsum = zarr.open(f"{out_store}/w.zarr", mode="w", shape=(h, w), chunks=(1024, 1024), dtype="f4")
        if scratch:
            remove_with(acc, out_store)
    else:
        acc = np.zeros((k, h, w), np.float32)
        wsum = np.zeros((h, w), np.float32)
    g = gaussian_importance((ph, pw))
    bs = predictor.batch_size
    for start in range(0, len(tiles), bs):
        if cancelled is not None and cancelled():
            raise Cancelled()
        group = tiles[start:start + bs]
        batch = np.stack([to_model_input(np.asarray(image[y:y + ph, x:x + pw]), card, stats) for y, x in group])
        probs = predictor.forward(batch)
        for (y, x), p in zip(group, probs):
            acc[:, y:y + ph, x:x + pw] = acc[:, y:y + ph, x:x + pw] + p * g
            wsum[y:y + ph, x:x + pw] = wsum[y:y + ph, x:x + pw] + g
        if progress:
            progress(min(start + bs, len(tiles)), len(tiles))
    if out_store is not None:
        return _normalise_zarr(acc, wsum, card.multiclass)
    covered = wsum > 0
    acc[:, covered] /= wsum[covered]
    if card.multiclass:
        acc[0, ~covered] = 1.0  # skipped background is background
    return acc


SCRATCH_PREFIX = "lesionseg-probs-"


def scratch_folder() -> str:
    """A new temporary folder for one slide's probabilities, named after this process so that a later run can
    delete it should this one be killed (out of memory, SIGKILL) before `remove_with` runs."""
    sweep_orphaned_scratch()
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def sweep_orphaned_scratch() -> list[str]:
    """Delete the scratch folders of lesionseg processes that no longer run (POSIX only: there a signal 0 only
    asks whether the process exists). Folders of running processes, of other users, and unnamed ones are kept."""
    if os.name != "posix":
        return []
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_with(array, folder: str) -> None:
    """Delete the scratch `folder` once `array` (the probabilities it holds) is freed, or at exit at the latest.

    A slide's map can take gigabytes: a cohort run through `lesionseg predict` must not leave one per slide in the
    temporary folder, and the dock's lazy result keeps its folder exactly as long as it shows it."""
    weakref.finalize(array, shutil.rmtree, folder, True)


def _normalise_zarr(acc, wsum, multiclass: bool):
    h, w = wsum.shape
    for y in range(0, h, 1024):
        for x in range(0, w, 1024):
            ws = wsum[y:y + 1024, x:x + 1024]
            a = acc[:, y:y + 1024, x:x + 1024]
            cov = ws > 0
            a[:, cov] /= ws[cov]
            if multiclass:
                a[0, ~cov] = 1.0
            acc[:, y:y + 1024, x:x + 1024] = a
    return acc
