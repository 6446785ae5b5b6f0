"""The one way a napari layer becomes the core's input: `scan_from_layer(layer) -> core.io.scan.Scan`.

The CLI reads a file into a `Scan` (`core.io.read_scan`); a dock hands the core the same `Scan`, built from the
layer, so both call the same core function (`core.inference.run.check_fit` / `predict_scan`,
`core.measure.measure_lesions`) on the same input: front end -> adapter -> core. Runs on the GUI thread (layers
must not be read from a worker); the Scan holds the layer's arrays, not copies.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import LesionSegError
from ..core.geometry import METADATA_KEY, default_geometry, geometry_from_metadata
from ..core.io.scan import Scan
from .layer_utils import layer_spacing  # the one rule for "is this layer's pixel size known?"


def _entry(layer) -> dict:
    meta = getattr(layer, "metadata", None)
    entry = meta.get(METADATA_KEY, {}) if isinstance(meta, dict) else {}
    return entry if isinstance(entry, dict) else {}


def layer_axes(layer) -> str:
    """Axis letters of a layer in napari order ('t', 'z', 'y', 'x', plus 'c' for RGB): the reader's, else from its
    number of dimensions (a 4D layer's first axis is time/phase)."""
    n = layer.ndim
    axes = str(_entry(layer).get("axes") or "").replace("c", "")
    if len(axes) != n:
        axes = "zyx"[-n:] if n <= 3 else "t" * (n - 3) + "zyx"
    return axes + ("c" if getattr(layer, "rgb", False) else "")


def layer_geometry_or_default(layer) -> "Geometry":  # noqa: F821 - core.geometry.Geometry
    """The Geometry this plugin's reader stored (with any pixel size the user stated since), else one from the
    layer's napari scale (a layer made in the console or by another plugin; a scale of all 1 is one pixel, not 1 mm,
    as in `layer_utils.layer_spacing`). Spatial axes only."""
    n = sum(a in "zyx" for a in layer_axes(layer))
    geometry = geometry_from_metadata(getattr(layer, "metadata", None), ndim=n)
    if geometry is not None:
        return geometry
    spacing, known = layer_spacing(layer, n)
    geometry = default_geometry(spacing, spacing)
    geometry.extra["spacing_known"] = known
    return geometry


def scan_from_layer(layer) -> Scan:
    """The `Scan` the CLI would have read for this layer: data (lazy levels for a slide), Geometry (spacing, source
    affine, source path), modality (and whether it was guessed), RGB, time axis, reader notes."""
    if layer is None:
        raise LesionSegError("Open an image first.")
    entry = _entry(layer)
    reader = dict(entry.get("reader") or {})
    geometry = layer_geometry_or_default(layer)
    source = entry.get("source_path")
    if source and not geometry.extra.get("source_path"):
        geometry = geometry.copy(extra={**geometry.extra, "source_path": str(source)})
    data = list(layer.data) if layer.multiscale else layer.data
    modality = entry.get("modality") or ""
    return Scan(data=data, geometry=geometry, modality=modality, name=layer.name, rgb=bool(layer.rgb),
                axes=layer_axes(layer), multiscale=bool(layer.multiscale),
                metadata={**reader, "modality_guessed": bool(reader.get("modality_guessed"))})


def scan_array(scan: Scan) -> np.ndarray:
    """The finest level of a scan as an array (a lazy slide level stays lazy)."""
    return scan.data[0] if scan.multiscale else scan.data
