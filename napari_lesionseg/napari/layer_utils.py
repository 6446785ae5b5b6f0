"""Helpers for layers derived from a scan layer (masks, probabilities, subtraction images).

`derived_layer_kwargs(source_layer, name)` gives the keyword arguments that make a new layer sit exactly on
its source: same scale and translate for the trailing spatial axes, and the source's `lesionseg` metadata
(the Geometry with the file's affine and header) copied, so saving the new layer as NIfTI reproduces the
source's affine. napari's own `affine` is not used (readers place layers with `scale` only).
"""

from __future__ import annotations

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


def layer_spacing(layer, ndim: int | None = None) -> tuple[tuple[float, ...], bool]:
    """(pixel/voxel size per spatial axis, known?) of a layer: its Geometry when this plugin read it, else its
    napari scale (known unless every axis is 1: then 1 means one pixel, not 1 mm). ndim: only a Geometry of that
    many axes counts (None: any, e.g. the 3D Geometry of a 4D DCE layer)."""
    geom = geometry_from_metadata(getattr(layer, "metadata", None), ndim=ndim)
    if geom is not None:
        return tuple(float(s) for s in geom.spacing), geom.spacing_known
    scale = tuple(float(s) for s in layer.scale[-(ndim or len(layer.scale)):])
    return scale, not all(s == 1.0 for s in scale)


def layer_source_path(layer) -> str | None:
    """The file a layer was read from (or its scan's, for a derived layer), else None."""
    meta = layer.metadata.get(METADATA_KEY, {}) if isinstance(layer.metadata, dict) else {}
    if isinstance(meta, dict) and meta.get("source_path"):
        return str(meta["source_path"])
    geom = geometry_from_metadata(layer.metadata)
    if geom is not None and geom.extra.get("source_path"):
        return str(geom.extra["source_path"])
    if getattr(layer, "source", None) is not None and layer.source.path:
        return str(layer.source.path)
    return None


def open_input_paths(viewer) -> list[str]:
    """Every file (or DICOM folder) an open layer was read from: a save must never land on one of them."""
    paths: list[str] = []
    if viewer is None:
        return paths
    for layer in viewer.layers:
        meta = getattr(layer, "metadata", None) or {}
        entry = meta.get(METADATA_KEY, {}) if isinstance(meta, dict) else {}
        if isinstance(entry, dict) and entry.get("source_path"):
            paths.append(str(entry["source_path"]))
        geom = geometry_from_metadata(meta)
        if geom is not None:
            paths.extend(str(p) for p in [geom.extra.get("source_path"), *(geom.extra.get("source_files") or [])] if p)
        source = getattr(getattr(layer, "source", None), "path", None)
        if source:
            paths.append(str(source))
    return list(dict.fromkeys(paths))


def refuse_overwriting_open_inputs(path, viewer) -> None:
    """Raise LesionSegError when `path` is a file an open layer was read from (the scan, an expert mask…)."""
    from ..core.errors import LesionSegError
    from ..core.io.atomic import refuse_overwriting_sources

    for source in open_input_paths(viewer):
        try:
            refuse_overwriting_sources(path, [source])
        except LesionSegError:
            raise LesionSegError(f"Refusing to overwrite {source}: an open layer was read from it. "
                                 "Choose another file name.") from None
