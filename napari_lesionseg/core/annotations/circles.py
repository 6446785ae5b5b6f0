"""Circles (centre + radius, as mini-MIAS gives its abnormalities) → disk masks.

mini-MIAS `annotations.csv` columns: image, background, cls, severity, col, row, radius (pixels, row/col already
top-left origin). Rows without a centre (normal images, some calcification clusters) have no circle.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LesionSegError


@dataclass
class Circle:
    row: float
    col: float
    radius: float  # pixels unless stated otherwise by the caller
    image: str = ""
    cls: str = ""


def read_circle_table(path: str | os.PathLike, image: str | None = None) -> list[Circle]:
    """Circles of a table with columns (image,) col/x, row/y, radius; only those of `image` when given."""
    p = Path(path)
    if not p.is_file():
        raise LesionSegError(f"Circle table not found: {p}")
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
        pick = lambda *names: next((cols[n] for n in names if n in cols), None)  # noqa: E731
        ccol, crow, crad = pick("col", "x", "axis-1"), pick("row", "y", "axis-0"), pick("radius", "r")
        cimg, ccls = pick("image", "name", "file"), pick("cls", "class")
        if not (ccol and crow and crad):
            raise LesionSegError(f"{p.name}: needs columns col (or x), row (or y) and radius; got {reader.fieldnames}.")
        out = []
        for n, r in enumerate(reader, start=2):
            name = (r.get(cimg) or "").strip() if cimg else ""
            if image is not None and Path(name).stem != Path(image).stem:
                continue
            vals = [(r.get(c) or "").strip() for c in (crow, ccol, crad)]
            if not all(vals):
                continue  # a row without a circle (e.g. a normal image)
            try:
                row, col, rad = (float(v) for v in vals)
            except ValueError:
                raise LesionSegError(f"{p.name}, row {n}: centre/radius {vals} are not numbers.") from None
            if rad <= 0:
                raise LesionSegError(f"{p.name}, row {n}: radius {rad} must be positive.")
            out.append(Circle(row, col, rad, name, (r.get(ccls) or "").strip() if ccls else ""))
    return out


def circles_to_labels(shape: tuple[int, int], circles: list[Circle], spacing=None,
                      radius_in_mm: bool = False) -> np.ndarray:
    """Label image with circle i filled with value i+1 (earlier circles stay on top where they overlap).

    A circle whose centre lies outside the image is an error; one that only extends past the edge is clipped.
    """
    if len(circles) == 0:
        raise LesionSegError("There are no circles to draw.")
    shape = tuple(int(s) for s in shape[:2])
    sp = np.ones(2) if spacing is None else np.broadcast_to(np.asarray(spacing, float), (2,))
    labels = np.zeros(shape, np.int32)
    for i, c in enumerate(circles):
        if not (-0.5 <= c.row <= shape[0] - 0.5 and -0.5 <= c.col <= shape[1] - 0.5):
            raise LesionSegError(f"Circle {i + 1} is centred at row {c.row:g}, col {c.col:g}, outside the "
                                 f"{shape[0]}×{shape[1]} image.")
        r_px = np.array([c.radius, c.radius], float) / (sp if radius_in_mm else 1.0)
        lo = np.maximum(np.floor([c.row - r_px[0], c.col - r_px[1]]).astype(int), 0)
        hi = np.minimum(np.ceil([c.row + r_px[0], c.col + r_px[1]]).astype(int) + 1, shape)
        yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1]]
        disk = ((yy - c.row) / r_px[0]) ** 2 + ((xx - c.col) / r_px[1]) ** 2 <= 1.0
        view = labels[lo[0]:hi[0], lo[1]:hi[1]]
        view[disk & (view == 0)] = i + 1
    return labels
