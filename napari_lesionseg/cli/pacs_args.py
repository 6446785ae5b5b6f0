"""Command-line options shared by the commands that talk to a PACS (`predict --dicomweb`, `export-seg --dicomweb`).

Secrets never go on the command line (it shows in `ps` and shell history): the password and the token are read
from environment variables whose names can be changed.
"""

from __future__ import annotations

import os

from ..core.errors import LesionSegError


def add_pacs_arguments(p, study_help: str) -> None:
    g = p.add_argument_group("PACS (DICOMweb)")
    g.add_argument("--dicomweb", metavar="URL",
                   help="DICOMweb root of the PACS, e.g. https://pacs.example.org/dicom-web or "
                        "http://127.0.0.1:8042/dicom-web (Orthanc)")
    g.add_argument("--study", help=study_help)
    g.add_argument("--user", help="user name for basic authentication")
    g.add_argument("--password-env", default="LESIONSEG_PACS_PASSWORD",
                   help="environment variable holding the password (default LESIONSEG_PACS_PASSWORD)")
    g.add_argument("--token-env", default="LESIONSEG_PACS_TOKEN",
                   help="environment variable holding a bearer token (default LESIONSEG_PACS_TOKEN)")
    g.add_argument("--ca-bundle", help="CA certificate file for https with the hospital's own certificate authority")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each PACS answer (default 30)")


def login_from_args(args):
    from ..core.io.dicomweb import PacsLogin

    if not args.study:
        raise LesionSegError("--dicomweb needs --study UID (the StudyInstanceUID; `lesionseg pacs --dicomweb URL` "
                             "lists them).")
    if args.timeout <= 0 or args.timeout > 600:
        raise LesionSegError("--timeout must lie between 0 and 600 seconds.")
    return PacsLogin(url=args.dicomweb, username=args.user, password=os.environ.get(args.password_env) or None,
                     token=os.environ.get(args.token_env) or None, timeout=args.timeout, ca_bundle=args.ca_bundle)
