"""Segmenting a whole scan (what the CLI and batch jobs do): choose 2D, volume or sliding-window by the scan's
shape and the model's card, and check that the model fits the image before any work is done."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import replace_non_finite
from ..errors import LesionSegError
from .engine import Predictor


MODALITY_WORDS = {"mri": "MRI", "mammography": "mammography", "histology": "histology (H&E)",
                  "ultrasound": "ultrasound"}


class ModelMismatch(LesionSegError):
    """The model would run, but on a kind of image it never saw (other modality, colour vs grayscale)."""


@dataclass
class FitReport:
    """What `fit_report` found: `mismatches` refuse a run unless the user insists; `notes` are only said."""

    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fit_report(card, *, image_name: str, spatial_shape, rgb: bool, has_time: bool = False,
               modality: str | None = None, modality_guessed: bool = False,
               slide: bool = False) -> FitReport:
    """The one rule for "may this model run on this image?", shared by `lesionseg predict` and the Segment dock.

    Raises LesionSegError for what cannot work at all: several phases, a 2.5D model on a 2D image, a colour model
    on a grayscale volume, a whole-image (resize) model on a slide (read lazily, tile by tile: it would be loaded
    whole and shrunk to the model's input), an image under MIN_IMAGE_SIDE pixels. Returns as mismatches what runs but gives a
    meaningless result: a colour (H&E) model on a grayscale image, and a model of another modality when the file
    says what it is (DICOM Modality tag, NIfTI volume, slide). A modality guessed from a PNG/JPEG/TIFF's pixels
    (ultrasound vs mammography look alike; a colour photo is not always H&E), or a DICOM Modality outside the four
    (e.g. OT, a secondary capture), is only a note.
    """
    from ..checks import check_image_size

    n_spatial = len(spatial_shape)
    if has_time:
        raise LesionSegError(f"{image_name} has several phases (4D); segment one phase or a subtraction image.")
    if card.input_kind == "slices" and n_spatial != 3:
        raise LesionSegError(f"Model {card.name} reads neighbouring slices of a volume; {image_name} is 2D.")
    if card.input_kind == "rgb" and not rgb and n_spatial == 3:
        raise LesionSegError(f"Model {card.name} is for colour (H&E) images; {image_name} is a grayscale volume.")
    if slide and n_spatial == 2 and card.fit != "tile":
        raise LesionSegError(f"Model {card.name} resizes whole images; a slide needs a tiled model "
                             "(e.g. histology-nuclei).")
    check_image_size(spatial_shape, image_name, f"model {card.name}")
    report = FitReport()
    if card.input_kind == "rgb" and not rgb:
        report.mismatches.append(f"Model {card.name} is for colour (H&E) images; {image_name} is grayscale, so "
                                 "its result would mean nothing.")
    if modality and modality != card.modality:
        model_word = MODALITY_WORDS.get(card.modality, card.modality)
        image_word = MODALITY_WORDS.get(modality, modality)
        if modality_guessed or modality not in MODALITY_WORDS:  # a guess, or a DICOM "OT"/"CT" we do not know
            report.notes.append(f"{image_name} looks like {image_word} (guessed from the file); model {card.name} "
                                f"is for {model_word}.")
        elif not report.mismatches:  # a colour model on grayscale is said once
            report.mismatches.append(f"Model {card.name} was trained on {model_word}; {image_name} is "
                                     f"{image_word}, so its result would mean nothing.")
    return report


def check_fit(card, scan, force: bool = False) -> list[str]:
    """A clear message when a model cannot run on this scan (wrong channels, a 2.5D model on a 2D image…).

    A mismatch (`fit_report`) raises ModelMismatch unless `force`; returns what to tell the user (notes, and the
    mismatches when forced)."""
    report = fit_report(card, image_name=scan.name, spatial_shape=scan.spatial_shape, rgb=scan.rgb,
                        has_time="t" in scan.axes, modality=scan.modality,
                        modality_guessed=bool(scan.metadata.get("modality_guessed")), slide=scan.multiscale)
    if report.mismatches and not force:
        raise ModelMismatch(" ".join(report.mismatches))
    return report.mismatches + report.notes


def _checked_data(predictor: Predictor, scan, force: bool, say):
    """The scan's pixels once the model is known to fit (`check_fit`; its messages said): NaN/Inf replaced by
    background in an in-memory scan, the finest level of a slide left lazy."""
    for message in check_fit(predictor.card, scan, force=force):
        say(message)
    if scan.multiscale:
        return scan.data[0]
    data, warning = replace_non_finite(np.asarray(scan.data), scan.name)
    if warning:
        say(warning)
    return data


def predict_scan(predictor: Predictor, scan, progress=None, cancelled=None, force: bool = False,
                 notice=None) -> np.ndarray:
    """Probabilities for a whole scan, in the scan's spatial shape (multi-class: a leading class axis).

    force: run a model of another modality / colour model on grayscale anyway (see `fit_report`).
    notice(str): told about forced mismatches, notes, and NaN/Inf voxels treated as background.
    """
    data = _checked_data(predictor, scan, force, notice or (lambda message: None))
    spatial = [a for a in scan.axes if a in "zyx"]
    if len(spatial) == 3:
        return predictor.predict_volume(data, axis=0, progress=progress, cancelled=cancelled)
    overview = None
    if scan.multiscale:
        from .tiles import pick_overview

        overview = pick_overview(scan.data)
    return predictor.predict_image(data, progress=progress, cancelled=cancelled,
                                   spacing=tuple(scan.geometry.spacing[-2:]), overview=overview)


def predict_scan_slices(predictor: Predictor, scan, indices, axis: int = 0, stats=None, progress=None,
                        cancelled=None, force: bool = False, notice=None) -> tuple[np.ndarray, tuple]:
    """Some slices of a volume scan (the Segment dock's "Current slice"), checked and prepared as `predict_scan`
    does; all slices give `predict_scan`'s volume. Returns (probabilities (len(indices), [K,] H, W), the whole
    volume's normalisation statistics: pass them back so later slices are normalised alike)."""
    data = _checked_data(predictor, scan, force, notice or (lambda message: None))
    if data.ndim != 3:
        raise LesionSegError(f"{scan.name} is not a volume: segment it whole.")
    stats = stats if stats is not None else predictor.volume_stats(data)
    probs = predictor.predict_slices(data, list(indices), axis=axis, progress=progress, cancelled=cancelled,
                                     stats=stats)
    return probs, stats


def read_one_scan(src, series: str | None = None, notice=None):
    """The one scan a file or DICOM folder holds; with several series, the one `series` names (`io.pick_series`:
    its number, its description or a part of it, #N), else a clear error. Reader warnings go to `notice`."""
    from ..io import pick_series, read_scan

    scan = pick_series(read_scan(src), series, src)
    for message in scan.metadata.get("warnings", []) if notice else []:
        notice(message)
    return scan


def segment_file(predictor: Predictor, src, threshold: float | None = None, pre=None, progress=None,
                 series: str | None = None, force: bool = False, notice=None):
    """What `lesionseg predict` does to one file, kept in one place so `lesionseg evaluate` measures exactly it:
    read the scan (optionally minus a pre-contrast scan), check the model fits it, predict, threshold.
    Returns (scan, probs, mask)."""
    scan = read_one_scan(src, series, notice)
    if pre is not None:
        from ..io.dce import subtraction

        scan = subtraction(scan, read_one_scan(pre, series, notice))  # checks the two phases share one grid
    probs = predict_scan(predictor, scan, progress=progress, force=force, notice=notice)
    return scan, probs, mask_from_probs(probs, predictor.card, threshold)


def mask_from_probs(probs: np.ndarray, card, threshold: float | None = None) -> np.ndarray:
    from .threshold import apply_threshold

    t = card.threshold if threshold is None else threshold
    shape = probs.shape[1:] if card.multiclass else probs.shape
    out = np.zeros(shape, np.uint8)
    return apply_threshold(np.asarray(probs), t, out, multiclass=card.multiclass)
