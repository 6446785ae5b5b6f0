"""Segmenting a whole scan (what the CLI and batch jobs do): choose 2D, volume or sliding-window by the scan's
shape and the model's card, and check that the model fits the image before any work is done."""

from __future__ import annotations

import numpy as np

from ..errors import LesionSegError
from .engine import Predictor


def check_fit(card, scan) -> None:
    """A clear message when a model cannot run on this scan (wrong channels, a 2.5D model on a 2D image…)."""
    spatial = [a for a in scan.axes if a in "zyx"]
    if "t" in scan.axes:
        raise LesionSegError(f"{scan.name} has several phases (4D); segment one phase or a subtraction image.")
    if card.input_kind == "slices" and len(spatial) != 3:
        raise LesionSegError(f"Model {card.name} reads neighbouring slices of a volume; {scan.name} is 2D.")
    if card.input_kind == "rgb" and not scan.rgb and len(spatial) == 3:
        raise LesionSegError(f"Model {card.name} is for colour (H&E) images; {scan.name} is a grayscale volume.")


def predict_scan(predictor: Predictor, scan, progress=None, cancelled=None) -> np.ndarray:
    """Probabilities for a whole scan, in the scan's spatial shape (multi-class: a leading class axis)."""
    check_fit(predictor.card, scan)
    data = scan.data[0] if scan.multiscale else scan.data
    spatial = [a for a in scan.axes if a in "zyx"]
    if len(spatial) == 3:
        return predictor.predict_volume(np.asarray(data), axis=0, progress=progress, cancelled=cancelled)
    overview = None
    if scan.multiscale:
        from .tiles import pick_overview

        overview = pick_overview(scan.data)
    return predictor.predict_image(data if scan.multiscale else np.asarray(data), progress=progress,
                                   cancelled=cancelled, spacing=tuple(scan.geometry.spacing[-2:]),
                                   overview=overview)


def mask_from_probs(probs: np.ndarray, card, threshold: float | None = None) -> np.ndarray:
    from .threshold import apply_threshold

    t = card.threshold if threshold is None else threshold
    shape = probs.shape[1:] if card.multiclass else probs.shape
    out = np.zeros(shape, np.uint8)
    return apply_threshold(np.asarray(probs), t, out, multiclass=card.multiclass)
