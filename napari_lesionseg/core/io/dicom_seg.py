"""DICOM SEG: masks that go back to a PACS and open in 3D Slicer, OHIF or highdicom on the right slices.

Written with highdicom (a library made for the Segmentation IOD). The source series is not re-read: the DICOM
reader keeps, in the scan's `Geometry.extra`, the header of its first slice ("dicom_header", DICOM JSON) and one
record per slice in array order ("dicom_instances": SOP Instance/Class UID, ImagePositionPatient), so a SEG can be
built for a series fetched from a PACS into memory as well as for one read from disk.

- One segment per label value: its name (the model's class names, else "lesion", "lesion 2"…), the algorithm
  (model name, version = the card's date, the card file) and the algorithm type: AUTOMATIC for a model's mask,
  SEMIAUTOMATIC once the user corrected it, MANUAL without a model.
- Every frame points at its source instance (DerivationImageSequence) and carries its plane position; frames with
  no segment are omitted, as highdicom does by default.
- Reading a SEG needs its source series (the labels are placed on the source's geometry): `read_seg` maps each
  source instance to its slice; a SEG whose source is not found is a clear error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .atomic import atomic_path

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
# Type 2 attributes of the patient and study modules: required in a SEG, but allowed empty. A source file that
# lacks them (anonymised, or made by a script) gets them empty so the SEG stays valid.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")
MAX_SEARCH_FILES = 5000


@dataclass
class SegAlgorithm:
    """Which model made the mask (a DICOM SEG's Segmentation Algorithm Identification)."""

    name: str
    version: str = ""
    source: str = ""
    """Where the model is described (its card file), for a reader who wants to judge it."""

    @classmethod
    def from_card(cls, card) -> "SegAlgorithm":
        return cls(name=card.name, version=card.date or "unversioned",
                   source=str(card.path.name) if getattr(card, "path", None) else "")


def is_seg_dataset(ds) -> bool:
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS or str(getattr(ds, "Modality", "")) == "SEG"


def is_seg_file(path: str | os.PathLike) -> bool:
    """True for a DICOM Segmentation object (reads the header only)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - not DICOM, unreadable: not a SEG
        return False
    return is_seg_dataset(ds)


def segment_names(mask: np.ndarray, class_names: list[str] | None = None) -> dict[int, str]:
    """Name of each label value 1..max: the model's classes in order, else 'lesion' (or 'lesion 1', 'lesion 2'…)."""
    top = int(np.max(mask)) if np.size(mask) else 0
    classes = list(class_names or [])
    if len(classes) > 1:
        return {k: (classes[k - 1] if k <= len(classes) else f"label {k}") for k in range(1, top + 1)}
    base = classes[0] if classes else "lesion"
    if top <= 1:
        return {1: base}
    return {k: f"{base} {k}" for k in range(1, top + 1)}


def _property_codes(name: str):
    """(category, type) codes for a segment: a nucleus for histology, a lesion otherwise (SNOMED CT)."""
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    if re.search(r"nucle", name, re.I):
        return CodedConcept("4421005", "SCT", "Cell structure"), CodedConcept("84640000", "SCT", "Nucleus")
    return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion


def source_datasets(geometry: Geometry | None) -> list:
    """Header-only datasets of the source slices in array order, rebuilt from what the DICOM reader kept."""
    from pydicom.dataset import Dataset

    extra = geometry.extra if geometry is not None else {}
    header, instances = extra.get("dicom_header"), extra.get("dicom_instances")
    if not header or not instances:
        raise LesionSegError("A DICOM SEG can only be made for a mask of a DICOM scan (opened from DICOM files or a "
                             "PACS); this mask's scan is not DICOM. Save it as NIfTI, PNG or TIFF instead.")
    if int(extra.get("dicom_phases", 1) or 1) > 1:
        raise LesionSegError("This DICOM series holds several DCE phases; a DICOM SEG refers to one phase. Open the "
                             "phase you segmented as its own series (or save the mask as NIfTI).")
    if int(extra.get("dicom_frames", 1) or 1) > 1:
        raise LesionSegError("DICOM SEG export of a multi-frame file (cine loop, enhanced MR) is not supported; "
                             "save the mask as NIfTI or TIFF.")
    out = []
    for rec in instances:
        ds = Dataset.from_json(header)
        ds.SOPInstanceUID = rec["sop_instance_uid"]
        ds.SOPClassUID = rec["sop_class_uid"] or ds.get("SOPClassUID")
        if rec.get("position") is not None:
            ds.ImagePositionPatient = [float(v) for v in rec["position"]]
        if rec.get("instance_number"):
            ds.InstanceNumber = int(rec["instance_number"])
        for key in TYPE2_PATIENT_STUDY:
            if key not in ds:
                setattr(ds, key, None)
        out.append(ds)
    return out


def _segment_descriptions(names: dict[int, str], algorithm: SegAlgorithm | None, edited: bool) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if algorithm is None:
        kind, ident = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    else:
        kind = (hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if edited
                else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC)
        params = {"card": algorithm.source} if algorithm.source else None
        ident = hd.AlgorithmIdentificationSequence(
            name=algorithm.name, family=codes.cid7162.ArtificialIntelligence,
            version=algorithm.version or "unversioned", source="napari-lesionseg", parameters=params)
    out = []
    for number in sorted(names):
        category, prop = _property_codes(names[number])
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=names[number][:64], segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=kind, algorithm_identification=ident))
    return out


def _frames(mask: np.ndarray, geometry: Geometry, n_sources: int) -> np.ndarray:
    """The mask as (frames, rows, columns) in source order, checked against the source's shape."""
    a = np.asarray(mask)
    expected = tuple(geometry.extra.get("shape") or a.shape)
    if tuple(a.shape) != expected:
        raise LesionSegError(f"The mask's shape {tuple(a.shape)} does not match its scan {expected}; "
                             "it would not sit on the scan.")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise LesionSegError("A mask must hold whole label numbers to be saved as DICOM SEG.")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise LesionSegError("A mask cannot hold negative label values.")
    if a.size and int(a.max()) > 255:
        raise LesionSegError(f"The mask holds label {int(a.max())}; a DICOM SEG here takes at most 255 segments.")
    a = a.astype(np.uint8)
    frames = a[None] if a.ndim == 2 else a
    if frames.shape[0] != n_sources:
        raise LesionSegError(f"The mask has {frames.shape[0]} slices but its DICOM source has {n_sources} images.")
    return frames


def build_seg(mask, geometry: Geometry, *, class_names: list[str] | None = None,
              algorithm: SegAlgorithm | None = None, edited: bool = False, series_description: str | None = None):
    """A highdicom Segmentation (a pydicom Dataset) of `mask` (napari order) referring to the source slices."""
    import highdicom as hd

    from ... import __version__

    sources = source_datasets(geometry)
    frames = _frames(mask, geometry, len(sources))
    if not frames.any():
        raise LesionSegError("The mask is empty: there is no segment to save as DICOM SEG.")
    names = segment_names(frames, class_names)
    header = sources[0]
    description = series_description or (f"Lesion mask ({algorithm.name})" if algorithm else "Lesion mask")
    try:
        series_number = int(header.get("SeriesNumber") or 0) + 1000
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames if len(sources) > 1 else frames[0],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(names, algorithm, edited),
            series_instance_uid=hd.UID(), series_number=min(series_number, 2**31 - 1),
            sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="napari-lesionseg", manufacturer_model_name=(algorithm.name if algorithm else "manual")[:64],
            software_versions=f"napari-lesionseg {__version__}", device_serial_number="none",
            series_description=description[:64], content_label="LESIONSEG",
            content_description=("Corrected by a user" if edited else "As segmented")[:64],
        )
    except (ValueError, TypeError, AttributeError) as e:
        missing_for = "Frame Of Reference UID" in str(e)
        hint = (" The source series has no Frame of Reference UID, which a DICOM SEG of a volume needs."
                if missing_for else "")
        raise LesionSegError(f"Cannot build a DICOM SEG for this scan: {e}.{hint} Save the mask as NIfTI instead.") \
            from None
    return seg


def write_seg(mask, geometry: Geometry, path: str | os.PathLike, *, source_path=None, **kw) -> Path:
    """Build the SEG (see `build_seg`) and write it atomically to `path` (never over a source file)."""
    seg = build_seg(mask, geometry, **kw)
    sources = [source_path, geometry.extra.get("source_path"), *(geometry.extra.get("source_files") or [])]
    with atomic_path(path, sources) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return Path(path)


# ---------------------------------------------------------------------------------------------- reading
def _read_dataset(seg):
    """A highdicom Segmentation from a path, bytes-like file or pydicom Dataset."""
    import highdicom as hd
    import pydicom

    try:
        if isinstance(seg, (str, os.PathLike)):
            ds = pydicom.dcmread(str(seg))
        else:
            ds = seg
        if not is_seg_dataset(ds):
            raise LesionSegError(f"{getattr(seg, 'name', seg) if isinstance(seg, Path) else 'This file'} "
                                 "is not a DICOM Segmentation.")
        return hd.seg.Segmentation.from_dataset(ds, copy=False)
    except LesionSegError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom/highdicom raise many types for a bad file
        raise LesionSegError(f"Cannot read the DICOM SEG: {e}") from None


def referenced_series(seg) -> tuple[str, str]:
    """(StudyInstanceUID, SeriesInstanceUID of the source series) of a SEG."""
    ref = getattr(seg, "ReferencedSeriesSequence", None)
    if not ref:
        raise LesionSegError("The DICOM SEG does not name its source series (no Referenced Series Sequence).")
    return str(seg.StudyInstanceUID), str(ref[0].SeriesInstanceUID)


def read_seg(seg, geometry: Geometry) -> tuple[np.ndarray, dict[int, str]]:
    """(labels in the source scan's array shape, {segment number: name}) of a SEG placed on its source scan."""
    hseg = _read_dataset(seg)
    _, series_uid = referenced_series(hseg)
    source_series = str((geometry.header or {}).get("SeriesInstanceUID", "")) if isinstance(geometry.header, dict) \
        else ""
    if source_series and source_series != series_uid:
        raise LesionSegError("This DICOM SEG belongs to another series than the scan it was opened on "
                             f"(it refers to series {series_uid}).")
    uids = list(geometry.extra.get("sop_instance_uids") or [])
    if not uids:
        raise LesionSegError("The scan under this DICOM SEG is not a DICOM series; open the SEG with its source.")
    strangers = frame_source_uids(hseg) - set(uids)
    if strangers:
        raise LesionSegError(f"The DICOM SEG points to {len(strangers)} image(s) that are not in the scan it was "
                             "opened on (an incomplete series, or another version of it).")
    try:
        arr = hseg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                 skip_overlap_checks=True, assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError) as e:
        raise LesionSegError(f"The DICOM SEG does not fit its source series: {e}") from None
    names = {int(d.SegmentNumber): str(d.SegmentLabel) for d in hseg.SegmentSequence}
    shape = tuple(geometry.extra.get("shape") or arr.shape)
    labels = np.asarray(arr).reshape(shape)
    return labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16), names


def find_source_files(seg_path: Path, series_uid: str) -> list[tuple[Path, object]]:
    """(file, header) of the source series' images beside a SEG: in its folder, else the folder above (recursively)."""
    import pydicom

    from .dicom import looks_like_dicom

    seen = 0
    out = []
    taken: set = set()
    folders = [seg_path.parent, seg_path.parent.parent]
    visited: set = set()
    for top in folders:
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if Path(root).resolve() in visited:
                continue
            visited.add(Path(root).resolve())
            for f in sorted(files):
                p = Path(root) / f
                seen += 1
                if seen > MAX_SEARCH_FILES:
                    return out
                if f.startswith(".") or not looks_like_dicom(p):
                    continue
                try:
                    ds = pydicom.dcmread(str(p), stop_before_pixels=True)
                except Exception:  # noqa: BLE001
                    continue
                sop = str(getattr(ds, "SOPInstanceUID", ""))
                if str(getattr(ds, "SeriesInstanceUID", "")) == series_uid and not is_seg_dataset(ds) \
                        and sop not in taken:  # a second copy of one image (a PACS cache, a backup) is skipped
                    taken.add(sop)
                    out.append((p, ds))
        if out:
            return out
    return out


def seg_labels_scan(seg, source_scan):
    """A labels Scan of `seg` on `source_scan`'s geometry (same spacing, affine and DICOM references)."""
    from .scan import Scan

    labels, names = read_seg(seg, source_scan.geometry)
    shown = ", ".join(names[k] for k in sorted(names)[:3]) + ("…" if len(names) > 3 else "")
    axes = "".join(a for a in source_scan.axes if a in "zyx")
    return Scan(data=labels, geometry=source_scan.geometry, modality=source_scan.modality,
                name=f"{source_scan.name} SEG ({shown})", axes=axes, layer_type="labels",
                metadata={"segments": {str(k): v for k, v in names.items()},
                          "seg_series": str(getattr(seg, "SeriesInstanceUID", ""))})


def _scan_holding(scans: list, sop_uids: set):
    for s in scans:
        if sop_uids & set(s.geometry.extra.get("sop_instance_uids") or []):
            return s
    return None


def frame_source_uids(seg) -> set[str]:
    """SOP Instance UIDs of the source images that the SEG's frames point to."""
    out = set()
    for item in getattr(seg, "PerFrameFunctionalGroupsSequence", []) or []:
        for der in getattr(item, "DerivationImageSequence", []) or []:
            for src in getattr(der, "SourceImageSequence", []) or []:
                out.add(str(src.ReferencedSOPInstanceUID))
    return out


def seg_on_scans(seg, scans: list):
    """The labels Scan of `seg` on whichever of `scans` is its source, or None when its source is not there."""
    _, series_uid = referenced_series(seg)
    candidates = [s for s in scans if isinstance(s.geometry.header, dict)
                  and s.geometry.header.get("SeriesInstanceUID") == series_uid and s.layer_type == "image"]
    source = _scan_holding(candidates, frame_source_uids(seg)) or (candidates[0] if len(candidates) == 1 else None)
    if source is None:
        return None
    missing = frame_source_uids(seg) - set(source.geometry.extra.get("sop_instance_uids") or [])
    if missing:
        raise LesionSegError(f"The DICOM SEG points to {len(missing)} image(s) that its source series does not hold; "
                             "the series is incomplete, or the SEG was made on another version of it.")
    return seg_labels_scan(seg, source)


def missing_source_message(seg, where: str) -> str:
    study, series = referenced_series(seg)
    return (f"The source images of this DICOM SEG (series {series} of study {study}) are not {where}. A SEG only "
            "holds the mask: put it in its series folder, or open the series from the PACS first.")


def read_seg_file(path: str | os.PathLike) -> list:
    """[source scan, labels scan]: a SEG file opened on its source series found beside it."""
    import pydicom

    from .dicom import _read_series

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:  # noqa: BLE001
        raise LesionSegError(f"{path.name} is not a readable DICOM file: {e}") from None
    _, series_uid = referenced_series(ds)
    items = find_source_files(path, series_uid)
    if not items:
        raise LesionSegError(missing_source_message(ds, f"beside {path.name} (its folder or the folder above)"))
    scans = _read_series(series_uid, items)
    labels = seg_on_scans(ds, scans)
    if labels is None:
        raise LesionSegError(missing_source_message(ds, f"beside {path.name}"))
    source = next(s for s in scans if s.geometry is labels.geometry)
    return [source, labels]
