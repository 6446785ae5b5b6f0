"""`lesionseg predict --dicomweb URL --study UID [--series UID]`: segment a series on a PACS and store the result
(DICOM SEG + measurement report) back in the same study."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import LesionSegError


def pick_series(client, study: str, series: str | None) -> dict:
    """The series to segment: the one asked for, or the study's only image series."""
    from ..core.io.dicomweb import list_series, series_label

    found = list_series(client, study)
    if not found:
        raise LesionSegError(f"The PACS has no study {study} (or it holds no series).")
    if series:
        match = [s for s in found if s["series_uid"] == series]
        if not match:
            raise LesionSegError(f"Study {study} has no series {series}.")
        return match[0]
    images = [s for s in found if s["is_image"]]
    if len(images) != 1:
        listing = "; ".join(f"{s['series_uid']} = {series_label(s)}" for s in images) or "none"
        raise LesionSegError(f"Study {study} holds {len(images)} image series; choose one with --series. {listing}")
    return images[0]


def run_dicomweb(args) -> int:
    from ..core.inference.engine import Predictor
    from ..core.inference.run import mask_from_probs, predict_scan
    from ..core.io.atomic import atomic_path
    from ..core.io.dicomweb import closing, connect, fetch_series, redact, seg_with_report, store_instances
    from ..core.models import default_registry
    from .pacs_args import login_from_args
    from .predict import seg_options

    if args.input or args.pre:
        raise LesionSegError("--dicomweb takes the scan from the PACS: leave out --input and --pre.")
    if args.output and not args.output.lower().endswith(".dcm"):
        raise LesionSegError("With --dicomweb, --output is a local copy of the DICOM SEG: name it *.dcm.")
    from ..core.io.output_guard import check_outputs, model_files

    check_outputs({"--model": model_files(args.model)}, {"--output": args.output})
    login = login_from_args(args)
    card = default_registry().get(args.model)
    predictor = Predictor(card, device=args.device, batch_size=args.batch_size, flips=not args.no_flips,
                          notice=lambda m: print(f"lesionseg: {m}", file=sys.stderr))
    with closing(connect(login)) as client:
        series = pick_series(client, args.study, args.series)
        scans = fetch_series(client, args.study, series["series_uid"])
        if len(scans) != 1:
            raise LesionSegError(f"Series {series['series_uid']} holds {len(scans)} separate images; segment them "
                                 "one at a time (open them with the dock's 'Open from PACS').")
        scan = scans[0]
        probs = predict_scan(predictor, scan, gate=getattr(args, "gate", None),
                             on_gate=lambda g: print(f"image classes ({g.classifier}): {g.summary()}"))
        mask = mask_from_probs(probs, card, args.threshold)
        objects = seg_with_report(mask, scan.geometry, **seg_options(card))
        seg = objects[0]
        if args.output:
            with atomic_path(Path(args.output)) as tmp:
                seg.save_as(tmp, enforce_file_format=True)
            print(f"wrote {args.output}")
        print(f"segmented series '{series['description'] or series['series_uid']}': {int((mask > 0).sum())} voxels "
              f"in {len(seg.SegmentSequence)} segment(s)")
        if args.no_store:
            print("not stored on the PACS (--no-store)")
        else:
            store_instances(client, objects, args.study)
            print(f"stored DICOM SEG {seg.SOPInstanceUID} (series {seg.SeriesInstanceUID}, "
                  f"{len(seg.SegmentSequence)} segment(s)) and its measurement report in study {args.study} "
                  f"on {redact(client.lesionseg_url)}")
    return 0
