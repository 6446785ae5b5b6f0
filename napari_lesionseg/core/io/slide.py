"""Whole-slide images, opened lazily as a multiscale pyramid: never the whole slide in memory.

Pyramidal TIFF / OME-TIFF / SVS / NDPI go through tifffile's zarr store (each pyramid level a zarr array whose chunks
are the file's tiles) wrapped in dask, so napari reads only the tiles it draws. A large TIFF without a pyramid gets
lazy strided levels (correct, but zoomed-out views read many tiles). OpenSlide-only formats (MRXS, …) use
openslide-python when the optional extra is installed (`pip install napari-lesionseg[openslide]`).
Microns per pixel (OME PhysicalSize, Aperio MPP, resolution tags, openslide mpp) become the spacing in mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .raster import stated_spacing, tiff_spacing_info
from .scan import Scan

SLIDE_PIXELS = 8192 * 8192
"""A single-level TIFF at least this many pixels is opened lazily too."""
OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
TIFFLIKE_SLIDES = (".svs", ".ndpi", ".scn", ".bif")


def tiff_is_slide(path: str | Path) -> bool:
    """True for pyramidal or very large TIFFs, which must not be read whole."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            s = tf.series[0]
            if len(s.levels) > 1:
                return True
            shape = s.shape
            axes = s.axes
    except Exception:
        return False
    yx = [n for n, a in zip(shape, axes) if a in "YX"]
    return len(yx) == 2 and yx[0] * yx[1] >= SLIDE_PIXELS


def _strided_levels(level0, min_size: int = 1024) -> list:
    levels = [level0]
    f = 2
    while max(level0.shape[0], level0.shape[1]) // f >= min_size // 2 and len(levels) < 10:
        levels.append(level0[::f, ::f])
        f *= 2
    return levels


def read_tiff_slide(path: str | Path, *, modality: str | None = None, spacing=None) -> list[Scan]:
    import dask.array as da
    import tifffile
    import zarr

    path = Path(path)
    try:
        tf = tifffile.TiffFile(path)
    except FileNotFoundError:
        raise LesionSegError(f"File not found: {path}") from None
    except Exception as e:
        raise LesionSegError(f"{path.name} is not a readable TIFF slide (truncated or corrupt?): {e}") from None
    try:
        series = tf.series[0]
        axes = series.axes
        info = tiff_spacing_info(tf)
        store = series.aszarr()
        group = zarr.open(store, mode="r")
        if isinstance(group, zarr.Array):
            arrays = [group]
        else:
            arrays = [group[str(i)] for i in range(len(series.levels))]
        levels = [da.from_zarr(a) for a in arrays]
    except Exception as e:
        tf.close()
        raise LesionSegError(f"{path.name}: cannot open the slide's pyramid: {e}") from None
    levels = [_to_yxc(lv, axes) for lv in levels]
    if any(0 in lv.shape for lv in levels):
        tf.close()
        raise LesionSegError(f"{path.name} has an empty axis (shape {levels[0].shape}).")
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    if rgb and levels[0].shape[-1] == 4:
        levels = [lv[..., :3] for lv in levels]
    notes = []
    if len(levels) == 1:
        levels = _strided_levels(levels[0])
        notes.append("This TIFF has no pyramid: zoomed-out views read many tiles and can be slow.")
    sp, spacing_source = stated_spacing(spacing, info)
    if sp is None:
        sp = (1.0, 1.0)
    geom = Geometry(
        spacing=sp,
        extra={"source_path": str(path), "format": "tiff-slide", "spacing_source": spacing_source,
               "shape": tuple(levels[0].shape[:2]), "multiscale": True},
    )
    scan = Scan(
        data=levels, geometry=geom, modality=modality or "histology", name=_slide_name(path), rgb=rgb,
        axes="yxc" if rgb else "yx", multiscale=True,
        contrast_limits=None if levels[0].dtype == np.uint8 or rgb else _dtype_limits(levels[0].dtype),
        metadata={"levels": [tuple(lv.shape) for lv in levels], "_tifffile": tf, "_store": store},
    )
    if rgb and levels[0].dtype == np.uint8:
        scan.contrast_limits = (0, 255)
    if "mpp" in info:
        scan.metadata["microns_per_pixel"] = info["mpp"]
    for n in notes:
        scan.warn(n)
    return [scan]


def _dtype_limits(dtype) -> tuple[float, float] | None:
    if np.issubdtype(dtype, np.integer):
        i = np.iinfo(dtype)
        return float(i.min), float(i.max)
    return None


def _to_yxc(arr, axes: str):
    """Reorder a level to (Y, X[, S]) — dropping singleton extra axes (I, Z, T, C of size 1)."""
    axes = axes.upper()
    for i in reversed(range(len(axes))):
        if axes[i] not in "YXS" and arr.shape[i] == 1:
            arr = arr[(slice(None),) * i + (0,)]
            axes = axes[:i] + axes[i + 1:]
    if set(axes) - set("YXS"):
        raise LesionSegError(f"Slides with axes {axes} (extra Z/T/C planes) are not supported; expected YX or YXS.")
    order = [axes.index(a) for a in "YXS" if a in axes]
    return arr.transpose(order) if order != list(range(arr.ndim)) else arr


def _slide_name(path: Path) -> str:
    name = path.name
    for s in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(s):
            return name[: -len(s)]
    return path.stem


def read_openslide(path: str | Path, *, modality: str | None = None, spacing=None) -> list[Scan]:
    """OpenSlide-only formats (MRXS, …); needs the optional `openslide` extra."""
    path = Path(path)
    try:
        import openslide  # noqa: F401
    except ImportError:
        raise LesionSegError(
            f"{path.name} needs OpenSlide: install the optional extra with `pip install napari-lesionseg[openslide]`."
        ) from None
    import dask.array as da
    from dask import delayed

    try:
        slide = openslide.OpenSlide(str(path))
    except Exception as e:
        raise LesionSegError(f"{path.name} could not be opened by OpenSlide: {e}") from None
    tile = 1024

    def read_tile(level, x, y, w, h):
        down = slide.level_downsamples[level]
        region = slide.read_region((int(x * down), int(y * down)), level, (w, h))
        return np.asarray(region)[..., :3]

    levels = []
    for lvl, (W, H) in enumerate(slide.level_dimensions):
        rows = []
        for y in range(0, H, tile):
            row = []
            for x in range(0, W, tile):
                w, h = min(tile, W - x), min(tile, H - y)
                row.append(da.from_delayed(delayed(read_tile)(lvl, x, y, w, h), (h, w, 3), dtype=np.uint8))
            rows.append(row)
        levels.append(da.concatenate([da.concatenate(r, axis=1) for r in rows], axis=0))
    if len(levels) == 1:
        levels = _strided_levels(levels[0])
    props = slide.properties
    mpp_x = props.get(openslide.PROPERTY_NAME_MPP_X)
    mpp_y = props.get(openslide.PROPERTY_NAME_MPP_Y)
    if spacing is not None:
        sp = (float(spacing), float(spacing)) if np.isscalar(spacing) else tuple(float(s) for s in spacing)[-2:]
    elif mpp_x and mpp_y:
        sp = (float(mpp_y) / 1000.0, float(mpp_x) / 1000.0)
    else:
        sp = (1.0, 1.0)
    geom = Geometry(spacing=sp, extra={"source_path": str(path), "format": "openslide",
                                       "shape": tuple(levels[0].shape[:2]), "multiscale": True})
    return [Scan(data=levels, geometry=geom, modality=modality or "histology", name=path.stem, rgb=True,
                 axes="yxc", multiscale=True, contrast_limits=(0, 255),
                 metadata={"levels": [tuple(lv.shape) for lv in levels], "_openslide": slide})]
