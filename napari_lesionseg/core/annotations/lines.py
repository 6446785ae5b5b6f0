"""Diameter line (RECIST long axis, optionally with its short axis) → a lesion mask that follows the image.

The line fixes the lesion's position and extent; the image fixes its boundary. Everything happens in the line's
canonical frame (`frame.LineFrame`), in millimetres, so pixel spacing and the line's angle do not matter.

Two methods, chosen by measurement (benchmarks/eval_prompt_modalities.py, eval_line_to_mask.py):
- "learned": the prompt network (models/line_prompt/prompt_unet: lines, boxes, clicks; trained on ultrasound,
  DCE-MRI slices, mammograms and nuclei, both intensity polarities);
- "classical": a random walker on the smoothed frame, seeded by the line's core (inside) and by what lies
  beyond its ends and outside an ellipse band (outside), multiplied with that ellipse prior.
"auto" uses the learned model for 2D when it is installed, the classical method otherwise (README: held-out Dice
per modality for both).

In a volume the slice mask seeds a 3D random walker (voxel spacing respected) inside an ellipsoid whose size comes
from the line, so the mask continues through neighbouring slices as far as the lesion does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from ..errors import Cancelled, LesionSegError
from .frame import FRAME_SIZE, LineFrame, one_blas_thread

METHODS = ("auto", "learned", "classical")


@dataclass
class Line:
    """A diameter line in array (voxel) coordinates, napari axis order; `short` is the optional short axis."""

    p0: np.ndarray
    p1: np.ndarray
    short: tuple[np.ndarray, np.ndarray] | None = None
    label: int | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- input checks


def _spatial(image: np.ndarray, rgb: bool | None) -> np.ndarray:
    a = np.asarray(image)
    if rgb is None:
        rgb = a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] > 4 and a.shape[1] > 4
    if rgb:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if a.ndim not in (2, 3) or 0 in a.shape:
        raise LesionSegError(f"Expected a 2D image or a 3D volume, got an array of shape {np.shape(image)}.")
    a = a.astype(np.float32, copy=False)
    from ..checks import replace_non_finite

    return replace_non_finite(a, "The image")[0]  # NaN/Inf are background, as when a model segments (the reader
    # already warned about them)


def _spacing(spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    sp = np.atleast_1d(np.asarray(spacing, float))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    sp = sp[-ndim:]
    if sp.size != ndim or (sp <= 0).any() or not np.isfinite(sp).all():
        raise LesionSegError(f"Invalid voxel spacing {spacing!r}.")
    return sp


def check_line(line: Line, shape: tuple[int, ...], what: str = "The line") -> Line:
    """Validate endpoints (inside the image, on one slice, not zero length) and return them as floats."""
    p0 = np.asarray(line.p0, float).ravel()
    p1 = np.asarray(line.p1, float).ravel()
    nd = len(shape)
    if p0.size != nd or p1.size != nd:
        raise LesionSegError(f"{what} has {p0.size}-D coordinates but the image is {nd}-D ({shape}).")
    hi = np.asarray(shape, float) - 0.5
    for p in (p0, p1):
        if (p < -0.5).any() or (p > hi).any():
            raise LesionSegError(f"{what} ends at {np.round(p, 1).tolist()}, outside the image (shape {list(shape)}).")
    if np.hypot(*(p1[-2:] - p0[-2:])) < 1.0:
        raise LesionSegError(f"{what} has zero length: draw it across the lesion, from one edge to the other.")
    if nd == 3 and abs(p0[0] - p1[0]) > 1.0:
        raise LesionSegError(f"{what} crosses slices ({p0[0]:.0f} to {p1[0]:.0f}): draw it on one slice.")
    short = None
    if line.short is not None:
        s0, s1 = (np.asarray(s, float).ravel() for s in line.short)
        if s0.size == nd and s1.size == nd and np.hypot(*(s1[-2:] - s0[-2:])) >= 1.0:
            short = (np.clip(s0, 0, hi), np.clip(s1, 0, hi))
    return Line(p0, p1, short, line.label, dict(line.extra))


def pair_short_axes(segments: Sequence[tuple[np.ndarray, np.ndarray]], max_angle_deg: float = 25.0) -> list[Line]:
    """Group segments into lesions: a shorter segment crossing a longer one at ~90° is that one's short axis."""
    segs = [(np.asarray(a, float), np.asarray(b, float)) for a, b in segments]
    lengths = [float(np.hypot(*(b[-2:] - a[-2:]))) for a, b in segs]
    order = np.argsort(lengths)[::-1]
    used: set[int] = set()
    lines: list[Line] = []
    for i in order:
        if i in used:
            continue
        used.add(i)
        a, b = segs[i]
        line = Line(a, b, extra={"index": int(i)})
        for j in order:
            if j in used or lengths[j] < 1.0 or lengths[i] < 1.0:
                continue
            c, d = segs[j]
            if len(a) == 3 and abs(c[0] - a[0]) > 1.0:
                continue
            u = (b[-2:] - a[-2:]) / lengths[i]
            w = (d[-2:] - c[-2:]) / lengths[j]
            if abs(float(u @ w)) > np.sin(np.radians(max_angle_deg)):
                continue
            if _segments_cross(a[-2:], b[-2:], c[-2:], d[-2:]):
                line.short = (c, d)
                line.extra["short_index"] = int(j)
                used.add(j)
                break
        lines.append(line)
    return sorted(lines, key=lambda l: l.extra["index"])


def _segments_cross(a, b, c, d) -> bool:
    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    return orient(a, b, c) != orient(a, b, d) and orient(c, d, a) != orient(c, d, b)


# ---------------------------------------------------------------- 2D in the line's frame


def _check_contrast(crop: np.ndarray, what: str) -> None:
    lo, hi = np.percentile(crop, [1, 99])
    if hi - lo < 1e-6 * max(1.0, abs(hi)):
        raise LesionSegError(f"{what} lies on a flat (constant) region: there is no lesion boundary to follow.")


def ellipse_prior(short_ratio: float = 0.6, size: int = FRAME_SIZE, soft: float = 0.15) -> np.ndarray:
    """Soft ellipse on the frame: major axis = the line, minor axis = short_ratio × the line."""
    c = (size - 1) / 2
    rr, cc = np.mgrid[:size, :size].astype(np.float32)
    a = size / 4
    b = max(a * short_ratio, 1.0)
    r = np.sqrt(((cc - c) / a) ** 2 + ((rr - c) / b) ** 2)
    return 1 / (1 + np.exp(np.clip((r - 1) / soft, -50, 50)))


def _short_ratio(frame: LineFrame, short) -> float | None:
    if short is None:
        return None
    a, b = frame.to_frame(np.asarray([short[0][-2:], short[1][-2:]], float))
    return float(np.clip(abs(b[0] - a[0]) / (frame.size / 2), 0.05, 1.5))


def classical_frame_probability(crop: np.ndarray, short_ratio: float | None = None, beta: float = 1000.0,
                                blend: float = 0.5) -> np.ndarray:
    """Lesion probability on the canonical frame: random walker (image) × ellipse band (shape from the line)."""
    from skimage.exposure import equalize_adapthist
    from skimage.segmentation import random_walker

    S = crop.shape[0]
    lo, hi = np.percentile(crop, [1, 99])
    x = np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1)
    x = equalize_adapthist(x, clip_limit=0.02, kernel_size=S // 4)
    x = ndi.gaussian_filter(x, 1.5)
    c = (S - 1) / 2
    rr, cc = np.mgrid[:S, :S].astype(np.float32)
    a = S / 4
    ratio = 0.6 if short_ratio is None else short_ratio
    seeds = np.zeros((S, S), np.int32)
    # outside: a ring well beyond the expected boundary, and everything beyond the line's ends
    dist = np.hypot(cc - c, rr - c)
    outer_r = a * (max(1.3, 2 * ratio * 1.15) if short_ratio is not None else 1.3)
    seeds[dist > outer_r] = 2
    seeds[(cc < c - a * 1.08) | (cc > c + a * 1.08)] = 2
    if short_ratio is not None:
        seeds[np.abs(rr - c) > a * short_ratio * 1.15 + 2] = 2
    # inside: the core of the line (and of the short axis when given)
    core = (np.abs(rr - c) <= 1.5) & (np.abs(cc - c) <= a * 0.7)
    if short_ratio is not None:
        core |= (np.abs(cc - c) <= 1.5) & (np.abs(rr - c) <= a * short_ratio * 0.7)
    seeds[core] = 1
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore")
        p = np.clip(random_walker(x, seeds, beta=beta, mode="cg_j", tol=1e-3, return_full_prob=True)[0], 0, 1)
    if short_ratio is None:
        # the ellipse band's width from the image: the walker's area as an ellipse on the line (b/a = A / πa²)
        ratio = float(np.clip((1 - blend) * 0.6 + blend * (p > 0.5).sum() / (np.pi * a * a), 0.35, 1.0))
    prior = ellipse_prior(ratio, S, soft=0.25)
    return np.sqrt(p * prior)


def _frame_probability(image2d, frame: LineFrame, short, method: str, what: str, positive=(),
                       negative=(), network: str | None = None) -> np.ndarray:
    """network: a prompt network's name (`line_model.network_for`); None: the installed all-modality one."""
    from .line_model import frame_input, line_model_available, load_line_model, model_dir, predict_frames

    if method == "auto":
        method = "learned" if line_model_available(network) else "classical"
    if method == "learned":
        card = load_line_model(network, str(model_dir()))[1] if network else None
        x = frame_input(image2d, frame, short, card=card, line=frame.to_array(frame.line_ends()), positive=positive,
                        negative=negative)
        _check_contrast(x[0], what)
        return predict_frames(x[None], name=network)[0]
    crop = frame.sample(image2d, order=1)
    _check_contrast(crop, what)
    if method == "classical":
        return classical_frame_probability(crop, _short_ratio(frame, short))
    raise LesionSegError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")


def _mask_from_frame_probability(prob: np.ndarray, frame: LineFrame, shape, line: Line, threshold: float = 0.5):
    """Frame probabilities → array mask: threshold, keep the part touching the line, fill holes."""
    rows = np.flatnonzero((prob > threshold).any(1))
    cols = np.flatnonzero((prob > threshold).any(0))
    within = None
    if len(rows):  # paste back only the window of the frame where the mask is (4× less work on big images)
        S = prob.shape[0] - 1
        within = (max(rows[0] - 2, 0), min(rows[-1] + 2, S), max(cols[0] - 2, 0), min(cols[-1] + 2, S))
    vals, box = frame.paste(prob, shape, within=within)
    m = vals > threshold
    # keep the components that the line passes through
    n = int(np.ceil(np.hypot(*(line.p1[-2:] - line.p0[-2:])))) + 2
    t = np.linspace(0.2, 0.8, n)[:, None]
    pts = np.round(line.p0[-2:] * (1 - t) + line.p1[-2:] * t).astype(int) - [box[0].start, box[1].start]
    ok = (pts >= 0).all(1) & (pts < m.shape).all(1)
    lab, nlab = ndi.label(m)
    keep = np.unique(lab[pts[ok, 0], pts[ok, 1]])
    keep = keep[keep > 0]
    if len(keep) == 0 and nlab:
        sizes = ndi.sum(m, lab, range(1, nlab + 1))
        keep = [int(np.argmax(sizes)) + 1]
    m = ndi.binary_fill_holes(np.isin(lab, keep))
    out = np.zeros(shape, bool)
    out[box] = m
    return out


def _mask_2d(image2d, line: Line, spacing2, method: str, what: str) -> np.ndarray:
    frame = LineFrame.from_line(line.p0[-2:], line.p1[-2:], spacing2)
    clicks = {k: [np.asarray(p, float)[-2:] for p in line.extra.get(k, ())] for k in ("positive", "negative")}
    prob = _frame_probability(image2d, frame, line.short, method, what, **clicks, network=line.extra.get("network"))
    mask = _mask_from_frame_probability(prob, frame, image2d.shape, line)
    if mask.sum() < 3 and method != "classical":
        prob = _frame_probability(image2d, frame, line.short, "classical", what)
        mask = _mask_from_frame_probability(prob, frame, image2d.shape, line)
    if not mask.any():
        raise LesionSegError(f"{what}: no lesion boundary found around the line; draw it across the lesion.")
    return mask


# ---------------------------------------------------------------- 3D: grow from the slice


def _mask_3d(volume, line: Line, spacing, method: str, what: str, beta: float = 300.0, slice_mask=None) -> np.ndarray:
    """Slice mask → 3D: a random walker in a box around the line, spacing-aware, seeded by the slice mask
    (inside) and by the slice outside it and everything beyond an ellipsoid sized by the line (outside).
    With the prompt network (method learned, or auto when it is installed) the drawn slice is the network's, every
    other slice is what the walker and the network (prompted on it) together call lesion, and the network
    continues past the walker's ends (`propagate.consensus_slices`, `extend_slices`; benchmarks/eval_line3d.py)."""
    z0 = int(round((line.p0[0] + line.p1[0]) / 2))
    network = line.extra.get("network")
    if method == "auto":
        from .line_model import line_model_available

        method = "learned" if line_model_available(network) else "classical"
    if slice_mask is None:
        slice_mask = _mask_2d(volume[z0], line, spacing[1:], method, what)
    m, prob, box = _walk_3d(volume, line, spacing, z0, slice_mask, beta)
    if method == "learned":  # the network votes on every slice and follows the lesion past the walker's ends
        from .propagate import consensus_slices, extend_slices

        if prob is not None:
            m = consensus_slices(volume, m, prob, box, z0, spacing, network)
        m = extend_slices(volume, m, z0, spacing, float(np.hypot(*((line.p1[1:] - line.p0[1:]) * spacing[1:]))),
                          network)
    return m


def _walk_3d(volume, line: Line, spacing, z0: int, slice_mask, beta: float):
    """The spacing-aware 3D random walker of `_mask_3d` (seeds: its docstring): (mask, the walker's lesion
    probability on its box or None when it did not run, the box)."""
    from skimage.segmentation import random_walker

    m2 = slice_mask
    L = float(np.hypot(*((line.p1[1:] - line.p0[1:]) * spacing[1:])))
    centre = np.array([z0, *((line.p0[1:] + line.p1[1:]) / 2)])
    half = np.ceil(0.8 * L / spacing).astype(int) + 1
    lo = np.maximum(np.round(centre).astype(int) - half, 0)
    hi = np.minimum(np.round(centre).astype(int) + half + 1, volume.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    roi = ndi.gaussian_filter(volume[box].astype(np.float32), sigma=0.6 * spacing.min() / spacing)
    a, b = np.percentile(roi, [1, 99])
    roi = np.clip((roi - a) / max(b - a, 1e-6), 0, 1)
    zc = z0 - lo[0]
    seed2 = m2[box[1:]]
    # outside: beyond an ellipsoid of semi-axes 0.7 L in-plane and 0.75 L through slices (mm)
    zz, yy, xx = np.ogrid[tuple(slice(0, s) for s in roi.shape)]
    cz, cy, cx = centre - lo
    r = (((zz - cz) * spacing[0]) / (0.75 * L)) ** 2 + (((yy - cy) * spacing[1]) / (0.7 * L)) ** 2 + \
        (((xx - cx) * spacing[2]) / (0.7 * L)) ** 2
    seeds = np.zeros(roi.shape, np.int32)
    seeds[r > 1] = 2
    seeds[zc][~ndi.binary_dilation(seed2, iterations=2)] = 2
    core = ndi.binary_erosion(seed2)
    seeds[zc][core if core.any() else seed2] = 1
    p = None
    if roi.shape[0] == 1 or not (seeds == 0).any():
        m = seed2[None].copy() if roi.shape[0] == 1 else seeds == 1
    else:
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore")
            p = random_walker(roi, seeds, beta=beta, mode="cg_j", tol=1e-3, spacing=spacing / spacing.min(),
                              return_full_prob=True)[0]
        m = p > 0.5
    m[zc] = seed2
    lab, _ = ndi.label(m)
    keep = np.unique(lab[zc][seed2])
    m = np.isin(lab, keep[keep > 0])
    for k in range(m.shape[0]):
        m[k] = ndi.binary_fill_holes(m[k])
    out = np.zeros(volume.shape, bool)
    out[box] = m
    return out, p, box


# ---------------------------------------------------------------- public API


def _network(modality: str | None, model: str | None = None) -> str | None:
    """The prompt network for the lines: the one the user chose, else the modality's (`network_for`)."""
    from .line_model import check_prompt_model, network_for

    return check_prompt_model(model) if model else network_for(modality)


def line_to_mask(image, p0, p1, *, spacing=None, short_axis=None, method: str = "auto", rgb: bool | None = None,
                 positive=(), negative=(), modality: str | None = None, model: str | None = None) -> np.ndarray:
    """Boolean mask (the image's spatial shape) of the lesion a diameter line p0–p1 was drawn across.

    p0, p1: array indices in napari order ((y, x) or (z, y, x)); spacing: mm per pixel/voxel per array axis.
    positive/negative: clicks (same coordinates) that refine the mask on the line's slice ("lesion" / "not"),
    used by the prompt network (method learned, or auto in 2D). modality: picks the network
    (`line_model.network_for`: ultrasound keeps its own line network); model: a prompt network by name (e.g. one
    fine-tuned on the user's masks), which then runs whatever the modality.
    """
    img = _spatial(image, rgb)
    sp = _spacing(spacing, img.ndim)
    line = check_line(Line(p0, p1, short_axis, extra={"positive": list(positive), "negative": list(negative),
                                                      "network": _network(modality, model)}), img.shape)
    if method not in METHODS:
        raise LesionSegError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if img.ndim == 2:
        return _mask_2d(img, line, sp, method, "The line")
    return _mask_3d(img, line, sp, method, "The line")


def lines_to_labels(image, lines: Sequence[Line], *, spacing=None, method: str = "auto", rgb: bool | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    cancelled: Callable[[], bool] | None = None, modality: str | None = None,
                    model: str | None = None) -> np.ndarray:
    """Label image: lesion i (1-based, or `line.label`) for every line; later lines do not overwrite earlier ones.
    model: a prompt network by name (`line_to_mask`)."""
    if lines is None or len(lines) == 0:
        raise LesionSegError("There are no lines: draw a line across each lesion (Shapes layer, line tool).")
    img = _spatial(image, rgb)
    from ..checks import check_image_size

    check_image_size(img.shape, "The image", "the line tool")
    sp = _spacing(spacing, img.ndim)
    if method not in METHODS:
        raise LesionSegError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    checked = [check_line(l, img.shape, f"Line {i + 1}") for i, l in enumerate(lines)]
    network = _network(modality, model)
    for line in checked:
        line.extra.setdefault("network", network)
    labels = np.zeros(img.shape, np.int32)
    for i, line in enumerate(checked):
        if cancelled is not None and cancelled():
            raise Cancelled()
        what = f"Line {i + 1}"
        m = _mask_2d(img, line, sp, method, what) if img.ndim == 2 else _mask_3d(img, line, sp, method, what)
        labels[m & (labels == 0)] = line.label if line.label else i + 1
        if progress is not None:
            progress(i + 1, len(checked))
    return labels
