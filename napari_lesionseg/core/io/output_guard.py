"""One check every command makes before it reads pixels or writes a byte: no output may be one of its inputs,
two outputs may not be one file, and every output must land in a folder that exists and can be written.

Paths are compared after `os.path.realpath` (symlinks, `..`, relative paths) and, when both exist, by device and
inode (hard links), so `--output ./scans/../pre.nii.gz` or a link to the scan is caught as the scan.
Messages name the options as the user typed them: "--output pre.nii.gz is the file given as --pre".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import LesionSegError

PathLike = str | os.PathLike
Paths = PathLike | Iterable[PathLike] | None


def _each(value: Paths) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)] if str(value) else []
    return [Path(v) for v in value if v is not None and str(v)]


def _real(p: Path) -> str:
    return os.path.realpath(p)


def _identities(p: Path) -> list:
    """What makes two paths one file: the resolved path (symlinks, `..`, relative) and, for an existing file,
    its device and inode (hard links)."""
    keys: list = [_real(p)]
    with contextlib.suppress(OSError):
        st = os.stat(p)
        keys.append((st.st_dev, st.st_ino))
    return keys


def _kind(p: Path) -> str:
    return "folder" if p.is_dir() else "file"


def check_outputs(inputs: Mapping[str, Paths], outputs: Mapping[str, Paths], folders: Iterable[str] = (),
                  distinct_outputs: bool = True) -> None:
    """Refuse (LesionSegError) before any work when an output would overwrite an input or another output, or
    cannot be written.

    inputs / outputs: option name (as the user sees it, e.g. "--pre") → a path, a list of paths, or None. An input
    label that is not an option describes where the files come from ("a scan in the --input folder").
    folders: the output options that name folders (created when missing); the others name files whose folder
    must already exist.
    distinct_outputs: False lets two output folders be one (a cohort's masks and probability maps, whose file
    names differ).
    """
    check_no_overlap(inputs, outputs, distinct_outputs)
    folder_options = set(folders)
    checked: set[str] = set()
    for label, value in outputs.items():
        for out in _each(value):
            folder = _writable_folder(label, out, label in folder_options)
            if folder not in checked:
                _check_writable(label, out, folder)
                checked.add(folder)


def check_no_overlap(inputs: Mapping[str, Paths], outputs: Mapping[str, Paths], distinct_outputs: bool = True) -> None:
    """The overlap half of `check_outputs`: no output is an input, and (distinct_outputs) no two outputs are one
    file. Used alone for the files a cohort will write into a folder that may not exist yet."""
    seen_inputs: dict = {}
    for label, value in inputs.items():
        for src in _each(value):
            for key in _identities(src):
                seen_inputs.setdefault(key, (label, src))
    seen_outputs: dict = {}
    for olabel, value in outputs.items():
        for out in _each(value):
            keys = _identities(out)
            hit = next((seen_inputs[k] for k in keys if k in seen_inputs), None)
            if hit:
                ilabel, src = hit
                what = _kind(src)
                given = f"the {what} given as {ilabel}" if ilabel.startswith("-") else f"{src}, {ilabel}"
                raise LesionSegError(f"{olabel} {out} is {given}; choose another "
                                     f"{'name' if what == 'file' else 'folder'} (inputs are never overwritten).")
            if not distinct_outputs:
                continue
            twin = next((seen_outputs[k] for k in keys if k in seen_outputs), None)
            if twin:
                raise LesionSegError(f"{twin} and {olabel} both name {out}; give each output its own name.")
            for k in keys:
                seen_outputs[k] = olabel


def _writable_folder(label: str, out: Path, is_folder: bool) -> str:
    """The existing folder the output will be written into (for a folder output: its nearest existing ancestor)."""
    if is_folder:
        if out.exists() and not out.is_dir():
            raise LesionSegError(f"{label} {out} is a file; give a folder.")
        probe = Path(_real(out))
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise LesionSegError(f"{label} {out}: {probe} is a file, not a folder, so nothing can be created in it.")
        return str(probe)
    if out.is_dir():
        raise LesionSegError(f"{label} {out} is a folder; give a file name to write to.")
    parent = Path(_real(out)).parent
    if not parent.exists():
        ancestor = parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise LesionSegError(f"{label} {out}: {ancestor} is a file, not a folder.")
        raise LesionSegError(f"{label} {out}: the folder {parent} does not exist.")
    if not parent.is_dir():
        raise LesionSegError(f"{label} {out}: {parent} is a file, not a folder.")
    return str(parent)


def _check_writable(label: str, out: Path, folder: str) -> None:
    """os.access first (clear for ordinary permissions), then a real probe file: root passes os.access everywhere,
    and read-only mounts or special file systems only say no when a file is created."""
    problem = None
    if not os.access(folder, os.W_OK | os.X_OK):
        problem = "no permission to write there, or a read-only disk"
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=".lesionseg-write-check-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            problem = e.strerror or str(e)
    if problem:
        raise LesionSegError(f"{label} {out}: cannot write into the folder {folder} ({problem.lower()}); "
                             "choose a folder you can write to.")


def folder_files(folder: str | os.PathLike | None) -> list[Path]:
    """Every file under an input folder (a cohort, a DICOM series), so that no output replaces one of them."""
    if not folder or not Path(folder).is_dir():
        return [Path(folder)] if folder else []
    return [p for p in Path(folder).rglob("*") if p.is_file()]


def model_files(name_or_path: str | None) -> list[Path]:
    """The files of a model given by path (its card and weights), so that no output replaces them; a model given
    by name lives in a model folder that commands do not write into."""
    if not name_or_path:
        return []
    p = Path(name_or_path)
    if not p.is_file():
        return []
    return [p, p.with_suffix(".json"), p.with_suffix(".safetensors")]
