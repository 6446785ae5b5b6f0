"""Autosave of masks being corrected, so that a crash loses at most a minute of work.

Each mask is kept as one compressed `.npz` in the autosave folder (`$LESIONSEG_AUTOSAVE_DIR`, else
`platformdirs.user_data_dir("napari-lesionseg")/autosave`), named after the layer and the scan it belongs
to, holding the array and a JSON record: layer name, source scan path, spacing, NIfTI affine, shape, dtype,
time saved. Saving the same layer again replaces its file; the write is atomic (temporary file in the same
folder, then `os.replace`, by `io/atomic.py`), so a crash while saving leaves the previous autosave intact.

Qt-free: `napari_lesionseg.napari.autosave` runs the timer and the "Recover autosaved masks" action.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import Geometry
from .io.atomic import atomic_path

__all__ = ["autosave_dir", "AutosaveEntry", "autosave_mask", "list_autosaves", "load_autosave",
           "remove_autosave", "prune_autosaves", "autosave_key"]

ENV_VAR = "LESIONSEG_AUTOSAVE_DIR"
SUFFIX = ".lesionseg-autosave.npz"


def autosave_dir(create: bool = True) -> Path:
    """The autosave folder: `$LESIONSEG_AUTOSAVE_DIR`, else the per-user data folder's `autosave`."""
    env = os.environ.get(ENV_VAR)
    if env:
        d = Path(env).expanduser()
    else:
        import platformdirs

        d = Path(platformdirs.user_data_dir("napari-lesionseg")) / "autosave"
    if create:
        d.mkdir(parents=True, exist_ok=True)
    return d


def autosave_key(name: str, source: str | os.PathLike | None = None) -> str:
    """A file-name-safe key: the layer name plus a short hash of the name and source (so that two scans
    with a layer called 'mask' do not overwrite each other)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "mask"
    digest = hashlib.sha1(f"{name}\0{source or ''}".encode()).hexdigest()[:10]
    return f"{safe}-{digest}"


@dataclass
class AutosaveEntry:
    path: Path
    name: str
    source: str | None
    saved_at: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def saved_datetime(self) -> _dt.datetime:
        return _dt.datetime.fromisoformat(self.saved_at)

    def describe(self) -> str:
        when = self.saved_datetime.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        src = f" of {Path(self.source).name}" if self.source else ""
        return f"{self.name}{src} — {'×'.join(map(str, self.shape))}, saved {when}"


def _geometry_record(geometry: Geometry | None) -> dict:
    if geometry is None:
        return {}
    rec = {"spacing": [float(s) for s in geometry.spacing], "reversed_axes": bool(geometry.reversed_axes)}
    if geometry.nifti_affine is not None:
        rec["nifti_affine"] = np.asarray(geometry.nifti_affine, float).tolist()
    return rec


def _geometry_from_record(rec: dict) -> Geometry | None:
    if not rec or "spacing" not in rec:
        return None
    aff = rec.get("nifti_affine")
    return Geometry(
        spacing=tuple(float(s) for s in rec["spacing"]),
        nifti_affine=None if aff is None else np.asarray(aff, float),
        reversed_axes=bool(rec.get("reversed_axes", True)),
    )


def autosave_mask(
    mask: np.ndarray,
    name: str,
    geometry: Geometry | None = None,
    source: str | os.PathLike | None = None,
    directory: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> Path:
    """Save `mask` with its geometry; returns the autosave file. Same name+source -> same file (replaced)."""
    folder = Path(directory) if directory is not None else autosave_dir()
    folder.mkdir(parents=True, exist_ok=True)
    mask = np.asarray(mask)
    record = {
        "name": name,
        "source": None if source is None else str(source),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "shape": list(mask.shape),
        "dtype": str(mask.dtype),
        "geometry": _geometry_record(geometry),
        "extra": extra or {},
    }
    target = folder / f"{autosave_key(name, source)}{SUFFIX}"
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, mask=mask, record=np.array(json.dumps(record)))
        f.flush()
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return target


def _read_record(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["record"]))


def list_autosaves(directory: str | os.PathLike | None = None) -> list[AutosaveEntry]:
    """Autosaved masks, newest first (unreadable files are skipped)."""
    folder = Path(directory) if directory is not None else autosave_dir(create=False)
    if not folder.is_dir():
        return []
    entries = []
    for p in folder.glob(f"*{SUFFIX}"):
        try:
            rec = _read_record(p)
        except Exception:
            continue
        entries.append(AutosaveEntry(path=p, name=rec.get("name", p.stem), source=rec.get("source"),
                                     saved_at=rec.get("saved_at", ""), shape=tuple(rec.get("shape", ())),
                                     dtype=rec.get("dtype", "")))
    entries.sort(key=lambda e: e.saved_at, reverse=True)
    return entries


def load_autosave(entry: AutosaveEntry | str | os.PathLike) -> tuple[np.ndarray, Geometry | None, dict]:
    """(mask, geometry or None, record) of an autosave."""
    path = entry.path if isinstance(entry, AutosaveEntry) else Path(entry)
    with np.load(path, allow_pickle=False) as z:
        mask = np.array(z["mask"])
        record = json.loads(str(z["record"]))
    return mask, _geometry_from_record(record.get("geometry", {})), record


def remove_autosave(entry: AutosaveEntry | str | os.PathLike) -> None:
    path = entry.path if isinstance(entry, AutosaveEntry) else Path(entry)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def prune_autosaves(max_age_days: float = 30.0, directory: str | os.PathLike | None = None) -> int:
    """Delete autosaves older than `max_age_days` (by file time) so the folder does not grow forever; returns
    how many were deleted. Leftover temporary files of an interrupted save go too."""
    import time

    folder = Path(directory) if directory is not None else autosave_dir(create=False)
    if not folder.is_dir():
        return 0
    limit = time.time() - max_age_days * 86400
    removed = 0
    for p in list(folder.glob(f"*{SUFFIX}")) + list(folder.glob(f".*{SUFFIX}.*.part")):
        try:
            if p.stat().st_mtime < limit:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed
