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


def read_one_scan(src, series: str | None = None):
    """The one scan a file or DICOM folder holds; with several series, the one `series` names (its number or a
    part of its description), else a clear error."""
    from ..io import read_scan

    scans = read_scan(src)
    if series is not None:
        wanted = str(series).strip().lower()
        chosen = [s for s in scans if s.name.lower() == wanted
                  or str(s.metadata.get("series_number", "")).strip() == wanted]  # an exact number or name first
        chosen = chosen or [s for s in scans if wanted in s.name.lower()]
        if len(chosen) != 1:
            names = ", ".join(s.name for s in scans)
            raise LesionSegError(f"{src}: {'no' if not chosen else 'more than one'} series matches {series!r} "
                                 f"(it holds: {names}).")
        return chosen[0]
    if len(scans) > 1:
        raise LesionSegError(f"{src} holds {len(scans)} series; give one series folder or file.")
    return scans[0]


def segment_file(predictor: Predictor, src, threshold: float | None = None, pre=None, progress=None,
                 series: str | None = None):
    """What `lesionseg predict` does to one file, kept in one place so `lesionseg evaluate` measures exactly it:
    read the scan (optionally minus a pre-contrast scan), predict, threshold. Returns (scan, probs, mask)."""
    scan = read_one_scan(src, series)
    if pre is not None:
        from ..io.dce import subtraction

        scan = subtraction(scan, read_one_scan(pre, series))  # checks the two phases share one grid
    probs = predict_scan(predictor, scan, progress=progress)
    return scan, probs, mask_from_probs(probs, predictor.card, threshold)


def mask_from_probs(probs: np.ndarray, card, threshold: float | None = None) -> np.ndarray:
    from .threshold import apply_threshold

    t = card.threshold if threshold is None else threshold
    shape = probs.shape[1:] if card.multiclass else probs.shape
    out = np.zeros(shape, np.uint8)
    return apply_threshold(np.asarray(probs), t, out, multiclass=card.multiclass)
