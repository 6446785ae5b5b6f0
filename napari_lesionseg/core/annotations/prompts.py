"""Box and click prompts → a lesion mask, with the same prompt network as the diameter line.

Every prompt becomes a frame (`frame.LineFrame`) plus prompt channels (`line_model.prompt_channels`):
- a box: the frame runs along the box's longer middle line; the filled box is a channel of its own;
- a click at the lesion's centre: the size comes from the image (`click_size.lesion_diameter`, the scale-
  normalised blob response at the click, polarity from the modality), the frame and box are a square of that size
  around the click. Held out (`benchmarks/eval_click.py`) it is well below a box or a line but usable as a start,
  and corrective clicks close most of the gap. The first attempt (frames of 8 sizes, the network's mask width
  picking one) scored 0.25–0.33: the network draws a frame-sized blob whatever the frame;
- positive and negative clicks added to any prompt refine the result (one network pass each time); for a click
  prompt a positive click beyond the square grows the box to take it in, and a negative click the network left
  inside the mask is cut out by a random walker (`_cut_negatives`);
- `clicks_to_labels` (Annotations dock "lesion at each click", `lesionseg points-to-masks --prompt`) turns a
  Points layer of clicks into lesions: a click near an earlier lesion refines it (`group_clicks`).
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
    return _grow_3d(img, m2, z, sp, method, network=model)


def _grow_3d(volume, slice_mask, z, spacing, method, network: str | None = None) -> np.ndarray:
    """The slice mask through the volume as a line's (`lines._mask_3d`); `network` (None: the installed
    all-prompt one) continues it past the walker, the network that drew the slice."""
    from .frame import longest_diameter
    from .lines import Line, _mask_3d

    p0, p1 = longest_diameter(slice_mask, spacing[1:])
    line = Line(np.r_[z, p0], np.r_[z, p1], extra={"network": network})
    return _mask_3d(volume, line, spacing, method, "The lesion", slice_mask=slice_mask)


def click_box(centre, diameter_px: float, spacing, positive=(), shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Corners (top-left, bottom-right) of the box a click stands for: a square of the estimated diameter (round
    in mm) centred on the click, grown to hold every positive click with a margin, clipped to the image."""
    sp = np.asarray(spacing, float)[-2:]
    c = np.asarray(centre, float)[-2:]
    half = np.array([diameter_px * sp[1] / sp[0], diameter_px]) / 2
    lo, hi = c - half, c + half
    for p in positive:
        p = np.asarray(p, float)[-2:]
        lo, hi = np.minimum(lo, p - 0.08 * half), np.maximum(hi, p + 0.08 * half)
    if shape is not None:
        lo, hi = np.maximum(lo, 0), np.minimum(hi, np.asarray(shape[-2:], float) - 1)
    return lo, hi


def click_to_mask(image, point, *, spacing=None, positive=(), negative=(), rgb: bool | None = None,
                  method: str = "auto", modality: str | None = None) -> np.ndarray:
    """Boolean mask of the lesion under a click at its centre; its size comes from the image.

    The size is the scale-normalised blob response at the click (`click_size.lesion_diameter`, polarity from the
    modality); the box network then segments a square of that size around the click. Refinement: a positive
    click outside the square grows the box to hold it; a negative click is a network channel, and if the mask
    still covers it, a random walker cuts the part around it away (`points.clicks_to_mask`).
    """
    from .click_size import lesion_diameter

    img, sp = _checked_2d(image, spacing, rgb)
    c = _points([point], img.shape, "The click")[0]
    _needs_prompt_network("A click prompt")
    z = int(round(c[0])) if img.ndim == 3 else None
    plane = img if z is None else img[z]
    c2, sp2 = c[-2:], sp[-2:]
    pos = [p[-2:] for p in _points(positive, img.shape, "Positive click")]
    neg = [p[-2:] for p in _points(negative, img.shape, "Negative click")]
    diameter = lesion_diameter(plane, c2, sp2, modality)
    if diameter is None:
        raise LesionSegError("The click: no lesion stands out from its surroundings there; draw a box around it "
                             "or a line across it.")
    lo, hi = click_box(c2, diameter, sp2, pos, plane.shape)
    if min(hi - lo) < 1.0:
        raise LesionSegError("The click is on the image's edge: click on the lesion's centre.")
    frame, corners = box_frame(lo, hi, sp2)
    mask = _prompt_2d(plane, frame, [c2, *pos], "The click", box=corners, positive=[c2, *pos], negative=neg)
    mask = _cut_negatives(plane, mask, neg, sp2, [c2, *pos])
    return mask if z is None else _grow_3d(img, mask, z, sp, method)


CUT_SIDE = 96
"""The random walker of a negative click runs on the mask's crop resampled to at most this many pixels a side
(a 400-pixel lesion at full resolution took half a second)."""


def _cut_negatives(plane, mask: np.ndarray, negative, spacing, keep_at) -> np.ndarray:
    """The mask without the part around any negative click it still covers (random walker inside the mask);
    the part connected to `keep_at` (the lesion's positive clicks) stays."""
    shape = np.array(mask.shape)
    inside = [p for p in negative if mask[tuple(np.clip(np.round(p).astype(int), 0, shape - 1))]]
    if not inside:
        return mask
    from scipy import ndimage as ndi

    from .points import clicks_to_mask

    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - 4, 0), np.minimum(idx.max(0) + 5, shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    f = max(1.0, float(max(hi - lo)) / CUT_SIDE)
    small_img = ndi.zoom(ndi.uniform_filter(np.asarray(plane[crop], np.float32), int(np.ceil(f))), 1 / f, order=1)
    small = ndi.zoom(mask[crop].astype(np.float32), 1 / f, order=1) > 0.5
    clicks = [np.clip((np.asarray(p, float) - lo) / f, 0, np.array(small.shape) - 1) for p in inside]
    sp = np.asarray(spacing, float) * f
    cut = clicks_to_mask(small_img, negative=clicks, mask=small, spacing=sp, reach=3 * float(sp.max()))
    from skimage.transform import resize

    out = np.zeros_like(mask)
    out[crop] = mask[crop] & (resize(cut.astype(np.float32), mask[crop].shape, order=1) > 0.5)
    if not out.any():
        raise LesionSegError("The negative clicks remove the whole lesion.")
    lab, _ = ndi.label(out)
    hit = {int(lab[tuple(np.clip(np.round(p).astype(int), 0, shape - 1))]) for p in keep_at} - {0}
    return np.isin(lab, list(hit)) if hit else out


def group_clicks(image, clicks, negative=(), *, spacing=None, rgb: bool | None = None,
                 modality: str | None = None) -> list[dict]:
    """Clicks → lesions: [{"centre", "positive", "negative"}]. A click starts a new lesion unless it falls near
    an earlier lesion's box (its click box grown by half on every side, same slice): then it refines that lesion
    (a positive click outside the mask grows it). Each negative click refines the lesion whose grown box holds
    it, the nearest centre when none does."""
    from .click_size import lesion_diameter

    img, sp = _checked_2d(image, spacing, rgb)
    lesions: list[dict] = []

    def near(les, p):
        if img.ndim == 3 and int(round(p[0])) != int(round(les["centre"][0])):
            return False
        lo, hi = les["box"]
        grow = 0.5 * (hi - lo)
        return bool(np.all(p[-2:] >= lo - grow) and np.all(p[-2:] <= hi + grow))

    for p in _points(clicks, img.shape, "Click"):
        owner = next((les for les in lesions if near(les, p)), None)
        if owner is not None:
            owner["positive"].append(p)
            continue
        plane = img if img.ndim == 2 else img[int(round(p[0]))]
        d = lesion_diameter(plane, p[-2:], sp[-2:], modality) or 0.0
        lesions.append({"centre": p, "positive": [], "negative": [], "box": click_box(p, d, sp, (), plane.shape)})
    for n in _points(negative, img.shape, "Negative click"):
        if not lesions:
            break
        owner = next((les for les in lesions if near(les, n)), None)
        if owner is None:
            owner = min(lesions, key=lambda les: float(np.hypot(*((n - les["centre"]) * sp))))
        owner["negative"].append(n)
    return lesions


def clicks_to_labels(image, clicks, negative=(), *, spacing=None, rgb: bool | None = None, method: str = "auto",
                     modality: str | None = None, progress=None, cancelled=None) -> np.ndarray:
    """Label image: lesion i (1-based) at each click on a lesion's centre, refined by the clicks near it.

    The one function behind the Annotations dock's "lesion at each click" and `lesionseg points-to-masks
    --prompt`: positive clicks (a Points layer) grouped into lesions by `group_clicks`, negative clicks (another
    layer) cut; every lesion by `click_to_mask`. Earlier lesions keep their pixels."""
    if not len(clicks):
        raise LesionSegError("There are no clicks: click on the centre of each lesion (Points layer).")
    lesions = group_clicks(image, clicks, negative, spacing=spacing, rgb=rgb, modality=modality)
    return _label_each(
        image, rgb, lesions, progress, cancelled,
        lambda les: click_to_mask(image, les["centre"], spacing=spacing, positive=les["positive"],
                                  negative=les["negative"], rgb=rgb, method=method, modality=modality),
        lambda i, les: f"Lesion {i + 1} (click at {np.round(les['centre'], 1).tolist()})")


def _label_each(image, rgb, prompts, progress, cancelled, to_mask, describe) -> np.ndarray:
    """Label image from one mask per prompt (lesion i+1 for prompt i; earlier lesions keep their pixels), with
    Cancel between prompts and a prompt's problem named by `describe(i, prompt)`."""
    from ..errors import Cancelled
    from .lines import _spatial

    labels = np.zeros(_spatial(image, rgb).shape, np.int32)
    for i, prompt in enumerate(prompts):
        if cancelled is not None and cancelled():
            raise Cancelled()
        try:
            m = to_mask(prompt)
        except LesionSegError as e:
            raise LesionSegError(f"{describe(i, prompt)}: {e}") from None
        labels[m & (labels == 0)] = i + 1
        if progress is not None:
            progress(i + 1, len(prompts))
    return labels


def boxes_to_labels(image, boxes: Sequence[tuple[np.ndarray, np.ndarray]], *, spacing=None, rgb: bool | None = None,
                    method: str = "auto", progress=None, cancelled=None, model: str | None = None) -> np.ndarray:
    """Label image: lesion i (1-based) for every box (two opposite corners); earlier boxes keep their pixels."""
    if not len(boxes):
        raise LesionSegError("There are no boxes: draw a rectangle around each lesion (Shapes layer).")
    return _label_each(image, rgb, list(boxes), progress, cancelled,
                       lambda box: box_to_mask(image, box[0], box[1], spacing=spacing, rgb=rgb, method=method,
                                               model=model),
                       lambda i, _box: f"Box {i + 1}")


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
