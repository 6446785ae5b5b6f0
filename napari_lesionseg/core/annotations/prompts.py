"""Box and click prompts → a lesion mask, with the same prompt network as the diameter line.

Every prompt becomes a frame (`frame.LineFrame`) plus prompt channels (`line_model.prompt_channels`):
- a box: the frame runs along the box's longer middle line; the filled box is a channel of its own;
- a click at the lesion's centre (experimental, not in the dock): the lesion's size is searched over frames of
  several sizes centred on the click. Measured held out it does not work yet (per-lesion Dice 0.25 on BUSI, 0.33
  on MRI slices, 0.25 on mammograms): the network draws a frame-sized blob at any size, so the size is not found;
  it stays here as the baseline for the next attempt (`benchmarks/eval_prompt_modalities.py --prompts click`);
- positive and negative clicks added to any prompt refine the result (one network pass each time).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import LesionSegError
from .frame import LineFrame


def box_frame(corner0, corner1, spacing=(1.0, 1.0)) -> tuple[LineFrame, np.ndarray]:
    """(frame along the box's longer middle line, the box's 4 corners (y, x)) for an axis-aligned box."""
    (y0, x0), (y1, x1) = np.asarray(corner0, float)[-2:], np.asarray(corner1, float)[-2:]
    top, bottom, left, right = min(y0, y1), max(y0, y1), min(x0, x1), max(x0, x1)
    sp = np.asarray(spacing, float)[-2:]
    cy, cx = (top + bottom) / 2, (left + right) / 2
    if (right - left) * sp[1] >= (bottom - top) * sp[0]:
        a, b = (cy, left), (cy, right)
    else:
        a, b = (top, cx), (bottom, cx)
    corners = np.array([[top, left], [top, right], [bottom, right], [bottom, left]], float)
    return LineFrame.from_line(a, b, sp), corners


def _needs_prompt_network(what: str, model: str | None = None) -> None:
    from .line_model import line_model_available, load_line_model, model_card

    if model:  # a network the user chose: it must exist and take boxes
        if "prompt_channels" not in load_line_model(model)[1]:
            raise LesionSegError(f"{what} needs an all-prompt network; {model!r} takes diameter lines only.")
        return
    if not line_model_available() or "prompt_channels" not in model_card():
        raise LesionSegError(f"{what} needs the prompt network (models/line_prompt/prompt_unet), which is not "
                             "installed; draw a diameter line instead.")


def _keep_component_at(mask: np.ndarray, points) -> np.ndarray:
    """The connected parts of `mask` under any of `points` (y, x); the largest part when none is hit."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if not n:
        return mask
    hit = {int(lab[tuple(np.clip(np.round(p).astype(int), 0, np.array(mask.shape) - 1))]) for p in points}
    hit.discard(0)
    if not hit:
        hit = {int(np.argmax(ndi.sum(mask, lab, range(1, n + 1)))) + 1}
    return ndi.binary_fill_holes(np.isin(lab, list(hit)))


def _frame_mask(image2d, frame: LineFrame, x: np.ndarray, prob: np.ndarray | None = None,
                threshold: float = 0.5, model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probability on the frame, thresholded mask on the image) for one prepared network input."""
    from .line_model import predict_frames

    if prob is None:
        prob = predict_frames(x[None], name=model)[0]
    vals, box = frame.paste(prob, image2d.shape)
    out = np.zeros(image2d.shape, bool)
    out[box] = vals > threshold
    return prob, out


def _prompt_2d(image2d, frame: LineFrame, keep_at, what: str, *, box=None, positive=(), negative=(),
               model: str | None = None) -> np.ndarray:
    from .line_model import frame_input, load_line_model
    from .lines import _check_contrast

    card = load_line_model(model)[1] if model else None
    x = frame_input(image2d, frame, box=box, positive=positive, negative=negative, card=card)
    _check_contrast(x[0], what)
    mask = _keep_component_at(_frame_mask(image2d, frame, x, model=model)[1], keep_at)
    if not mask.any():
        raise LesionSegError(f"{what}: no lesion found there; draw a box around it or a line across it.")
    return mask


def _checked_2d(image, spacing, rgb):
    from .lines import _spacing, _spatial

    img = _spatial(image, rgb)
    return img, _spacing(spacing, img.ndim)


def _points(points, shape, what) -> list[np.ndarray]:
    from .points import check_points

    return list(check_points(points, shape, what)) if len(points) else []


def box_to_mask(image, corner0, corner1, *, spacing=None, positive=(), negative=(), rgb: bool | None = None,
                method: str = "auto", model: str | None = None) -> np.ndarray:
    """Boolean mask of the lesion inside an axis-aligned box (two opposite corners, array indices, napari order).

    On a volume the corners lie on one slice; the slice mask then grows through the neighbouring slices like a
    line's (`lines._mask_3d`). positive/negative clicks refine the slice mask. model: a prompt network by name
    (default: the installed all-prompt one).
    """
    from .lines import Line, check_line

    img, sp = _checked_2d(image, spacing, rgb)
    c0, c1 = np.asarray(corner0, float).ravel(), np.asarray(corner1, float).ravel()
    check_line(Line(c0, c1), img.shape, "The box")  # inside the image, on one slice, not empty
    if min(abs(c1[-2:] - c0[-2:])) < 1.0:
        raise LesionSegError("The box is flat: draw it around the whole lesion.")
    _needs_prompt_network("A box prompt", model)
    frame, corners = box_frame(c0, c1, sp[-2:])
    z = int(round((c0[0] + c1[0]) / 2)) if img.ndim == 3 else None
    plane = img if z is None else img[z]
    pos = [p[-2:] for p in _points(positive, img.shape, "Positive click")]
    neg = [p[-2:] for p in _points(negative, img.shape, "Negative click")]
    m2 = _prompt_2d(plane, frame, [corners.mean(0), *pos], "The box", box=corners, positive=pos, negative=neg,
                    model=model)
    if z is None:
        return m2
    return _grow_3d(img, m2, z, sp, method)


def _grow_3d(volume, slice_mask, z, spacing, method) -> np.ndarray:
    from .frame import longest_diameter
    from .lines import Line, _mask_3d

    p0, p1 = longest_diameter(slice_mask, spacing[1:])
    return _mask_3d(volume, Line(np.r_[z, p0], np.r_[z, p1]), spacing, method, "The lesion", slice_mask=slice_mask)


CLICK_SIZES = tuple(0.6 * 0.6 ** np.arange(8))
"""Lesion diameters tried for a click, as fractions of the image's smaller side (0.6 down to 0.017); the network
was trained with frames up to ±35 % off the true size, so a step of 0.6 leaves no size unseen."""


def click_to_mask(image, point, *, spacing=None, positive=(), negative=(), rgb: bool | None = None,
                  method: str = "auto") -> np.ndarray:
    """Boolean mask of the lesion under a click at its centre; its size is searched from the image.

    EXPERIMENTAL: held-out Dice 0.25–0.33 (see the module docstring); not offered in the dock.

    The network runs on frames of several sizes centred on the click (one batch); the size whose mask is as wide
    as the frame expects (its diameter closest to the frame's line) wins, and one last pass on a frame of exactly
    that diameter gives the mask. Extra positive/negative clicks refine it.
    """
    from .line_model import frame_input, predict_frames
    from .lines import _check_contrast

    img, sp = _checked_2d(image, spacing, rgb)
    c = _points([point], img.shape, "The click")[0]
    _needs_prompt_network("A click prompt")
    z = int(round(c[0])) if img.ndim == 3 else None
    plane = img if z is None else img[z]
    c2, sp2 = c[-2:], sp[-2:]
    pos = [p[-2:] for p in _points(positive, img.shape, "Positive click")]
    neg = [p[-2:] for p in _points(negative, img.shape, "Negative click")]
    side_mm = float(min(np.asarray(plane.shape) * sp2))
    frames, xs = [], []
    for f in CLICK_SIZES:
        fr = _click_frame(c2, f * side_mm, sp2)
        frames.append(fr)
        xs.append(frame_input(plane, fr, positive=[c2, *pos], negative=neg))
    _check_contrast(xs[0][0], "The click")
    probs = predict_frames(np.stack(xs), tta=False)
    best, best_err, best_d = None, np.inf, None
    S = frames[0].size
    for fr, p in zip(frames, probs):
        m = _keep_component_at(p > 0.5, [((S - 1) / 2, (S - 1) / 2)])
        if not m.any():
            continue
        d = _diameter_px(m)
        err = abs(np.log(max(d, 1.0) / (S / 2)))
        if err < best_err:
            best, best_err, best_d = fr, err, d
    if best is None:
        raise LesionSegError("The click: no lesion found there; click on the lesion's centre or draw a line across it.")
    fr = _click_frame(c2, best.step_mm * best_d, sp2)
    mask = _prompt_2d(plane, fr, [c2, *pos], "The click", positive=[c2, *pos], negative=neg)
    return mask if z is None else _grow_3d(img, mask, z, sp, method)


def _click_frame(centre, diameter_mm: float, spacing) -> LineFrame:
    half = diameter_mm / 2 / np.asarray(spacing, float)[1]
    return LineFrame.from_line((centre[0], centre[1] - half), (centre[0], centre[1] + half), spacing)


def _diameter_px(mask: np.ndarray) -> float:
    from .frame import longest_diameter

    p0, p1 = longest_diameter(mask)
    return float(np.hypot(*(p1 - p0))) + 1.0


def boxes_to_labels(image, boxes: Sequence[tuple[np.ndarray, np.ndarray]], *, spacing=None, rgb: bool | None = None,
                    method: str = "auto", progress=None, cancelled=None, model: str | None = None) -> np.ndarray:
    """Label image: lesion i (1-based) for every box (two opposite corners); earlier boxes keep their pixels."""
    from ..errors import Cancelled
    from .lines import _spatial

    if not len(boxes):
        raise LesionSegError("There are no boxes: draw a rectangle around each lesion (Shapes layer).")
    shape = _spatial(image, rgb).shape
    labels = np.zeros(shape, np.int32)
    for i, (a, b) in enumerate(boxes):
        if cancelled is not None and cancelled():
            raise Cancelled()
        try:
            m = box_to_mask(image, a, b, spacing=spacing, rgb=rgb, method=method, model=model)
        except LesionSegError as e:
            raise LesionSegError(f"Box {i + 1}: {e}") from None
        labels[m & (labels == 0)] = i + 1
        if progress is not None:
            progress(i + 1, len(boxes))
    return labels


def shapes_to_labels(image, shapes, *, spacing=None, method: str = "auto", rgb: bool | None = None, progress=None,
                     cancelled=None, modality: str | None = None, model: str | None = None) -> np.ndarray:
    """A napari Shapes layer's lesions: lines (RECIST, short axes paired) first, then rectangles (box prompts).

    The one function behind `lesionseg lines-to-masks` and the Annotations dock; shapes in image indices.
    modality: the image's, which picks the line network (`line_model.network_for`); model: a prompt network by
    name (e.g. one fine-tuned on the user's masks) for lines and boxes alike.
    """
    from .lines import _spatial, lines_to_labels, pair_short_axes
    from .napari_csv import shapes_to_boxes, shapes_to_segments, split_boxes

    nd = _spatial(image, rgb).ndim
    rects, others = split_boxes(list(shapes))
    labels = None
    if others or not rects:
        lines = pair_short_axes(shapes_to_segments(others, nd))
        labels = lines_to_labels(image, lines, spacing=spacing, method=method, rgb=rgb, progress=progress,
                                 cancelled=cancelled, modality=modality, model=model)
    if not rects:
        return labels
    boxed = boxes_to_labels(image, shapes_to_boxes(rects, nd), spacing=spacing, rgb=rgb, method=method,
                            progress=progress, cancelled=cancelled, model=model)
    if labels is None:
        return boxed
    free = (boxed > 0) & (labels == 0)
    labels[free] = boxed[free] + labels.max()
    return labels
