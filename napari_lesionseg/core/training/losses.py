"""Segmentation losses: BCE + Dice (default), Dice, Jaccard, focal, and the U-Net paper's boundary-weighted CE."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LesionSegError

LOSSES = ("bce_dice", "bce_image_dice", "dice", "jaccard", "focal", "weighted_ce")


def _probs_and_onehot(logits: torch.Tensor, y: torch.Tensor):
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return p[:, None], (y > 0).float()[:, None]
    p = torch.softmax(logits, 1)
    oh = F.one_hot(y.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float()
    return p[:, 1:], oh[:, 1:]


def soft_dice(logits, y, eps: float = 1.0, jaccard: bool = False, per_image: bool = False) -> torch.Tensor:
    """Soft Dice over the batch (batch-level sums keep lesion-free images from dominating), or with `per_image`
    Dice per image averaged over the images that hold lesion: the score users read is a mean of per-image Dice,
    in which a small lesion counts as much as a large one. Lesion-free images then add nothing here; the
    cross-entropy term teaches them."""
    p, t = _probs_and_onehot(logits, y)
    dims = (2, 3) if per_image else (0, 2, 3)
    inter = (p * t).sum(dim=dims)
    total = p.sum(dim=dims) + t.sum(dim=dims)
    if jaccard:
        loss = 1 - (inter + eps) / (total - inter + eps)
    else:
        loss = 1 - (2 * inter + eps) / (total + eps)
    if not per_image:
        return loss.mean()
    has = t.sum(dim=dims) > 0
    return loss[has].mean() if bool(has.any()) else logits.sum() * 0.0


def cross_entropy(logits, y, weight_map=None) -> torch.Tensor:
    if logits.shape[1] == 1:
        l = F.binary_cross_entropy_with_logits(logits[:, 0], (y > 0).float(), reduction="none")
    else:
        l = F.cross_entropy(logits, y, reduction="none")
    if weight_map is not None:
        l = l * weight_map
    return l.mean(dim=(1, 2))


def hard_pixel_term(logits, y, fraction: float) -> torch.Tensor:
    """Per image, the mean cross-entropy of its hardest `fraction` of pixels (OHEM-style): a confident false blob on
    a lesion-free image costs as much here as a missed lesion, where the mean pixel loss dilutes it over thousands
    of easy background pixels. The same total loss spread thinly as noise costs little."""
    if logits.shape[1] == 1:
        l = F.binary_cross_entropy_with_logits(logits[:, 0], (y > 0).float(), reduction="none")
    else:
        l = F.cross_entropy(logits, y, reduction="none")
    flat = l.flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)


def focal(logits, y, gamma: float = 2.0) -> torch.Tensor:
    if logits.shape[1] == 1:
        t = (y > 0).float()
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], t, reduction="none")
        p = torch.sigmoid(logits[:, 0])
        pt = p * t + (1 - p) * (1 - t)
    else:
        ce = F.cross_entropy(logits, y, reduction="none")
        pt = torch.exp(-ce)
    return ((1 - pt) ** gamma * ce).mean(dim=(1, 2))


def unet_weight_map(mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Ronneberger et al. 2015: class-balance weights plus w0·exp(-(d1+d2)²/2σ²) between touching objects."""
    from scipy import ndimage as ndi

    fg = mask > 0
    n_fg = fg.sum()
    wc = np.ones(mask.shape, np.float32)
    if 0 < n_fg < mask.size:
        wc[fg] = 0.5 * mask.size / n_fg
        wc[~fg] = 0.5 * mask.size / (mask.size - n_fg)
    lab, n = ndi.label(fg)
    if n >= 2:
        dists = np.stack([ndi.distance_transform_edt(lab != i) for i in range(1, n + 1)])
        dists.sort(axis=0)
        d1, d2 = dists[0], dists[1]
        wc = wc + (w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)) * (~fg)).astype(np.float32)
    return wc


HARD_PIXEL_IMAGES = ("all", "lesion_free")


def compute_loss(name: str, logits: torch.Tensor, y: torch.Tensor, hard_pixel_fraction: float = 0.0,
                 hard_pixel_images: str = "all", hard_pixel_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and a per-example loss (used for hard-negative mining); with `hard_pixel_fraction` > 0 each
    image's hardest-pixel cross-entropy (`hard_pixel_term`) is added to both: on every image, or with
    `hard_pixel_images="lesion_free"` only on images without lesion, so a false region on a normal image is
    charged while a lesion's uncertain border (where the term on every image teaches the network to hedge) is not.
    `hard_pixel_weight` scales the term."""
    if hard_pixel_images not in HARD_PIXEL_IMAGES:
        raise LesionSegError(f"hard_pixel_images must be one of {', '.join(HARD_PIXEL_IMAGES)}, "
                             f"not {hard_pixel_images!r}.")
    loss, per = _named_loss(name, logits, y)
    if hard_pixel_fraction > 0:
        hard = hard_pixel_term(logits, y, hard_pixel_fraction)
        if hard_pixel_images == "lesion_free":
            hard = hard * ((y > 0).flatten(1).sum(dim=1) == 0).to(hard.dtype)
        hard = hard * hard_pixel_weight
        return loss + hard.mean(), per + hard.detach()
    return loss, per


def _named_loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if name in ("bce_dice", "bce_image_dice"):
        per = cross_entropy(logits, y)
        return per.mean() + soft_dice(logits, y, per_image=name == "bce_image_dice"), per.detach()
    if name == "dice":
        l = soft_dice(logits, y)
        return l, cross_entropy(logits, y).detach()
    if name == "jaccard":
        l = soft_dice(logits, y, jaccard=True)
        return l, cross_entropy(logits, y).detach()
    if name == "focal":
        per = focal(logits, y)
        return per.mean(), per.detach()
    if name == "weighted_ce":
        wm = torch.from_numpy(np.stack([unet_weight_map(m) for m in y.cpu().numpy()])).to(logits.device)
        per = cross_entropy(logits, y, wm)
        return per.mean(), per.detach()
    raise LesionSegError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
