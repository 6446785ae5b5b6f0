"""The measurements of a DICOM SEG as a DICOM Structured Report (TID 1500 measurement report, with highdicom).

One measurement group per segment: its volume (mL, 3D) or area (mm², 2D) and its long and short axes (mm, RECIST
style, `core.measure`), each group pointing at its segment of the SEG. PACS viewers (OHIF, 3D Slicer's Quantitative
Reporting) list these next to the SEG; the same numbers are in `lesionseg measure`'s CSV.
"""

from __future__ import annotations

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry

IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging")


def _measurements(m, ndim: int) -> list:
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    out = []
    if ndim == 3:
        out.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(m.size),
                                     unit=CodedConcept("mL", "UCUM", "milliliter")))
    else:
        out.append(hd.sr.Measurement(name=codes.SCT.Area, value=float(m.size), unit=codes.UCUM.SquareMillimeter))
    out.append(hd.sr.Measurement(name=codes.SCT.LongAxis, value=float(m.long_axis_mm), unit=codes.UCUM.Millimeter))
    out.append(hd.sr.Measurement(name=codes.SCT.ShortAxis, value=float(m.short_axis_mm), unit=codes.UCUM.Millimeter))
    return out


def build_measurement_report(seg, mask: np.ndarray, geometry: Geometry):
    """A Comprehensive 3D SR of the per-segment measurements of `mask` (the array the SEG was made from)."""
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    from ... import __version__
    from ..measure import measure_lesions

    results = measure_lesions(np.asarray(mask), geometry=geometry, by="label")
    if not results:
        raise LesionSegError("The mask is empty: there is nothing to measure.")
    labels = {int(d.SegmentNumber): str(d.SegmentLabel) for d in seg.SegmentSequence}
    source_series = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    groups = []
    for m in results:
        if m.label not in labels:
            continue
        referenced = hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=m.label,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series))
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=labels[m.label][:64])
        cls = (hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations if np.ndim(mask) == 3
               else hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations)
        groups.append(cls(tracking_identifier=tracking, referenced_segment=referenced,
                          finding_type=codes.SCT.Lesion, measurements=_measurements(m, np.ndim(mask))))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="napari-lesionseg", model_name=str(seg.ManufacturerModelName)[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CodedConcept(*IMAGING_PROCEDURE), imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg], content=report, series_instance_uid=hd.UID(),
        series_number=int(getattr(seg, "SeriesNumber", 1000) or 1000) + 1, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="napari-lesionseg", series_description="Lesion measurements",
        is_complete=True, is_verified=False, institution_name=None,
        software_versions=f"napari-lesionseg {__version__}")


def write_seg_and_report(mask, geometry: Geometry, path, *, source_path=None, **seg_kw):
    """Write the DICOM SEG to `path` and its measurement report beside it (`<name>_report.dcm`); both atomic."""
    from pathlib import Path

    from .atomic import atomic_path
    from .dicom_seg import build_seg

    path = Path(path)
    seg = build_seg(mask, geometry, **seg_kw)
    report = build_measurement_report(seg, mask, geometry)
    sources = [source_path, geometry.extra.get("source_path"), *(geometry.extra.get("source_files") or [])]
    report_path = path.with_name(path.name[:-4] + "_report.dcm" if path.name.lower().endswith(".dcm")
                                 else path.name + "_report.dcm")
    with atomic_path(path, sources) as tmp_seg, atomic_path(report_path, sources) as tmp_sr:
        seg.save_as(tmp_seg, enforce_file_format=True)
        report.save_as(tmp_sr, enforce_file_format=True)
    return path, report_path
