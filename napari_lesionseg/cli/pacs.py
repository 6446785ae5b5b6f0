"""`lesionseg pacs --dicomweb URL [--study UID]`: list the studies of a PACS, or the series of one study."""

from __future__ import annotations

from ..core.errors import LesionSegError


def add_parser(sub) -> None:
    p = sub.add_parser("pacs", help="list the studies on a PACS (DICOMweb), or the series of one study")
    from .pacs_args import add_pacs_arguments

    add_pacs_arguments(p, study_help="list this study's series (default: list the studies)")
    p.add_argument("--patient", help="only the studies of this PatientID")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.io.dicomweb import closing, connect, list_series, list_studies, series_label

    if not args.dicomweb:
        raise LesionSegError("Give the PACS address: --dicomweb URL.")
    study = args.study
    args.study = args.study or "-"  # login_from_args wants a study; listing studies needs none
    from .pacs_args import login_from_args

    with closing(connect(login_from_args(args))) as client:
        if not study:
            for s in list_studies(client, patient_id=args.patient):
                print(f"{s['study_uid']}\t{s['patient_id']}\t{s['date']}\t{s['description']}\t"
                      f"{','.join(s['modalities'])}")
            return 0
        for s in list_series(client, study):
            print(f"{s['series_uid']}\t{series_label(s)}")
    return 0
