"""Atomic writes: a crash or a bad input never leaves a half-written file, and the source scan is never overwritten.

Writers produce a temporary file in the destination folder (same file system, so `os.replace` is atomic) whose
name keeps the real extension (nibabel picks gzip from '.gz'), then rename it over the destination. The file gets
the permissions a plain `open(path, "w")` would give it (0666 minus the umask, or the mode of the file it replaces),
not mkstemp's private 0600: colleagues on a shared cohort server must be able to read the masks and tables.
This is the project's one atomic writer: masks, CSV tables, autosaves, published models and checkpoints use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import LesionSegError


def full_suffix(path: Path) -> str:
    """'.nii.gz' for 'a.nii.gz', '.ome.tif' for 'a.ome.tif', else the last suffix."""
    name = path.name.lower()
    for double in (".nii.gz", ".ome.tiff", ".ome.tif"):
        if name.endswith(double):
            return path.name[-len(double):]
    return path.suffix


def free_path(path: str | os.PathLike, ours: Iterable[str | os.PathLike] = ()) -> Path:
    """`path` if it does not exist (or is one of `ours`, files this session wrote), else the first free
    `<stem>-1<suffix>`, `<stem>-2<suffix>`…: a file someone else made (an expert mask) is never replaced."""
    target = Path(path)
    mine = {Path(p).resolve() for p in ours}
    if not target.exists() or target.resolve() in mine:
        return target
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    k = 1
    while True:
        candidate = target.with_name(f"{stem}-{k}{suffix}")
        if not candidate.exists() or candidate.resolve() in mine:
            return candidate
        k += 1


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_overwriting_sources(path: str | os.PathLike, sources: Iterable[str | os.PathLike | None]) -> None:
    """Raise when `path` is one of the scan's own files (or the DICOM folder it came from)."""
    target = Path(path)
    for src in sources:
        if not src:
            continue
        s = Path(src)
        if _same_file(target, s):
            raise LesionSegError(f"Refusing to overwrite the source scan {s}; choose another file name.")
        if s.is_dir() and target.resolve().parent == s.resolve() and target.suffix.lower() in ("", ".dcm"):
            raise LesionSegError(f"Refusing to write a DICOM-like file into the source series folder {s}.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, sources: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, on any error delete it."""
    target = Path(path)
    refuse_overwriting_sources(target, list(sources))
    if target.is_dir():
        raise LesionSegError(f"{target} is a folder; give a file name to write to.")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise LesionSegError(f"The folder {folder} does not exist.")
    suffix = full_suffix(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with contextlib.suppress(OSError):  # some network shares have no Unix modes; the write must not fail
            os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask alone must set it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """What a plain write would give: the replaced file's own mode, else 0666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write a text file atomically (CSV tables, JSON cards, error reports)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline=newline, encoding="utf-8") as f:
            f.write(text)
    return Path(path)
