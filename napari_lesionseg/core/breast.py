"""Mammograms of any scanner in one frame: the breast found, cropped, turned chest wall left, scaled to a fixed size,
its intensities normalised inside the breast only (the card's `fit: breast`).

Film (mini-MIAS, 1024², 200 µm, film labels and edges) and full-field digital mammograms (CDD-CESM, 512², no
pixel size) differ in pixel size, field of view, side and background; a network trained on whole resized images of
one does not find masses on the other. Scaling the breast's larger extent to the model's input size is a physical
scale proxy when the pixel size is unknown (breasts differ in size far less than detectors and exports do), and
percentiles of breast pixels (not of the whole image, half of which is background or labels) fit both.

Training (`training/data.make_examples`), `lesionseg predict`/`evaluate` and the Segment dock
(`inference/engine.Predictor.predict_image`) all go through `breast_input`, and `BreastFrame.to_original` puts a
prediction back on the original image's pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LesionSegError

FIND_SIDE = 256
"""The breast is found on a copy of this size (fast, and film grain and labels' text vanish)."""


def find_breast(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the breast (and pectoral muscle): the largest bright region after smoothing, holes filled.
    Film labels, markers and scanner edge strips are separate regions and are left out."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    h, w = gray.shape
    step = max(1, int(np.ceil(max(h, w) / FIND_SIDE)))
    small = ndi.gaussian_filter(gray[::step, ::step].astype(np.float32), 1.5)
    lo, hi = np.percentile(small, [1, 99.5])
    if hi <= lo:
        raise LesionSegError("The image is blank: no breast to find.")
    thr = lo + 0.5 * (threshold_otsu(small) - lo)  # below Otsu: the fatty periphery of the breast is dim
    tissue = ndi.binary_opening(small > thr, iterations=3)  # cut thin bridges to labels and edge strips
    labels, n = ndi.label(tissue)
    if not n:
        raise LesionSegError("No breast found in this image (nothing brighter than the background).")
    sizes = ndi.sum(tissue, labels, index=range(1, n + 1))
    breast = ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    breast = ndi.binary_dilation(breast, iterations=2)  # give back what the opening took at the skin
    full = np.repeat(np.repeat(breast, step, 0), step, 1)[:h, :w]
    return full


def chest_wall_on_right(breast: np.ndarray) -> bool:
    """The chest wall is the side where the breast is tallest: the breast's outer tenth of columns on each side of
    its own extent (film is often padded on both sides, so the image edge says nothing), the fuller one."""
    cols = np.flatnonzero(breast.any(0))
    if len(cols) < 2:
        return False
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    band = max(1, (x1 - x0) // 10)
    return bool(breast[:, x1 - band:x1].sum() > breast[:, x0:x0 + band].sum())


@dataclass(frozen=True)
class BreastFrame:
    """Where the breast lies in the original image and how it maps onto the model's square input.

    Model input = the image mirrored (if `flip`), cropped to rows y0:y1 and columns x0:x1, placed at the top left of
    a square of side `side` (the crop's larger extent), resized to `size`."""

    shape: tuple[int, int]
    y0: int
    y1: int
    x0: int
    x1: int
    flip: bool
    size: int

    @property
    def side(self) -> int:
        return max(self.y1 - self.y0, self.x1 - self.x0)

    @property
    def scale(self) -> float:
        """Model pixels per original pixel (× original pixel size in mm = the model's mm per pixel)."""
        return self.size / self.side

    def to_model(self, plane: np.ndarray, nearest: bool = False, fill: float = 0.0) -> np.ndarray:
        """(H, W) array of the original grid → (size, size) in the model's frame (`nearest` for masks)."""
        a = plane[:, ::-1] if self.flip else plane
        crop = np.asarray(a[self.y0:self.y1, self.x0:self.x1], np.float32)
        square = np.full((self.side, self.side), fill, np.float32)
        square[: crop.shape[0], : crop.shape[1]] = crop
        t = torch.from_numpy(square)[None, None]
        if nearest:
            out = F.interpolate(t, size=(self.size, self.size), mode="nearest")
        else:
            out = F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                antialias=True)
        return out[0, 0].numpy()

    def to_original(self, probs: np.ndarray) -> np.ndarray:
        """(..., size, size) maps in the model's frame → (..., H, W) on the original grid (0 outside the breast box)."""
        lead = probs.shape[:-2]
        t = torch.from_numpy(np.ascontiguousarray(probs, np.float32)).reshape(1, -1, self.size, self.size)
        square = F.interpolate(t, size=(self.side, self.side), mode="bilinear", align_corners=False)[0]
        out = np.zeros((square.shape[0],) + tuple(self.shape), np.float32)
        out[:, self.y0:self.y1, self.x0:self.x1] = square[:, : self.y1 - self.y0, : self.x1 - self.x0].numpy()
        if self.flip:
            out = out[..., ::-1]
        return np.ascontiguousarray(out.reshape(lead + tuple(self.shape)))


def breast_frame(breast: np.ndarray, size: int) -> BreastFrame:
    """The frame of a breast mask: chest wall turned to the left, the breast's bounding box."""
    flip = chest_wall_on_right(breast)
    b = breast[:, ::-1] if flip else breast
    rows, cols = np.flatnonzero(b.any(1)), np.flatnonzero(b.any(0))
    return BreastFrame(shape=tuple(breast.shape), y0=int(rows[0]), y1=int(rows[-1]) + 1, x0=int(cols[0]),
                       x1=int(cols[-1]) + 1, flip=flip, size=int(size))


def breast_input(image: np.ndarray, card) -> tuple[np.ndarray, BreastFrame]:
    """(H, W) mammogram → ((1, S, S) model input, its frame): the breast cropped and scaled to S = patch size,
    CLAHE if the card asks, then the card's percentiles taken over breast pixels only; background set to −1."""
    from .preprocess import clahe, to_channels

    gray = to_channels(image, "gray")[0]
    breast = find_breast(gray)
    frame = breast_frame(breast, int(card.patch_size[0]))
    x = frame.to_model(gray)[None]
    inside = frame.to_model(breast.astype(np.float32), nearest=True) > 0.5
    x[0][~inside] = x[0][inside].min() if inside.any() else 0.0
    if "clahe" in card.preprocessing:
        x = clahe(x)
    spec = card.normalisation
    lo, hi = np.percentile(x[0][inside], [spec.get("low", 1.0), spec.get("high", 99.0)])
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) * 2 - 1
    x[0][~inside] = -1.0
    return x.astype(np.float32), frame


def breast_target(mask: np.ndarray, frame: BreastFrame) -> np.ndarray:
    """A training mask in the model's frame (nearest neighbour: labels stay labels)."""
    return frame.to_model(mask, nearest=True).astype(np.uint8)
