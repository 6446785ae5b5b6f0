"""npe2 writers: a Labels layer as a mask, an Image layer (probabilities, subtraction…) as an image, both placed
with the geometry stored in the layer's metadata (the source affine and header for NIfTI)."""

from __future__ import annotations

import numpy as np

from ..core.errors import LesionSegError
from ..core.geometry import geometry_from_metadata


def _geometry(meta: dict, ndim: int):
    geom = geometry_from_metadata(meta.get("metadata") or {})
    if geom is None:
        from ..core.geometry import Geometry

        scale = tuple(float(s) for s in (meta.get("scale") or (1.0,) * ndim))
        geom = Geometry(spacing=scale[-ndim:] if len(scale) >= ndim else (1.0,) * ndim)
    return geom


def _protect_open_inputs(path: str) -> None:
    """File ▸ Save never lands on a file an open layer was read from (the scan, an expert mask…)."""
    import napari

    from .layer_utils import refuse_overwriting_open_inputs

    refuse_overwriting_open_inputs(path, napari.current_viewer())


def _data(data):
    return data[0] if isinstance(data, list) else data  # multiscale: write the full resolution


def write_labels(path: str, data, meta: dict) -> list[str]:
    from napari.utils.notifications import show_error

    from ..core.io import write_mask

    try:
        from .dicom_export import seg_options_from_metadata

        _protect_open_inputs(path)
        d = _data(data)
        seg = seg_options_from_metadata(meta.get("metadata"))
        return [str(write_mask(d, _geometry(meta, len(d.shape)), path, seg=seg))]
    except LesionSegError as e:
        show_error(str(e))
        return []


def write_image(path: str, data, meta: dict) -> list[str]:
    from napari.utils.notifications import show_error

    from ..core.io import write_probabilities
    from ..core.io.writers import write_image_array

    try:
        _protect_open_inputs(path)
        d = _data(data)
        if meta.get("rgb"):
            raise LesionSegError("Saving colour images is not supported here; save masks or probability maps.")
        a = np.asarray(d)
        geom = _geometry(meta, a.ndim)
        # A float image in [0, 1] is a probability map (PNG gets 0–255); anything else keeps its values.
        if np.issubdtype(a.dtype, np.floating) and a.size and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
            return [str(write_probabilities(a, geom, path))]
        return [str(write_image_array(a, geom, path))]
    except LesionSegError as e:
        show_error(str(e))
        return []
