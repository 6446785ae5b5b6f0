"""Read exactly what napari writes when a Shapes or Points layer is saved as CSV.

Shapes: `index,shape-type,vertex-index,axis-0,axis-1[,axis-2]`, one row per vertex.
Points: `index,axis-0,axis-1[,axis-2]`, one row per point, plus one column per point property (e.g. `label`).
Coordinates are the layer's data coordinates — the image's pixel/voxel indices when the layer was drawn with the
image's scale; `world_to_voxels` converts millimetre (world) coordinates when it was not.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..io.atomic import atomic_path


@dataclass
class Shape:
    index: int
    shape_type: str
    vertices: np.ndarray  # (N, D) in napari axis order


@dataclass
class PointTable:
    coords: np.ndarray  # (N, D)
    properties: dict[str, np.ndarray] = field(default_factory=dict)


def _rows(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    p = Path(path)
    if not p.is_file():
        raise LesionSegError(f"Annotation file not found: {p}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as e:
        raise LesionSegError(f"Cannot read {p.name} as CSV: {e}") from e
    if not rows:
        raise LesionSegError(f"{p.name} is empty: no annotations to convert.")
    return [c.strip() for c in rows[0]], rows[1:]


def _axis_columns(header: list[str], name: str) -> list[int]:
    axes = sorted((int(h.split("-")[1]), i) for i, h in enumerate(header) if h.startswith("axis-") and h[5:].isdigit())
    if len(axes) < 2 or [a for a, _ in axes] != list(range(len(axes))):
        raise LesionSegError(f"{name}: expected columns axis-0, axis-1[, axis-2] as napari writes them; got {header}.")
    return [i for _, i in axes]


def _float(value: str, name: str, line: int) -> float:
    try:
        v = float(value)
    except ValueError:
        raise LesionSegError(f"{name}, row {line}: {value!r} is not a number.") from None
    if not np.isfinite(v):
        raise LesionSegError(f"{name}, row {line}: coordinate {value!r} is not finite.")
    return v


def read_shapes_csv(path: str | os.PathLike) -> list[Shape]:
    """Shapes in file order, each with its vertices in vertex-index order."""
    name = Path(path).name
    header, rows = _rows(path)
    need = {"index", "shape-type", "vertex-index"}
    if not need <= set(header):
        hint = " (this looks like a Points CSV)" if "index" in header and "shape-type" not in header else ""
        raise LesionSegError(f"{name} is not a napari Shapes CSV{hint}: it needs columns "
                             f"index,shape-type,vertex-index,axis-0,axis-1…; got {','.join(header)}.")
    ci, ct, cv = (header.index(k) for k in ("index", "shape-type", "vertex-index"))
    axes = _axis_columns(header, name)
    shapes: dict[int, tuple[str, list]] = {}
    for n, r in enumerate(rows, start=2):
        if len(r) < len(header):
            raise LesionSegError(f"{name}, row {n}: {len(r)} values for {len(header)} columns.")
        idx = int(_float(r[ci], name, n))
        kind = r[ct].strip()
        entry = shapes.setdefault(idx, (kind, []))
        if entry[0] != kind:
            raise LesionSegError(f"{name}, row {n}: shape {idx} changes type from {entry[0]} to {kind}.")
        entry[1].append((_float(r[cv], name, n), [_float(r[i], name, n) for i in axes]))
    if not shapes:
        raise LesionSegError(f"{name} holds no shapes: draw a line across each lesion and save the layer again.")
    out = []
    for idx in sorted(shapes):
        kind, verts = shapes[idx]
        verts.sort(key=lambda v: v[0])
        out.append(Shape(idx, kind, np.array([v[1] for v in verts], float)))
    return out


def read_points_csv(path: str | os.PathLike) -> PointTable:
    """Point coordinates (N, D) and any property columns (numeric where possible)."""
    name = Path(path).name
    header, rows = _rows(path)
    if "shape-type" in header:
        raise LesionSegError(f"{name} is a napari Shapes CSV, not a Points CSV.")
    axes = _axis_columns(header, name)
    if not rows:
        raise LesionSegError(f"{name} holds no points: click on each lesion and save the layer again.")
    coords = []
    for n, r in enumerate(rows, start=2):
        if len(r) < len(header):
            raise LesionSegError(f"{name}, row {n}: {len(r)} values for {len(header)} columns.")
        coords.append([_float(r[i], name, n) for i in axes])
    props = {}
    for i, h in enumerate(header):
        if h == "index" or i in axes:
            continue
        col = [r[i] for r in rows]
        try:
            props[h] = np.array([float(c) for c in col])
        except ValueError:
            props[h] = np.array(col, dtype=object)
    return PointTable(np.array(coords, float), props)


def write_shapes_csv(path, shapes: list[np.ndarray], shape_types: list[str] | None = None) -> None:
    """The same CSV napari writes (used by tests and to save converted annotations)."""
    ndim = max(s.shape[1] for s in shapes)
    shape_types = shape_types or ["line"] * len(shapes)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "shape-type", "vertex-index", *[f"axis-{i}" for i in range(ndim)]])
        for i, (s, t) in enumerate(zip(shapes, shape_types)):
            for j, v in enumerate(s):
                w.writerow([i, t, j, *v])


def write_points_csv(path, coords: np.ndarray, properties: dict | None = None) -> None:
    coords = np.atleast_2d(np.asarray(coords, float))
    properties = properties or {}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *[f"axis-{i}" for i in range(coords.shape[1])], *properties])
        for i, c in enumerate(coords):
            w.writerow([i, *c, *[properties[k][i] for k in properties]])


def world_to_voxels(coords: np.ndarray, scale, translate=None) -> np.ndarray:
    """World (mm) coordinates of a layer drawn without the image's scale → the image's voxel indices."""
    c = np.asarray(coords, float)
    s = np.asarray(scale, float)[-c.shape[-1]:]
    t = np.zeros_like(s) if translate is None else np.asarray(translate, float)[-c.shape[-1]:]
    return (c - t) / s


def shapes_to_segments(shapes: list[Shape], image_ndim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Line/path shapes → their diameter segments (a path counts by its two farthest vertices).

    A 2D shape drawn on one slice of a volume in a 2D view lacks the slice axis; that is an error, not a guess.
    """
    segs = []
    for s in shapes:
        if s.shape_type not in ("line", "path", "polygon"):
            raise LesionSegError(f"Shape {s.index} is a {s.shape_type}; draw lines (or paths) across the lesions.")
        v = s.vertices
        if v.shape[1] != image_ndim:
            raise LesionSegError(f"Shape {s.index} has {v.shape[1]}-D vertices but the image is {image_ndim}-D.")
        if len(v) < 2:
            raise LesionSegError(f"Shape {s.index} has a single vertex: a line needs two ends.")
        if len(v) == 2:
            segs.append((v[0], v[1]))
            continue
        d = ((v[:, None, -2:] - v[None, :, -2:]) ** 2).sum(-1)
        i, j = np.unravel_index(np.argmax(d), d.shape)
        segs.append((v[i], v[j]))
    return segs


def split_boxes(shapes: list[Shape]) -> tuple[list[Shape], list[Shape]]:
    """(rectangles, every other shape): napari's rectangle tool draws the box prompts, the line tool the lines."""
    boxes = [s for s in shapes if s.shape_type == "rectangle"]
    return boxes, [s for s in shapes if s.shape_type != "rectangle"]


def shapes_to_boxes(shapes: list[Shape], image_ndim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rectangle shapes → (corner, opposite corner) of their axis-aligned extent; one slice each in a volume."""
    boxes = []
    for s in shapes:
        v = s.vertices
        if v.shape[1] != image_ndim:
            raise LesionSegError(f"Shape {s.index} has {v.shape[1]}-D vertices but the image is {image_ndim}-D.")
        if image_ndim == 3 and np.ptp(v[:, 0]) > 1.0:
            raise LesionSegError(f"Rectangle {s.index} spans slices; draw it on one slice.")
        boxes.append((v.min(0), v.max(0)))
    return boxes
