"""DICOM: single images (mammography, ultrasound) and series from a folder (MRI) with pydicom.

A folder is scanned for DICOM files (by content, not by extension), grouped by SeriesInstanceUID, and each series
becomes one Scan named by its SeriesDescription. Slices are ordered by their position along the slice normal
(cross product of the ImageOrientationPatient cosines), RescaleSlope/Intercept applied, and the affine built from
ImageOrientationPatient / ImagePositionPatient / PixelSpacing and the actual step between the first and last slice.
The affine is stored as a NIfTI affine (RAS+, i.e. DICOM's LPS with x and y negated, as dcm2niix and nibabel do), so
a mask written as NIfTI sits on the scan in any NIfTI viewer.

For display, MONOCHROME1 images are inverted (bright = dense, as radiologists read them) and the file's VOI window
(WindowCenter/WindowWidth, or the range of a VOI LUT) becomes the layer's contrast limits.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .scan import Scan, check_array

MODALITY_NAMES = {"MR": "mri", "MG": "mammography", "US": "ultrasound", "SM": "histology"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MAX_FOLDER_FILES = 20000


def looks_like_dicom(path: str | Path) -> bool:
    """True for a file with the DICM preamble or a .dcm extension (cheap: reads 132 bytes)."""
    p = Path(path)
    if p.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def folder_has_dicom(folder: str | Path, max_entries: int = 5000) -> bool:
    """Cheap test for the napari reader: stops at the first DICOM file, or after `max_entries` files."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if not f.startswith(".") and looks_like_dicom(Path(root) / f):
                return True
            seen += 1
            if seen >= max_entries:
                return False
    return False


def folder_dicom_files(folder: str | Path) -> list[Path]:
    """DICOM files under `folder` (recursively, hidden files skipped)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = Path(root) / f
            if looks_like_dicom(p):
                out.append(p)
            if len(out) > MAX_FOLDER_FILES:
                raise LesionSegError(f"{folder} holds more than {MAX_FOLDER_FILES} DICOM files; open one series folder.")
    return out


def modality_name(ds) -> str:
    code = str(getattr(ds, "Modality", "") or "").upper()
    return MODALITY_NAMES.get(code, code.lower() or "unknown")


def _float_list(value) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in (value if hasattr(value, "__len__") and not isinstance(value, str) else [value])]
    except (TypeError, ValueError):
        return None


def pixel_spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """(row spacing, column spacing) in mm and where it came from; None when the file does not say."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        v = _float_list(getattr(ds, tag, None))
        if v and len(v) >= 2 and v[0] > 0 and v[1] > 0:
            return (v[0], v[1]), tag
    regions = getattr(ds, "SequenceOfUltrasoundRegions", None)
    if regions:
        r = regions[0]
        dx, dy = getattr(r, "PhysicalDeltaX", None), getattr(r, "PhysicalDeltaY", None)
        # Units 3 = cm.
        if dx and dy and getattr(r, "PhysicalUnitsXDirection", 3) == 3 and getattr(r, "PhysicalUnitsYDirection", 3) == 3:
            return (abs(float(dy)) * 10.0, abs(float(dx)) * 10.0), "SequenceOfUltrasoundRegions"
    return None, "none"


def _pixels(ds, path) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as e:  # missing decoder, truncated pixel data, ...
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", ts)
        raise LesionSegError(
            f"Cannot decode the pixels of {Path(path).name} (transfer syntax {ts_name}): {e}. "
            "The file may be truncated, or compressed in a format that needs an extra decoder (pylibjpeg, gdcm)."
        ) from None
    return np.asarray(arr)


def _modality_lut(arr: np.ndarray, ds) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == 0:
        return arr
    if slope == int(slope) and intercept == int(intercept) and np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int32) * int(slope) + int(intercept)
        return out.astype(np.int16) if out.min() >= -32768 and out.max() <= 32767 else out
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def voi_window(ds) -> tuple[float, float] | None:
    """(low, high) of the first VOI window or VOI LUT in the file, in modality-LUT units; None when absent."""
    c = _float_list(getattr(ds, "WindowCenter", None))
    w = _float_list(getattr(ds, "WindowWidth", None))
    if c and w and w[0] > 0:
        return c[0] - w[0] / 2.0, c[0] + w[0] / 2.0
    seq = getattr(ds, "VOILUTSequence", None)
    if seq:
        desc = _float_list(getattr(seq[0], "LUTDescriptor", None))
        if desc and len(desc) >= 2:
            n = desc[0] or 65536
            return float(desc[1]), float(desc[1] + n - 1)
    return None


def _invert_monochrome1(arr: np.ndarray, ds, window):
    """MONOCHROME1 stores dense tissue dark; flip so it is bright, and flip the window with it."""
    if arr.dtype.kind in "ui":
        bits = int(getattr(ds, "BitsStored", arr.dtype.itemsize * 8) or arr.dtype.itemsize * 8)
        lo_v, hi_v = (0, 2**bits - 1) if arr.dtype.kind == "u" else (float(arr.min()), float(arr.max()))
    else:
        lo_v, hi_v = float(np.nanmin(arr)), float(np.nanmax(arr))
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if arr.dtype.kind == "u" and (slope != 1 or intercept != 0):
        lo_v, hi_v = float(arr.min()), float(arr.max())
    total = lo_v + hi_v
    if arr.dtype.kind in "ui":
        inv = (np.int64(total) - arr.astype(np.int64))
        inv = inv.astype(arr.dtype) if inv.min() >= np.iinfo(arr.dtype).min and inv.max() <= np.iinfo(arr.dtype).max else inv.astype(np.int32)
    else:
        inv = (total - arr).astype(arr.dtype)
    if window is not None:
        window = (total - window[1], total - window[0])
    return inv, window


def _equal_rgb_to_gray(arr: np.ndarray, scan_note: list) -> tuple[np.ndarray, bool]:
    if arr.ndim >= 3 and arr.shape[-1] == 3:
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return np.ascontiguousarray(arr[..., 0]), False
        return arr, True
    return arr, False


HEADER_MAX_BINARY = 1024


def header_json(ds) -> dict:
    """The file's public header as DICOM JSON, without pixels, private tags or large binary values.

    Kept in `Geometry.extra["dicom_header"]` so that a DICOM SEG can later name the patient, study and frame of
    reference of its source even when the source files are gone (a series fetched from a PACS into memory).
    """
    from pydicom.dataset import Dataset

    h = Dataset()
    for elem in ds:
        if elem.tag.is_private or elem.tag.group in (0x7FE0, 0x6000) or elem.tag.group >= 0xFFFA:
            continue
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") and len(elem.value or b"") > HEADER_MAX_BINARY:
            continue
        h.add(elem)
    return h.to_json_dict()


def instance_record(ds) -> dict:
    """What a derived object (DICOM SEG) needs to point at one source slice."""
    pos = _float_list(getattr(ds, "ImagePositionPatient", None))
    return {"sop_instance_uid": str(getattr(ds, "SOPInstanceUID", "")),
            "sop_class_uid": str(getattr(ds, "SOPClassUID", "")),
            "position": pos, "instance_number": int(getattr(ds, "InstanceNumber", 0) or 0)}


def summary(ds) -> dict:
    keys = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
            "InstanceNumber", "Modality", "Manufacturer", "PhotometricInterpretation", "BodyPartExamined",
            "ViewPosition", "ImageLaterality", "Laterality")
    return {k: str(getattr(ds, k)) for k in keys if getattr(ds, k, None) not in (None, "")}


def read_dicom_file(path: str | Path, *, modality: str | None = None, spacing=None) -> list[Scan]:
    """One DICOM file: a 2D image, or a multi-frame file (frames along the first axis)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except FileNotFoundError:
        raise LesionSegError(f"File not found: {path}") from None
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as e:
        raise LesionSegError(f"{path.name} is not a readable DICOM file (truncated or corrupt?): {e}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise LesionSegError(f"{path.name} is a DICOM file without an image (a report or structured data?).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = _pixels(ds, path)
    check_array(arr, path.name)
    return [_scan_from_dataset(ds, arr, path, modality=modality, spacing=spacing)]


def _scan_from_dataset(ds, arr, path: Path, *, modality=None, spacing=None) -> Scan:
    notes: list = []
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rgb = False
    window = None
    if photometric.startswith("MONOCHROME"):
        arr = _modality_lut(arr, ds)
        window = voi_window(ds)
        if photometric == "MONOCHROME1":
            arr, window = _invert_monochrome1(arr, ds, window)
            notes.append("MONOCHROME1 inverted for display")
    else:
        arr, rgb = _equal_rgb_to_gray(arr, notes)
    ps, ps_source = pixel_spacing(ds)
    if spacing is not None:
        sp2 = (float(spacing), float(spacing)) if np.isscalar(spacing) else tuple(float(s) for s in spacing)[-2:]
        ps_source = "given"
    else:
        sp2 = ps if ps is not None else (1.0, 1.0)
    mod = modality or modality_name(ds)
    spatial_2d = arr.ndim - (1 if rgb else 0) == 2
    if spatial_2d:
        axes = "yx"
        sp = sp2
    else:
        axes = "tyx" if mod == "ultrasound" or frames > 1 and not getattr(ds, "SpacingBetweenSlices", None) else "zyx"
        dz = float(getattr(ds, "SpacingBetweenSlices", 0) or getattr(ds, "SliceThickness", 0) or 1.0)
        sp = sp2 if axes == "tyx" else (dz, *sp2)
    if rgb:
        axes += "c"
    geom = Geometry(
        spacing=tuple(float(s) for s in sp),
        nifti_affine=None,
        reversed_axes=True,
        header=summary(ds),
        extra={"source_path": str(path), "format": "dicom", "spacing_source": ps_source,
               "shape": tuple(n for n, a in zip(arr.shape, axes) if a in "zyx"),
               "sop_instance_uids": [str(getattr(ds, "SOPInstanceUID", ""))],
               "dicom_instances": [instance_record(ds)], "dicom_frames": frames, "dicom_header": header_json(ds)},
    )
    name = str(getattr(ds, "SeriesDescription", "") or "") or path.stem
    scan = Scan(data=arr, geometry=geom, modality=mod, name=name, rgb=rgb, axes=axes,
                contrast_limits=window, metadata={"dicom": summary(ds), "photometric": photometric})
    if ps is None and spacing is None:
        scan.warn(f"{path.name} does not state its pixel spacing: sizes are in pixels (a pixel counts as 1).")
    for n in notes:
        scan.metadata.setdefault("notes", []).append(n)
    return scan


PHASE_TAGS = ("TemporalPositionIdentifier", "AcquisitionNumber", "TriggerTime", "AcquisitionTime", "ContentTime")


def _split_phases(positions: list) -> tuple[list | None, str | None]:
    """Split slices that share positions into phases (DCE in one series): each phase one full, identical stack."""
    for tag in PHASE_TAGS:
        values = [getattr(ds, tag, None) for _, _, ds in positions]
        if any(v in (None, "") for v in values):
            continue
        groups: dict = defaultdict(list)
        for v, item in zip(values, positions):
            groups[str(v)].append(item)
        if len(groups) < 2:
            continue
        stacks = list(groups.values())
        pos_sets = [tuple(round(p[0], 3) for p in sorted(g, key=lambda t: t[0])) for g in stacks]
        if len(set(pos_sets)) == 1 and len(set(pos_sets[0])) == len(pos_sets[0]):
            def order(k):
                try:
                    return (0, float(k), k)
                except ValueError:
                    return (1, 0.0, k)
            keys = sorted(groups, key=order)
            return [sorted(groups[k], key=lambda t: t[0]) for k in keys], tag
    return None, None


def read_dicom_folder(folder: str | Path, *, modality: str | None = None, spacing=None) -> list[Scan]:
    """Every series in `folder`: one Scan per SeriesInstanceUID (3D when the slices carry positions).

    A file that cannot be read does not cost the other series: the series it belongs to (or the file alone, for
    2D images) is left out, named in a warning on every Scan returned. Only when nothing is left is it an error.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise LesionSegError(f"Folder not found: {folder}")
    files = folder_dicom_files(folder)
    headers = []
    problems: list[str] = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            problems.append(f"{f.name} is not a readable DICOM file ({type(e).__name__}: {e})")
            continue
        if "Rows" not in ds or ("SeriesInstanceUID" not in ds and "SOPInstanceUID" not in ds):
            continue  # DICOMDIR, structured reports, presentation states: no image
        headers.append((f, ds))
    from .dicom_seg import is_seg_dataset

    segs = [f for f, ds in headers if is_seg_dataset(ds)]
    headers = [(f, ds) for f, ds in headers if not is_seg_dataset(ds)]
    if not headers and not segs:
        detail = f" ({'; '.join(problems[:3])})" if problems else ""
        raise LesionSegError(f"No DICOM images found in the folder {folder}{detail}.")
    series: dict[str, list] = defaultdict(list)
    for f, ds in headers:
        series[str(getattr(ds, "SeriesInstanceUID", f))].append((f, ds))
    scans: list[Scan] = []
    for uid, items in sorted(series.items(), key=lambda kv: _series_number(kv[1][0][1])):
        try:
            scans.extend(_read_series(uid, items, modality=modality, spacing=spacing, problems=problems))
        except LesionSegError as e:
            desc = str(getattr(items[0][1], "SeriesDescription", "") or "")
            problems.append(str(e) if not desc or desc in str(e) else f"series '{desc}': {e}")
    scans.extend(_segs_on_scans(segs, scans, folder))
    if not scans:
        raise LesionSegError(problems[0] if len(problems) == 1 else
                             f"No series in {folder.name} could be read: " + " · ".join(problems[:5]))
    _name_apart(scans)
    for s in scans:
        for p in problems:
            s.warn(f"Left out of {folder.name}: {p}")
    return scans


def _series_number(ds) -> int:
    try:
        return int(getattr(ds, "SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _name_apart(scans: list[Scan]) -> None:
    """Two series (or images) with one description: add the series number, then the image number or file name."""
    def names():
        return [s.name for s in scans]

    base = names()
    for s in scans:
        if base.count(s.name) > 1:
            s.name = f"{s.name} ({series_number_of(s) or '?'})"
    for s in scans:
        if names().count(s.name) > 1:
            instance = s.metadata.get("dicom", {}).get("InstanceNumber")
            src = Path(s.source_path or "")
            s.name = f"{s.name}, image {instance}" if instance else f"{s.name}, {src.stem}"


def series_number_of(scan: Scan) -> str:
    """The DICOM SeriesNumber of a scan read from DICOM, '' when it has none."""
    return str(scan.metadata.get("dicom", {}).get("SeriesNumber") or scan.metadata.get("series_number") or "")


def _segs_on_scans(seg_files: list, scans: list[Scan], folder: Path) -> list[Scan]:
    """Labels scans of the DICOM SEG files of a folder, each on its source series read from the same folder."""
    import pydicom

    from .dicom_seg import missing_source_message, seg_on_scans

    out = []
    for f in seg_files:
        ds = pydicom.dcmread(str(f))
        labels = seg_on_scans(ds, scans)
        if labels is not None:
            out.append(labels)
            continue
        message = missing_source_message(ds, f"in {folder.name}")
        if not scans:
            raise LesionSegError(f"{Path(f).name}: {message}")
        scans[0].warn(f"{Path(f).name} was not opened: {message}")
    return out


def _read_series(uid: str, items: list, *, modality=None, spacing=None, problems: list | None = None) -> list[Scan]:
    import pydicom

    with_geometry = [(f, ds) for f, ds in items
                     if getattr(ds, "ImagePositionPatient", None) is not None
                     and getattr(ds, "ImageOrientationPatient", None) is not None]
    if len(items) == 1 or len(with_geometry) < len(items):
        # 2D images (mammograms, ultrasound): each file is its own scan.
        out = []
        for f, _ in sorted(items, key=lambda it: int(getattr(it[1], "InstanceNumber", 0) or 0)):
            try:
                out.extend(read_dicom_file(f, modality=modality, spacing=spacing))
            except LesionSegError as e:
                if problems is None or len(items) == 1:
                    raise
                problems.append(str(e))
        return out
    first = items[0][1]
    desc = str(getattr(first, "SeriesDescription", "") or "") or f"series {getattr(first, 'SeriesNumber', uid[-8:])}"

    def key(ds, tag):
        return tuple(round(v, 4) for v in (_float_list(getattr(ds, tag, None)) or []))

    for tag in ("ImageOrientationPatient", "PixelSpacing"):
        values = {key(ds, tag) for _, ds in items}
        if len(values) > 1:
            raise LesionSegError(f"The DICOM series '{desc}' mixes images with different {tag}; it cannot be stacked "
                                 "into one volume. Export each acquisition as its own series.")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in items}
    if len(sizes) > 1:
        raise LesionSegError(f"The DICOM series '{desc}' mixes image sizes {sorted(sizes)}; it cannot be stacked.")
    iop = np.array(_float_list(first.ImageOrientationPatient), float)
    row_cos, col_cos = iop[:3], iop[3:6]
    normal = np.cross(row_cos, col_cos)
    positions = [(float(np.dot(np.array(_float_list(ds.ImagePositionPatient), float), normal)), f, ds)
                 for f, ds in items]
    positions.sort(key=lambda t: t[0])
    d = np.diff([p[0] for p in positions])
    phases = [positions]
    phase_tag = None
    if np.any(np.abs(d) < 1e-4):
        phases, phase_tag = _split_phases(positions)
        if phases is None:
            raise LesionSegError(
                f"The DICOM series '{desc}' has several images at the same slice position that no phase tag "
                "(TemporalPositionIdentifier, AcquisitionNumber, TriggerTime) separates (mixed echoes or repeated "
                "acquisitions in one series?); split it into one series per acquisition."
            )
        positions = phases[0]
        d = np.diff([p[0] for p in positions])
        if len(positions) < 2:
            raise LesionSegError(f"The DICOM series '{desc}' has one slice per phase; it is not a volume.")

    def load(plist):
        out = []
        for _, f, _ds in plist:
            try:
                ds = pydicom.dcmread(str(f))
            except Exception as e:  # noqa: BLE001 - pydicom raises many kinds on a damaged file
                raise LesionSegError(f"{Path(f).name} in series '{desc}' could not be read (truncated or "
                                     f"corrupt?): {e}") from None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = _pixels(ds, f)
            if arr.ndim != 2:
                raise LesionSegError(f"{Path(f).name} in series '{desc}' is not a single 2D slice (shape {arr.shape}).")
            out.append(_modality_lut(arr, ds))
        return out

    slices = [sl for ph in phases for sl in load(ph)]
    dtype = np.result_type(*[s.dtype for s in slices])
    vol = np.stack([s.astype(dtype, copy=False) for s in slices])
    if len(phases) > 1:
        vol = vol.reshape(len(phases), len(positions), *vol.shape[1:])
    check_array(vol, f"Series '{desc}'")
    ps, ps_source = pixel_spacing(first)
    if spacing is not None:
        ps = (float(spacing), float(spacing)) if np.isscalar(spacing) else tuple(float(s) for s in spacing)[-2:]
        ps_source = "given"
    if ps is None:
        ps = (1.0, 1.0)
    p0 = np.array(_float_list(positions[0][2].ImagePositionPatient), float)
    pn = np.array(_float_list(positions[-1][2].ImagePositionPatient), float)
    n = len(positions)
    step = (pn - p0) / (n - 1)
    # NIfTI index order (i, j, k) = (column, row, slice): i moves along a row (row cosine × column spacing).
    lps = np.eye(4)
    lps[:3, 0] = row_cos * ps[1]
    lps[:3, 1] = col_cos * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = p0
    affine = LPS_TO_RAS @ lps
    dz = float(np.linalg.norm(step))
    scan = Scan(
        data=vol,
        geometry=Geometry(
            spacing=(dz, float(ps[0]), float(ps[1])),
            nifti_affine=affine,
            reversed_axes=True,
            header=summary(first),
            extra={"source_path": str(Path(items[0][0]).parent),
                   "source_files": [str(p[1]) for ph in phases for p in ph],
                   "format": "dicom-series", "shape": tuple(vol.shape[-3:]), "spacing_source": ps_source,
                   # Source slices in array order (phase-major for DCE phases): what a DICOM SEG refers to.
                   "sop_instance_uids": [str(getattr(p[2], "SOPInstanceUID", "")) for ph in phases for p in ph],
                   "dicom_instances": [instance_record(p[2]) for ph in phases for p in ph],
                   "dicom_phases": len(phases), "dicom_header": header_json(first)},
        ),
        modality=modality or modality_name(first),
        name=desc,
        axes="tzyx" if vol.ndim == 4 else "zyx",
        contrast_limits=voi_window(first),
        metadata={"dicom": summary(first), "series_number": str(getattr(first, "SeriesNumber", "")), "slices": n},
    )
    if phase_tag:
        scan.metadata["phase_tag"] = phase_tag
    if n > 2 and np.ptp(d) > 0.1 * max(abs(float(np.mean(d))), 1e-6):
        scan.warn(f"Series '{desc}' has uneven slice spacing ({d.min():.2f}–{d.max():.2f} mm); using the mean.")
    return [scan]
