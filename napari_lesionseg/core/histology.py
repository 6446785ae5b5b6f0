"""H&E tools: colour deconvolution, Macenko stain normalisation, mitosis heatmaps and counts per region / HPF.

* `deconvolve_he`: haematoxylin (nuclei) and eosin (stroma, cytoplasm) concentration images from an RGB tile
  (Ruifrok & Johnston's fixed stain vectors, via `skimage.color.rgb2hed`).
* `macenko_stain_matrix` / `macenko_normalize`: Macenko et al. (ISBI 2009). The tile's own stain vectors are
  estimated in optical density (OD) space: tissue pixels (OD above `beta` in every channel) are projected onto
  the plane of the two main singular directions; the robust extreme angles (percentiles `alpha`, 100-`alpha`)
  of the projected points are the two stain vectors. Each pixel's concentrations (least squares on those
  vectors) are rescaled so their 99th percentiles match the reference's, and the image is rebuilt with the
  reference's stain vectors. Stain appearance is transferred; structure (the concentrations) is kept.
* `points_heatmap`: exp(-a·d) with d the distance (mm when a spacing is given) to the nearest point; the
  target used for point-annotated mitoses (one value 1 at each point, decaying around it). It uses
  `core.annotations.points.points_to_heatmap` (one implementation in the project).
* `count_points_per_region` and `count_points_per_hpf` / `hotspot_count`: counts per label of a mask, and per
  high-power field (0.237 mm² by default: a 40x objective with a 0.55 mm field diameter).

Images are (y, x, 3) uint8 RGB; points are (row, col) in pixel indices (napari order); spacing is mm per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import LesionSegError

__all__ = [
    "DEFAULT_HPF_AREA_MM2",
    "REFERENCE_STAIN_MATRIX",
    "REFERENCE_MAX_CONCENTRATIONS",
    "deconvolve_he",
    "optical_density",
    "tissue_mask",
    "StainEstimate",
    "macenko_stain_matrix",
    "macenko_normalize",
    "stain_angle_degrees",
    "points_heatmap",
    "count_points_per_region",
    "HpfCounts",
    "count_points_per_hpf",
    "hotspot_count",
]

DEFAULT_HPF_AREA_MM2 = 0.237
"""Area of one high-power field in mm² (WHO/Nottingham grading convention for a 0.55 mm field diameter)."""

# Macenko's reference H&E stain vectors (columns: H, E; rows: OD of R, G, B) and 99th-percentile concentrations,
# the values used by the original implementation; used when no reference tile is given.
REFERENCE_STAIN_MATRIX = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATIONS = np.array([1.9705, 1.0308])


def _check_rgb(rgb: np.ndarray, what: str = "image") -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise LesionSegError(f"The {what} must be an RGB image (height x width x 3), not shape {a.shape}.")
    a = a[..., :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a


# --------------------------------------------------------------------------------------------- deconvolution


def deconvolve_he(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(haematoxylin, eosin) concentration images (float32, >= 0) of an RGB H&E image."""
    from skimage.color import rgb2hed

    a = _check_rgb(rgb)
    hed = rgb2hed(a)
    h = np.clip(hed[..., 0], 0, None).astype(np.float32)
    e = np.clip(hed[..., 1], 0, None).astype(np.float32)
    return h, e


# --------------------------------------------------------------------------------------------------- Macenko


def optical_density(rgb: np.ndarray, background: float = 240.0) -> np.ndarray:
    """OD = -log((I + 1) / Io) per channel, (n, 3) for (y, x, 3) input (Io: the background intensity)."""
    a = _check_rgb(rgb).reshape(-1, 3).astype(np.float64)
    return -np.log((a + 1.0) / background)


def tissue_mask(rgb: np.ndarray, beta: float = 0.15, background: float = 240.0) -> np.ndarray:
    """Pixels with OD above `beta` in every channel (not background glass), shaped like the image."""
    a = _check_rgb(rgb)
    od = optical_density(a, background)
    return (od > beta).all(axis=1).reshape(a.shape[:2])


@dataclass
class StainEstimate:
    stain_matrix: np.ndarray
    """3x2: columns are the unit OD vectors of haematoxylin and eosin (rows R, G, B)."""
    max_concentrations: np.ndarray
    """99th percentile of each stain's concentration over the image's pixels."""
    n_tissue: int


def macenko_stain_matrix(
    rgb: np.ndarray,
    alpha: float = 1.0,
    beta: float = 0.15,
    background: float = 240.0,
    max_pixels: int = 1_000_000,
    seed: int = 0,
) -> StainEstimate:
    """Estimate the H&E stain vectors and maximal concentrations of an RGB tile (Macenko 2009).

    Raises LesionSegError when the tile holds too little tissue to estimate stains.
    """
    od = optical_density(rgb, background)
    keep = (od > beta).all(axis=1)
    od_t = od[keep]
    if len(od_t) < 100:
        raise LesionSegError("Too little stained tissue in this image to estimate H&E stain vectors "
                             f"({len(od_t)} tissue pixels).")
    if len(od_t) > max_pixels:
        od_t = od_t[np.random.default_rng(seed).choice(len(od_t), max_pixels, replace=False)]
    # the plane of the two largest principal directions of the OD cloud
    _, vecs = np.linalg.eigh(np.cov(od_t, rowvar=False))
    plane = vecs[:, [2, 1]]  # largest first
    # point into the positive octant (OD values are positive)
    for k in range(2):
        if plane[:, k].sum() < 0:
            plane[:, k] = -plane[:, k]
    proj = od_t @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    v_lo = plane @ np.array([math.cos(lo), math.sin(lo)])
    v_hi = plane @ np.array([math.cos(hi), math.sin(hi)])
    # haematoxylin absorbs red more than eosin does: its vector has the larger red component
    he = np.stack([v_lo, v_hi], axis=1) if v_lo[0] > v_hi[0] else np.stack([v_hi, v_lo], axis=1)
    he = he * np.sign(he.sum(axis=0, keepdims=True))
    he = he / np.linalg.norm(he, axis=0, keepdims=True)
    # concentrations of all pixels (as in Macenko's reference implementation), subsampled on large images
    od_all = od
    if len(od_all) > max_pixels:
        od_all = od_all[np.random.default_rng(seed + 1).choice(len(od_all), max_pixels, replace=False)]
    conc = np.linalg.lstsq(he, od_all.T, rcond=None)[0]
    max_c = np.percentile(conc, 99, axis=1)
    max_c = np.where(max_c > 1e-6, max_c, 1e-6)
    return StainEstimate(stain_matrix=he, max_concentrations=max_c, n_tissue=int(keep.sum()))


def macenko_normalize(
    rgb: np.ndarray,
    reference: np.ndarray | StainEstimate | None = None,
    alpha: float = 1.0,
    beta: float = 0.15,
    background: float = 240.0,
) -> np.ndarray:
    """The RGB tile re-stained to look like `reference` (an RGB tile or its StainEstimate; None: Macenko's
    standard reference). Background pixels stay near white. Returns uint8 (y, x, 3)."""
    a = _check_rgb(rgb)
    if reference is None:
        ref = StainEstimate(REFERENCE_STAIN_MATRIX, REFERENCE_MAX_CONCENTRATIONS, 0)
    elif isinstance(reference, StainEstimate):
        ref = reference
    else:
        ref = macenko_stain_matrix(reference, alpha=alpha, beta=beta, background=background)
    src = macenko_stain_matrix(a, alpha=alpha, beta=beta, background=background)
    od = optical_density(a, background)
    conc = np.linalg.lstsq(src.stain_matrix, od.T, rcond=None)[0]  # (2, n)
    conc *= (ref.max_concentrations / src.max_concentrations)[:, None]
    out = background * np.exp(-ref.stain_matrix @ conc)
    out = np.clip(out, 0, 255).T.reshape(a.shape)
    return np.round(out).astype(np.uint8)


def stain_angle_degrees(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two stain (OD) vectors, in degrees."""
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


# ------------------------------------------------------------------------------------------- points, counts


def _points_array(points) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    if p.size == 0:
        return np.zeros((0, 2))
    if p.ndim != 2 or p.shape[1] < 2:
        raise LesionSegError(f"points must be an (n, 2) array of (row, col), not shape {p.shape}")
    return p[:, -2:]  # the last two coordinates are (row, col) in the image plane


def points_heatmap(
    points,
    shape: tuple[int, int],
    a: float = 0.1,
    spacing: float | tuple[float, float] | None = None,
) -> np.ndarray:
    """exp(-a·d) on a (y, x) grid, d the distance to the nearest point (pixels, or mm when spacing is given).

    The same map as `core.annotations.points.points_to_heatmap` (which it uses), made lenient for counting
    work on tiles: no points gives zeros, and points just outside the tile (annotations of a neighbouring
    tile) still shape the map near the border instead of being refused.
    """
    from .annotations.points import points_to_heatmap

    shape = tuple(int(s) for s in shape[:2])
    pts = _points_array(points)
    out = np.zeros(shape, np.float32)
    if len(pts) == 0:
        return out
    if spacing is None:
        sampling = (1.0, 1.0)
    elif np.isscalar(spacing):
        sampling = (float(spacing), float(spacing))
    else:
        sampling = tuple(float(s) for s in spacing[-2:])
    inside = ((pts > -0.5) & (pts < np.asarray(shape) - 0.5)).all(axis=1)
    if inside.any():
        out = points_to_heatmap(shape, pts[inside], a, spacing=sampling)
    if (~inside).any():
        yy = (np.arange(shape[0])[:, None]).astype(np.float64)
        xx = (np.arange(shape[1])[None, :]).astype(np.float64)
        for r, c in pts[~inside]:
            d = np.hypot((yy - r) * sampling[0], (xx - c) * sampling[1])
            np.maximum(out, np.exp(-float(a) * d).astype(np.float32), out=out)
    return out


def count_points_per_region(points, labels: np.ndarray, spacing: float | tuple[float, float] | None = None):
    """Points per label of a 2D label image: {label: {"count", "area_mm2", "per_mm2"}} (areas when spacing given).

    Points on background (0) or outside the image are reported under label 0 / not at all respectively.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise LesionSegError(f"regions must be a 2D label image, not shape {lab.shape}")
    pts = _points_array(points)
    idx = np.round(pts).astype(np.int64)
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < lab.shape[0]) & (idx[:, 1] >= 0) & (idx[:, 1] < lab.shape[1])
    hit = lab[idx[inside, 0], idx[inside, 1]]
    values, pixel_counts = np.unique(lab, return_counts=True)
    px_area = None
    if spacing is not None:
        s = (float(spacing),) * 2 if np.isscalar(spacing) else tuple(float(v) for v in spacing[-2:])
        px_area = s[0] * s[1]
    out = {}
    for v, n_px in zip(values.tolist(), pixel_counts.tolist()):
        count = int(np.count_nonzero(hit == v))
        entry = {"count": count, "n_pixels": int(n_px)}
        if px_area is not None:
            area = n_px * px_area
            entry["area_mm2"] = float(area)
            entry["per_mm2"] = float(count / area) if area else 0.0
        out[int(v)] = entry
    return out


@dataclass
class HpfCounts:
    counts: np.ndarray
    """(rows, cols) points per field, fields tiling the image from its top-left corner."""
    field_size_px: tuple[float, float]
    """side of one square field in pixels (rows, cols)."""
    hpf_area_mm2: float
    n_points: int

    @property
    def max_per_hpf(self) -> int:
        return int(self.counts.max()) if self.counts.size else 0

    @property
    def mean_per_hpf(self) -> float:
        return float(self.counts.mean()) if self.counts.size else 0.0

    def field_bounds(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(row0, col0, row1, col1) pixel bounds of field (i, j)."""
        h, w = self.field_size_px
        return i * h, j * w, (i + 1) * h, (j + 1) * w


def _spacing_pair(spacing) -> tuple[float, float]:
    if spacing is None:
        raise LesionSegError("Counting per high-power field needs the pixel size in mm (e.g. 0.00025 at 40x).")
    s = (float(spacing),) * 2 if np.isscalar(spacing) else tuple(float(v) for v in spacing[-2:])
    if min(s) <= 0:
        raise LesionSegError(f"pixel size must be positive, not {s}")
    return s


def count_points_per_hpf(points, shape: tuple[int, int], spacing, hpf_area_mm2: float = DEFAULT_HPF_AREA_MM2,
                         ) -> HpfCounts:
    """Points per square high-power field of `hpf_area_mm2`, the image tiled from its top-left corner.

    Partial fields at the right/bottom edges are kept (their counts are lower bounds).
    """
    sy, sx = _spacing_pair(spacing)
    side_mm = math.sqrt(hpf_area_mm2)
    fh, fw = side_mm / sy, side_mm / sx
    ny = max(1, math.ceil(shape[0] / fh))
    nx = max(1, math.ceil(shape[1] / fw))
    pts = _points_array(points)
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < shape[0] - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < shape[1] - 0.5)
    pts = pts[inside]
    counts = np.zeros((ny, nx), np.int64)
    if len(pts):
        i = np.clip(np.floor((pts[:, 0] + 0.5) / fh).astype(int), 0, ny - 1)
        j = np.clip(np.floor((pts[:, 1] + 0.5) / fw).astype(int), 0, nx - 1)
        np.add.at(counts, (i, j), 1)
    return HpfCounts(counts=counts, field_size_px=(fh, fw), hpf_area_mm2=float(hpf_area_mm2), n_points=len(pts))


def hotspot_count(points, shape: tuple[int, int], spacing, n_fields: int = 10,
                  hpf_area_mm2: float = DEFAULT_HPF_AREA_MM2, step_px: int | None = None):
    """The largest number of points in any square window of `n_fields` HPFs of area (the mitotic-count hotspot).

    Returns (count, (row0, col0, row1, col1)) of the best window in pixels; a window larger than the image is
    clipped to it. The window slides in steps of `step_px` (default: a tenth of an HPF side).
    """
    sy, sx = _spacing_pair(spacing)
    side_mm = math.sqrt(n_fields * hpf_area_mm2)
    wh = min(shape[0], max(1, int(round(side_mm / sy))))
    ww = min(shape[1], max(1, int(round(side_mm / sx))))
    pts = _points_array(points)
    if len(pts) == 0:
        return 0, (0, 0, wh, ww)
    step = step_px or max(1, int(round(math.sqrt(hpf_area_mm2) / max(sy, sx) / 10)))
    # a coarse grid of point counts, then a summed-area table over windows of the grid
    gy = math.ceil(shape[0] / step)
    gx = math.ceil(shape[1] / step)
    grid = np.zeros((gy, gx), np.int64)
    r = np.clip(np.round(pts[:, 0]).astype(int), 0, shape[0] - 1) // step
    c = np.clip(np.round(pts[:, 1]).astype(int), 0, shape[1] - 1) // step
    np.add.at(grid, (r, c), 1)
    sat = np.zeros((gy + 1, gx + 1), np.int64)
    sat[1:, 1:] = grid.cumsum(0).cumsum(1)
    kh = max(1, min(gy, int(round(wh / step))))
    kw = max(1, min(gx, int(round(ww / step))))
    win = sat[kh:, kw:] - sat[:-kh, kw:] - sat[kh:, :-kw] + sat[:-kh, :-kw]
    i, j = np.unravel_index(int(np.argmax(win)), win.shape)
    return int(win[i, j]), (i * step, j * step, min(shape[0], (i + kh) * step), min(shape[1], (j + kw) * step))
