"""Entry point of the `lesionseg` command.

Each subcommand lives in its own module of this package with `add_parser(subparsers)` (which sets
`func=run`) and `run(args) -> int`. A `LesionSegError` becomes a one-line message and exit status 2; so do, as
a last resort, running out of memory and file-system errors (permission denied, disk full): never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import LesionSegError

SUBCOMMANDS = [
    "ensemble",
    "evaluate",
    "export_seg",
    "finetune_prompt",
    "lines_to_masks",
    "points_to_masks",
    "measure",
    "models_cmd",
    "pacs",
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
    except MemoryError:
        print("lesionseg: error: not enough memory for this input (is a file damaged, or far larger than "
              "expected?); close other programs or give a smaller input.", file=sys.stderr)
        return 2
    except OSError as e:  # last resort: the commands check their outputs first (core/io/output_guard.py)
        print(f"lesionseg: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lesionseg: interrupted", file=sys.stderr)
        return 130


def os_error_message(e: OSError) -> str:
    """One line for a file-system error: what went wrong and with which file, no traceback."""
    what = e.strerror or str(e) or type(e).__name__
    files = [f for f in (e.filename, getattr(e, "filename2", None)) if f]
    hint = ""
    if isinstance(e, PermissionError):
        hint = "; choose a file or folder you can write to (or read, for inputs)"
    elif getattr(e, "errno", None) == 28:  # ENOSPC
        hint = "; free some disk space or write elsewhere"
    return f"{what}: {' -> '.join(str(f) for f in files)}{hint}" if files else f"{what}{hint}"


if __name__ == "__main__":
    sys.exit(main())
