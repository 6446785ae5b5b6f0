"""Entry point of the `lesionseg` command.

Each subcommand lives in its own module of this package with `add_parser(subparsers)` (which sets
`func=run`) and `run(args) -> int`. A `LesionSegError` becomes a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import LesionSegError

SUBCOMMANDS = [
    "ensemble",
    "lines_to_masks",
    "points_to_masks",
    "measure",
    "models_cmd",
    "predict",
    "train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionseg",
        description="Breast lesion segmentation for MRI, mammography, H&E histology and ultrasound.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LesionSegError as e:
        print(f"lesionseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lesionseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
