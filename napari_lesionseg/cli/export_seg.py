"""`lesionseg export-seg`: turn a mask (NIfTI, PNG, TIFF) of a DICOM scan into a DICOM SEG on that scan, and
optionally store it (with its measurement report) in the scan's study on a PACS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LesionSegError


def add_parser(sub) -> None:
    p = sub.add_parser("export-seg", help="write a mask of a DICOM scan as DICOM SEG (and store it on a PACS)")
    p.add_argument("--mask", required=True, help="mask file (.nii.gz, .nii, .png, .tif) on the DICOM scan's grid")
    p.add_argument("--source", help="the DICOM series folder or file the mask was drawn on")
    p.add_argument("--output", help="DICOM SEG file to write (.dcm)")
    p.add_argument("--model", help="the model that made the mask (its name, version and card go into the SEG); "
                                   "without it the segments are marked as drawn by hand")
    p.add_argument("--edited", action="store_true", help="the model's mask was corrected by hand (SEMIAUTOMATIC)")
    p.add_argument("--names", help="segment names for label values 1, 2, … separated by commas "
                                   "(default: the model's classes, else 'lesion')")
    from .pacs_args import add_pacs_arguments

    add_pacs_arguments(p, study_help="with --dicomweb: the study of the source series (the SEG is stored there)")
    p.add_argument("--series", help="with --dicomweb and no --source: the source series on the PACS")
    p.set_defaults(func=run)


def _source_scan(args, client):
    from ..core.io import read_scan
    from ..core.io.dicomweb import fetch_series

    if args.source:
        scans = [s for s in read_scan(args.source) if s.layer_type == "image"]
    elif client is not None and args.series:
        scans = fetch_series(client, args.study, args.series)
    else:
        raise LesionSegError("Give the DICOM scan the mask belongs to: --source FOLDER, or --dicomweb URL --study UID "
                             "--series UID.")
    if len(scans) != 1:
        raise LesionSegError(f"The source holds {len(scans)} series or images; give exactly one.")
    return scans[0]


def _mask_on(scan, mask_path: str) -> np.ndarray:
    """The mask's labels, checked to lie on the scan's grid (same shape; same affine when both have one)."""
    from ..core.io import read_scan

    [m] = read_scan(mask_path)
    data = np.asarray(m.data)
    if data.ndim == 3 and m.rgb:
        data = data[..., 0]
    if tuple(data.shape) != tuple(scan.spatial_shape):
        raise LesionSegError(f"The mask {Path(mask_path).name} has shape {data.shape} but the scan has "
                             f"{scan.spatial_shape}; it was not drawn on this scan.")
    a, b = m.geometry.nifti_affine, scan.geometry.nifti_affine
    if a is not None and b is not None and not np.allclose(a, b, atol=1e-2):
        raise LesionSegError(f"The mask {Path(mask_path).name} sits elsewhere in space than the scan (different "
                             "affine); it was not drawn on this scan.")
    if data.dtype.kind == "f" and np.any(data != np.round(data)):
        raise LesionSegError("The mask holds fractional values; give a label mask, not probabilities.")
    data = data.astype(np.int64)
    if Path(mask_path).suffix.lower() in (".png", ".tif", ".tiff"):
        if set(np.unique(data)) <= {0, 255}:
            data = (data > 0).astype(np.int64)  # our PNG/TIFF masks store a binary lesion as 255
    return data


def run(args) -> int:
    from ..core.io.dicom_seg import SegAlgorithm, write_seg
    from ..core.io.atomic import atomic_path
    from ..core.io.dicomweb import connect, redact, seg_with_report, store_instances
    from ..core.models import default_registry

    if not args.output and not args.dicomweb:
        raise LesionSegError("Give --output seg.dcm, or --dicomweb URL --study UID to store the SEG on a PACS.")
    if args.output and not args.output.lower().endswith(".dcm"):
        raise LesionSegError(f"A DICOM SEG file ends in .dcm, not {Path(args.output).name}.")
    from ..core.io.output_guard import check_outputs, folder_files, model_files

    check_outputs({"--mask": args.mask, "--source": folder_files(args.source), "--model": model_files(args.model)},
                  {"--output": args.output})
    kw: dict = {"edited": bool(args.edited)}
    if args.model:
        card = default_registry().get(args.model)
        kw.update(algorithm=SegAlgorithm.from_card(card), class_names=[c.name for c in card.classes])
    elif args.edited:
        raise LesionSegError("--edited says a model's mask was corrected: name the model with --model.")
    if args.names:
        kw["class_names"] = [n.strip() for n in args.names.split(",") if n.strip()]
    client = None
    if args.dicomweb:
        from .pacs_args import login_from_args

        client = connect(login_from_args(args))
    try:
        scan = _source_scan(args, client)
        mask = _mask_on(scan, args.mask)
        if client is None:
            write_seg(mask, scan.geometry, args.output, source_path=args.source, **kw)
            print(f"wrote {args.output}")
            return 0
        objects = seg_with_report(mask, scan.geometry, **kw)  # one SEG: the local copy is the stored object
        seg = objects[0]
        if args.output:
            with atomic_path(args.output, [args.source]) as tmp:
                seg.save_as(tmp, enforce_file_format=True)
            print(f"wrote {args.output}")
        store_instances(client, objects, str(seg.StudyInstanceUID))
        print(f"stored DICOM SEG {seg.SOPInstanceUID} and its measurement report in study "
              f"{seg.StudyInstanceUID} on {redact(client.lesionseg_url)}")
    finally:
        if client is not None:
            client._session.close()
    return 0
