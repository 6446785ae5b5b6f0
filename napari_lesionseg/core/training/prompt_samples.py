"""Training samples for the prompt network: a lesion from a mask, a prompt drawn on it as a reader would, the
crop and prompt channels in the prompt's frame, and the lesion's mask on that frame.

Shared by the full training (`scripts/train_line_model.py`, lesions from `scripts/prompt_lesions.py`) and the
fine-tuning on a user's corrected masks (`prompt_finetune.py`), so both learn exactly the same task.

Each sample is one lesion with one prompt drawn at random:
- line: its longest diameter, ends jittered by N(0, 0.04 L), in 30 % with the RECIST short axis (±1.5 px);
- box: its bounding box, each side moved by N(0, 0.03 × the box side); the frame runs along the box's longer
  middle line;
- click: a click near its deepest point (N(0, 0.05 L)); the frame is centred there at a random angle, its size the
  true diameter × exp(N(0, 0.3));
- in 30 % of samples, one to three refinement clicks: positive inside the lesion, negative outside but near it.
The crop is inverted in half the samples, then gamma, contrast, noise, blur and a lower resolution are jittered.
A line-only network (the first one, card without `prompt_channels`: image and short axis) gets line samples only,
without refinement clicks, in its own two channels (`make_sample(..., line_only=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("line", "box", "click")
FULL_TRAINING_MIX = (0.5, 0.25, 0.25)
"""Share of line, box and click prompts in the full training."""


@dataclass
class Lesion:
    source: str
    patient: str
    name: str
    image: np.ndarray  # float32 2D
    mask: np.ndarray  # bool 2D, this lesion only
    p0: np.ndarray  # longest diameter (y, x)
    p1: np.ndarray


def components(mask, min_px: int, rel: float = 0.0, min_solidity: float = 0.0) -> list[np.ndarray]:
    """Connected parts of a mask that count as lesions: ≥ min_px pixels, ≥ rel × the largest, solid enough."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if not n:
        return []
    sizes = ndi.sum(mask, lab, range(1, n + 1))
    out = []
    for k in range(1, n + 1):
        if sizes[k - 1] < max(min_px, rel * sizes.max()):
            continue
        comp = lab == k
        if min_solidity:
            from skimage.measure import regionprops

            if regionprops(comp.astype(np.uint8))[0].solidity < min_solidity:
                continue
        out.append(comp)
    return out


def lesions_from_components(source: str, patient: str, name: str, image2d, comps) -> list[Lesion]:
    """One `Lesion` per component, its prompt line the component's longest diameter."""
    from ..annotations.frame import longest_diameter

    out = []
    for comp in comps:
        p0, p1 = longest_diameter(comp)
        out.append(Lesion(source, patient, name, image2d, comp, np.asarray(p0, float), np.asarray(p1, float)))
    return out


def frame_for(rng, les: Lesion, kind: str, click_context: tuple[float, float] | None = None):
    """(LineFrame, prompt geometry for `prompt_channels`) for one prompt kind, with a reader's imprecision.

    click_context (lo, hi): a click's frame side is the diameter × 2·U_log(lo, hi) instead of × 2·exp(N(0, 0.3)),
    so that the network must find the lesion's extent in a frame of unknown size (the size-free click pilot)."""
    from ..annotations.frame import LineFrame
    from ..annotations.prompts import box_frame

    L = float(np.hypot(*(les.p1 - les.p0)))
    if kind == "line":
        a = les.p0 + rng.normal(0, 0.04 * L, 2)
        b = les.p1 + rng.normal(0, 0.04 * L, 2)
        if rng.random() < 0.5:
            a, b = b, a
        return LineFrame.from_line(a, b), {"line": (a, b)}
    if kind == "box":
        rows, cols = np.flatnonzero(les.mask.any(1)), np.flatnonzero(les.mask.any(0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        top, bottom = rows[0] + rng.normal(0, 0.03 * h), rows[-1] + rng.normal(0, 0.03 * h)
        left, right = cols[0] + rng.normal(0, 0.03 * w), cols[-1] + rng.normal(0, 0.03 * w)
        frame, corners = box_frame((top, left), (bottom, right))
        return frame, {"box": corners}
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(les.mask)
    c = np.array(np.unravel_index(np.argmax(dist), dist.shape), float) + rng.normal(0, 0.05 * L, 2)
    scale = np.exp(rng.uniform(*np.log(click_context))) if click_context else np.exp(rng.normal(0, 0.3))
    half = 0.5 * L * scale
    ang = rng.uniform(0, np.pi)
    d = half * np.array([np.sin(ang), np.cos(ang)])
    return LineFrame.from_line(c - d, c + d), {"positive": [c]}


def refinement_clicks(rng, tgt_frame, frame):
    """1–3 clicks in array coordinates: positive inside the lesion, negative outside but within 12 frame px."""
    from scipy import ndimage as ndi

    pos, neg = [], []
    near = ndi.binary_dilation(tgt_frame, iterations=12) & ~tgt_frame
    for _ in range(rng.integers(1, 4)):
        pool = tgt_frame if rng.random() < 0.5 else near
        pts = np.argwhere(pool)
        if len(pts):
            p = frame.to_array(pts[rng.integers(len(pts))][None].astype(float))[0]
            (pos if pool is tgt_frame else neg).append(p)
    return pos, neg


def augment_crop(rng, crop):
    """Polarity, resolution, blur, gamma, contrast and noise jitter of a [0, 1] crop."""
    from scipy import ndimage as ndi

    if rng.random() < 0.5:
        crop = 1 - crop
    if rng.random() < 0.2:  # a coarser scanner
        f = rng.uniform(1.5, 3)
        small = ndi.zoom(crop, 1 / f, order=1)
        crop = ndi.zoom(small, np.array(crop.shape) / small.shape, order=1)
    if rng.random() < 0.3:
        crop = ndi.gaussian_filter(crop, rng.uniform(0.3, 1.5))
    crop = np.clip(crop, 0, 1) ** np.exp(rng.normal(0, 0.4))
    crop = crop * rng.uniform(0.7, 1.2) + rng.uniform(-0.1, 0.1) + rng.normal(0, rng.uniform(0, 0.08), crop.shape)
    return np.clip(crop, 0, 1).astype(np.float32)


def make_sample(rng, les: Lesion, kind: str | None = None, mix=FULL_TRAINING_MIX, line_only: bool = False,
                click_context: tuple[float, float] | None = None):
    """(x (5, S, S), y (1, S, S)) float32: network input and lesion mask on the frame of one random prompt.
    line_only: a line prompt in the first, line-only network's input (2, S, S): the crop and the short axis.
    click_context: see `frame_for`."""
    from ..annotations.frame import short_axis
    from ..annotations.line_model import draw_segment, normalised_crop, prompt_channels

    kind = "line" if line_only else (kind or rng.choice(KINDS, p=list(mix)))
    frame, geo = frame_for(rng, les, kind, click_context)
    crop = augment_crop(rng, normalised_crop(les.image, frame))
    tgt = frame.sample(les.mask.astype(np.float32), order=1, cval=0.0) > 0.5
    segs = [geo["line"]] if "line" in geo else []
    if kind == "line" and rng.random() < 0.3:
        s = short_axis(les.mask, les.p0, les.p1)
        if s is not None:
            segs.append((s[0] + rng.normal(0, 1.5, 2), s[1] + rng.normal(0, 1.5, 2)))
    if line_only:  # the long axis is the frame itself; the second channel holds the short axis, if drawn
        chans = np.zeros((1, *crop.shape), np.float32)
        if len(segs) > 1:
            a, b = frame.to_frame(np.asarray(segs[1], float))
            draw_segment(chans[0], a, b)
    else:
        pos, neg = list(geo.get("positive", [])), []
        if rng.random() < 0.3 and tgt.any():
            p, n = refinement_clicks(rng, tgt, frame)
            pos, neg = pos + p, neg + n
        chans = prompt_channels(frame, segs, geo.get("box"), pos, neg)
    x = np.concatenate([crop[None], chans])
    y = tgt[None].astype(np.float32)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def prompt_loss(logit, y):
    """BCE + soft Dice per sample, the full training's loss."""
    import torch

    p = torch.sigmoid(logit)
    dl = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logit, y) + dl.mean()
