"""Reading the scans a command is given, the same way in every subcommand: `--series` for a DICOM folder that
holds several series, `--spacing` for files that do not state their pixel size, and the reader's warnings printed
(a NaN-holding volume, a corrupt file left out of a folder, an unknown pixel size)."""

from __future__ import annotations

import sys
from pathlib import Path

SERIES_HELP = ("which series to use when a DICOM folder holds several: its SeriesNumber, its description (or a "
               "unique part of it), or #N for the N-th listed; inputs holding one series ignore it")
SPACING_HELP = ("pixel size in mm for files that do not state it (PNG, JPEG…): one value, or one per axis; "
                "without it sizes are reported in pixels")


def add_series_option(parser) -> None:
    parser.add_argument("--series", help=SERIES_HELP)


GATE_HELP = ("--gate lets the model's image classifier (e.g. ultrasound-class) empty the mask of an image it calls "
             "normal; --no-gate keeps every mask. Default: the model card's (off for ultrasound-lesion: held out, "
             "it emptied more real lesions than it cleaned normal images). Its class probabilities are reported "
             "either way")


def add_gate_option(parser) -> None:
    import argparse

    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=None, help=GATE_HELP)


def add_flips_option(parser) -> None:
    parser.add_argument("--no-flips", action="store_true",
                        help="one network pass per image or window instead of the model's test-time flips (its "
                             "card's `tta`): faster by their number (3x for histology-nuclei), Dice slightly below "
                             "the card's")


def add_spacing_option(parser) -> None:
    parser.add_argument("--spacing", type=float, nargs="+", help=SPACING_HELP)


def warn(message: str) -> None:
    print(f"lesionseg: warning: {message}", file=sys.stderr)


def spacing_value(values) -> float | tuple[float, ...] | None:
    """--spacing's list as read_scan wants it: one number, a tuple per axis, or None; refuses sizes <= 0."""
    from ..core.errors import LesionSegError

    if not values:
        return None
    if any(not v > 0 for v in values):
        raise LesionSegError(f"--spacing must be positive millimetres (got {' '.join(map(str, values))}).")
    return float(values[0]) if len(values) == 1 else tuple(float(v) for v in values)


def read_input(path, *, series: str | None = None, spacing=None, shown: set | None = None):
    """The one Scan a command works on, its warnings printed to stderr.

    series: the --series choice, used when the file or folder holds several series.
    spacing: --spacing (list of floats) or a value; ignored, with a warning, for NIfTI (which states its own).
    """
    from ..core.io import pick_series, read_scan
    from ..core.io.nifti import is_nifti

    sp = spacing_value(spacing) if isinstance(spacing, (list, tuple)) else spacing
    if sp is not None and is_nifti(path):
        warn(f"{Path(path).name} states its own voxel size; --spacing is ignored for it.")
        sp = None
    scans = read_scan(path, spacing=sp)
    scan = pick_series(scans, series if len(scans) > 1 else None, path)
    for message in scan.metadata.get("warnings", []):
        if shown is None or message not in shown:
            warn(message)
            if shown is not None:
                shown.add(message)
    return scan
