"""Turning a raw image into what a model card expects: channels, CLAHE, intensity normalisation.

Training and inference both call `to_model_input`, so a model always sees images prepared the same way.
"""

from __future__ import annotations

import numpy as np

from .errors import LesionSegError


def as_float_image(image: np.ndarray) -> np.ndarray:
    """Float32 copy with NaN/inf rejected: a model silently fed NaNs returns garbage."""
    a = np.asarray(image)
    if a.size == 0 or 0 in a.shape:
        raise LesionSegError(f"The image is empty (shape {a.shape}).")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise LesionSegError("The image contains NaN or infinite values; fix or mask them before segmenting.")
    return a


def is_rgb(image: np.ndarray) -> bool:
    return image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4


def to_channels(image: np.ndarray, kind: str) -> np.ndarray:
    """(H, W) or (H, W, 3) → (C, H, W) float32 for 'gray' (C=1) or 'rgb' (C=3)."""
    a = as_float_image(image)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if kind == "gray":
        if a.ndim == 3 and a.shape[-1] == 3:
            a = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if a.ndim != 2:
            raise LesionSegError(f"Expected a 2D grayscale or RGB image, got shape {image.shape}.")
        return a[None]
    if kind == "rgb":
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise LesionSegError(f"This model needs an RGB image; got shape {image.shape}.")
        return np.moveaxis(a, -1, 0)
    raise LesionSegError(f"Unknown input kind {kind!r}.")


def clahe(channels: np.ndarray, clip_limit: float = 0.01) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation per channel (helps ultrasound), output in [0, 1]."""
    from skimage.exposure import equalize_adapthist

    out = np.empty_like(channels, dtype=np.float32)
    for i, c in enumerate(channels):
        lo, hi = float(c.min()), float(c.max())
        scaled = (c - lo) / (hi - lo) if hi > lo else np.zeros_like(c)
        out[i] = equalize_adapthist(scaled, clip_limit=clip_limit).astype(np.float32)
    return out


def normalisation_stats(channels: np.ndarray, spec: dict) -> tuple[float, float]:
    """The two numbers a normalisation needs, computed once (on a thumbnail for whole slides)."""
    kind = spec.get("kind", "percentile")
    if kind == "percentile":
        lo, hi = np.percentile(channels, [spec.get("low", 0.5), spec.get("high", 99.5)])
        return float(lo), float(hi if hi > lo else lo + 1.0)
    if kind == "zscore":
        s = float(channels.std())
        return float(channels.mean()), (s if s > 0 else 1.0)
    if kind in ("range", "none"):
        return 0.0, float(spec.get("max", 255.0))
    raise LesionSegError(f"Unknown normalisation {kind!r}.")


def normalise(channels: np.ndarray, spec: dict, stats: tuple[float, float] | None = None) -> np.ndarray:
    kind = spec.get("kind", "percentile")
    a, b = stats if stats is not None else normalisation_stats(channels, spec)
    if kind == "percentile":
        return np.clip((channels - a) / (b - a), 0, 1).astype(np.float32) * 2 - 1
    if kind == "zscore":
        return ((channels - a) / b).astype(np.float32)
    if kind == "range":
        return (channels / b * 2 - 1).astype(np.float32)
    return channels.astype(np.float32)


def to_model_input(image: np.ndarray, card, stats: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W[, 3]) image → (C, H, W) float32 as the card's model was trained on.

    `stats` fixes the normalisation (used for tiles of a slide, whose statistics come from a thumbnail).
    """
    ch = to_channels(image, "rgb" if card.input_kind == "rgb" else "gray")
    if "clahe" in card.preprocessing:
        ch = clahe(ch)
    return normalise(ch, card.normalisation, stats)


def slices_input(volume: np.ndarray, index: int, context: int, axis: int = 0) -> np.ndarray:
    """2.5D input: the slice `index` with `context` neighbours each side as channels (edges repeated)."""
    n = volume.shape[axis]
    idx = np.clip(np.arange(index - context, index + context + 1), 0, n - 1)
    return np.stack([np.take(volume, int(i), axis=axis) for i in idx]).astype(np.float32)
