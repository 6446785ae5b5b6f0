"""2D rasters: PNG, JPEG, BMP, PGM/PPM and (non-pyramidal) TIFF, 8 or 16 bits, gray or colour.

- RGB whose three channels are identical (common for ultrasound and scanned film) becomes one gray channel.
- An alpha channel that is fully opaque carries nothing and is dropped with a warning; an alpha channel with
  transparent pixels is refused (what lies under a transparent pixel is undefined): flatten the image first.
- PNG/JPEG/BMP carry no usable pixel size: spacing is 1.0 unless `spacing=` is given. Files named like mini-MIAS
  (`mdbNNN`, 1024×1024 gray) get that dataset's published 0.2 mm/pixel.
- TIFF resolution tags (centimetre or inch units) give the spacing; colour TIFFs are treated as histology.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .scan import Scan, check_array

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm")
TIFF_SUFFIXES = (".tif", ".tiff")
MINI_MIAS = re.compile(r"^mdb\d{3}[a-z]?$", re.IGNORECASE)
MINI_MIAS_SPACING_MM = 0.2
# A mammographic view code as its own word in the file name (P121_L_DM_CC, left_MLO, RCC.png): exported
# mammograms are named this way, ultrasound frames are not.
MAMMO_VIEW = re.compile(r"(^|[_\-. ])(L|R)?(CC|MLO)($|[_\-. ])", re.IGNORECASE)


def _pil_to_array(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "PA":
                im = im.convert("RGBA")
            elif mode == "CMYK" or mode == "YCbCr":
                im = im.convert("RGB")
            elif mode == "1":
                im = im.convert("L")
            arr = np.array(im)
    except FileNotFoundError:
        raise LesionSegError(f"File not found: {path}") from None
    except UnidentifiedImageError:
        raise LesionSegError(f"{path.name} is not an image this plugin can read (unknown or corrupt format).") from None
    except Image.DecompressionBombError as e:  # a header claiming billions of pixels: damaged or hostile
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise LesionSegError(f"{path.name}: its header claims {count}, more than an image file of this kind can "
                             "sensibly hold; is the file damaged?") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise LesionSegError(f"{path.name} could not be read (truncated or corrupt?): {e}") from None
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # 16-bit PGM/PNG that PIL opened in mode 'I'
    return arr


def _tiff_to_array(path: Path) -> tuple[np.ndarray, dict]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            arr = tf.series[0].asarray()
            info = tiff_spacing_info(tf)
    except FileNotFoundError:
        raise LesionSegError(f"File not found: {path}") from None
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct errors... for corrupt files
        raise LesionSegError(f"{path.name} is not a readable TIFF (truncated or corrupt?): {e}") from None
    return arr, info


def tiff_spacing_info(tf) -> dict:
    """Microns per pixel from OME metadata, an Aperio description, or the resolution tags; {} when unknown."""
    page = tf.pages.first if hasattr(tf.pages, "first") else tf.pages[0]
    try:
        if tf.is_ome and tf.ome_metadata:
            m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tf.ome_metadata)
            my = re.search(r'PhysicalSizeY="([0-9.eE+-]+)"', tf.ome_metadata)
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tf.ome_metadata)
            if m:
                factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}.get(unit.group(1) if unit else "µm", 1.0)
                x = float(m.group(1)) * factor
                y = float(my.group(1)) * factor if my else x
                return {"mpp": (y, x), "mpp_source": "OME PhysicalSize"}
        desc = str(getattr(page, "description", "") or "")
        m = re.search(r"MPP\s*=\s*([0-9.]+)", desc)
        if m:
            v = float(m.group(1))
            return {"mpp": (v, v), "mpp_source": "Aperio MPP"}
        tags = page.tags
        unit = tags.get("ResolutionUnit")
        xr, yr = tags.get("XResolution"), tags.get("YResolution")
        if unit is not None and xr is not None and yr is not None:
            per = {2: 25400.0, 3: 10000.0}.get(int(unit.value))
            xv = xr.value[0] / xr.value[1] if isinstance(xr.value, tuple) else float(xr.value)
            yv = yr.value[0] / yr.value[1] if isinstance(yr.value, tuple) else float(yr.value)
            # 72/96/300 dpi defaults say nothing about tissue; only trust sub-100 µm pixels.
            if per and xv > 0 and yv > 0 and per / xv < 100 and not (int(unit.value) == 2 and xv in (72, 96, 150, 300, 600)):
                return {"mpp": (per / yv, per / xv), "mpp_source": "TIFF resolution tags"}
    except Exception:
        pass
    return {}


def stated_spacing(spacing, info: dict) -> tuple[tuple[float, float] | None, str]:
    """The pixel size (mm) a caller gave or a TIFF states (microns per pixel), with where it came from."""
    if spacing is not None:
        sp = (float(spacing), float(spacing)) if np.isscalar(spacing) else tuple(float(s) for s in spacing)[-2:]
        return sp, "given"
    if "mpp" in info:
        return (info["mpp"][0] / 1000.0, info["mpp"][1] / 1000.0), info["mpp_source"]
    return None, "none"


def guess_gray_modality(path: Path, arr: np.ndarray) -> str:
    """Only a guess (the file says no modality): 16-bit, PGM, mini-MIAS names and view codes mean mammography."""
    if (arr.dtype.itemsize >= 2 or path.suffix.lower() == ".pgm" or MINI_MIAS.match(path.stem)
            or MAMMO_VIEW.search(path.stem)):
        return "mammography"
    return "ultrasound"


def read_raster(path: str | Path, *, modality: str | None = None, spacing=None) -> list[Scan]:
    path = Path(path)
    suffix = path.suffix.lower()
    info: dict = {}
    if suffix in TIFF_SUFFIXES:
        arr, info = _tiff_to_array(path)
    else:
        arr = _pil_to_array(path)
    warn_msgs: list[str] = []
    arr = np.squeeze(arr) if arr.ndim > 2 and 1 in arr.shape[:-1] else arr
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        alpha = arr[..., -1]
        full = np.iinfo(arr.dtype).max if arr.dtype.kind in "ui" else 1.0
        if not np.all(alpha == full):
            raise LesionSegError(
                f"{path.name} has an alpha channel with transparent pixels; the image under them is undefined. "
                "Flatten it onto a background (save without transparency) and open it again."
            )
        arr = np.ascontiguousarray(arr[..., :-1])
        warn_msgs.append(f"{path.name}: the (fully opaque) alpha channel was dropped.")
        warnings.warn(warn_msgs[-1], stacklevel=2)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    check_array(arr, path.name)
    rgb = False
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = np.ascontiguousarray(arr[..., 0])
        else:
            rgb = True
    if arr.ndim == 3 and not rgb:
        raise LesionSegError(
            f"{path.name} holds a stack of shape {arr.shape}; this reader opens single 2D images "
            "(use NIfTI or a DICOM series for volumes)."
        )
    if arr.ndim != (3 if rgb else 2):
        raise LesionSegError(f"{path.name} has an unsupported shape {arr.shape} for a 2D image.")
    sp, spacing_source = stated_spacing(spacing, info)
    if sp is None and not rgb and MINI_MIAS.match(path.stem) and arr.shape == (1024, 1024):
        sp = (MINI_MIAS_SPACING_MM, MINI_MIAS_SPACING_MM)
        spacing_source = "mini-MIAS (200 µm pixels)"
    elif sp is None:
        sp = (1.0, 1.0)
    mod = modality or ("histology" if rgb else guess_gray_modality(path, arr))
    geom = Geometry(
        spacing=sp,
        extra={"source_path": str(path), "format": suffix.lstrip("."), "spacing_source": spacing_source,
               "shape": tuple(arr.shape[:2])},
    )
    scan = Scan(data=arr, geometry=geom, modality=mod, name=path.stem, rgb=rgb, axes="yxc" if rgb else "yx",
                metadata={"dtype": str(arr.dtype), "modality_guessed": modality is None})
    if "mpp" in info:
        scan.metadata["microns_per_pixel"] = info["mpp"]
    for m in warn_msgs:
        scan.warn(m)
    return [scan]
