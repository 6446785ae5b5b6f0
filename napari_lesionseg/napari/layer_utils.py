"""Helpers for layers derived from a scan layer (masks, probabilities, subtraction images).

`derived_layer_kwargs(source_layer, name)` gives the keyword arguments that make a new layer sit exactly on
its source: same scale and translate for the trailing spatial axes, and the source's `lesionseg` metadata
(the Geometry with the file's affine and header) copied, so saving the new layer as NIfTI reproduces the
source's affine. napari's own `affine` is not used (readers place layers with `scale` only).
"""

from __future__ import annotations

import copy

from ..core.geometry import METADATA_KEY, geometry_from_metadata


def derived_layer_kwargs(source_layer, name: str, ndim: int | None = None) -> dict:
    """kwargs for `viewer.add_labels(data, **kw)` / `add_image` of a layer derived from `source_layer`.

    ndim: number of axes of the new data when it differs from the source layer's (e.g. a 3D mask for one phase of
    a 4D scan); the trailing `ndim` entries of scale/translate are kept. RGB channels are not counted by napari.
    """
    scale = tuple(float(s) for s in source_layer.scale)
    translate = tuple(float(t) for t in source_layer.translate)
    if ndim is not None and ndim != len(scale):
        if ndim > len(scale):
            scale = (1.0,) * (ndim - len(scale)) + scale
            translate = (0.0,) * (ndim - len(translate)) + translate
        else:
            scale, translate = scale[-ndim:], translate[-ndim:]
    src_meta = getattr(source_layer, "metadata", {}) or {}
    entry = dict(src_meta.get(METADATA_KEY, {}) or {})
    entry.pop("reader", None)
    axes = str(entry.get("axes") or "").replace("c", "")
    if axes:  # the new layer's own axes, e.g. a 3D mask of a (t, z, y, x) scan is 'zyx'
        n = len(scale)
        entry["axes"] = axes[-n:] if n <= len(axes) else "t" * (n - len(axes)) + axes
    entry["derived_from"] = source_layer.name
    metadata = {METADATA_KEY: entry}
    return {"name": name, "scale": scale, "translate": translate, "metadata": metadata}


def layer_geometry(layer):
    """The Geometry of a layer read by this plugin (or derived from one), else None."""
    return geometry_from_metadata(getattr(layer, "metadata", None))


def copy_metadata(metadata: dict) -> dict:
    """A copy of layer metadata whose Geometry object is shared (it is never mutated) but whose dicts are not."""
    out = dict(metadata or {})
    if METADATA_KEY in out:
        out[METADATA_KEY] = copy.copy(out[METADATA_KEY])
    return out
