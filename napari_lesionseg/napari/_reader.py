"""npe2 reader: every scan format of `napari_lesionseg.core.io`, placed with `scale` = the scan's spacing.

Contract: `get_reader(path)` returns None for paths this plugin does not handle (so other plugins get their turn);
for files it claims, a bad file becomes a napari error notification with a clear message and no layer.
"""

from __future__ import annotations

import os

from ..core.errors import LesionSegError


def _one_path(path):
    if isinstance(path, (list, tuple)):
        return path if len(path) else None
    return [path]


def get_reader(path):
    from ..core.io import can_read

    paths = _one_path(path)
    if not paths:
        return None
    for p in paths:
        if not isinstance(p, (str, os.PathLike)) or not can_read(p):
            return None
    return read_layers


def scan_layer_data(scan) -> tuple:
    """(data, kwargs, 'image' or 'labels') for one Scan; a saved mask (`*_mask*`, few whole values) and a DICOM SEG
    come back as 'labels'."""
    from ..core.io.scan import mask_labels

    labels = mask_labels(scan) if scan.layer_type == "image" else None
    if labels is not None:
        kw = scan.layer_kwargs()
        return (labels, {k: kw[k] for k in ("name", "scale", "metadata")}, "labels")
    return (scan.data, scan.layer_kwargs(), scan.layer_type)


def read_layers(path) -> list:
    from napari.utils.notifications import show_error, show_warning

    from ..core.io import read_scan

    out = []
    for p in _one_path(path) or []:
        try:
            scans = read_scan(p)
        except LesionSegError as e:
            show_error(str(e))
            continue
        except MemoryError:
            show_error(f"{os.path.basename(str(p))} is too large to open in memory.")
            continue
        for scan in scans:
            for w in scan.metadata.get("warnings", []):
                show_warning(w)
            out.append(scan_layer_data(scan))
    # napari's sentinel for "handled, nothing to add": stops napari from raising its own (less clear) error.
    return out or [(None,)]
