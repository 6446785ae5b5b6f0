"""Training augmentation: the mask must follow every geometric change; scanner changes touch only the image."""

from __future__ import annotations

import numpy as np
import torch

from napari_lesionseg.core.training.augment import augment_batch
from tiny_models import blob_image


def _batch(n=8, shape=(64, 64)):
    rng = np.random.default_rng(0)
    pairs = [blob_image(rng, shape=shape, n_blobs=2) for _ in range(n)]
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    # Lesions touching the border too: reflected padding must reflect the mask with the image.
    y[:, :6, :20] = 1
    return y.float()[:, None] * 2 - 1, y


def test_the_mask_follows_flips_rotation_scaling_and_shifts_up_to_the_border():
    x, y = _batch()
    gen = torch.Generator().manual_seed(1)
    xa, ya = augment_batch(x.clone(), y.clone(), ["flip", "rot90", "affine"], gen)
    agree = ((xa[:, 0] > 0) == (ya > 0)).float().mean()
    assert agree > 0.98, f"image and mask disagree on {1 - agree:.1%} of pixels"
    assert not torch.equal(ya, y)  # something did move


def test_speckle_and_resolution_change_only_the_image():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.uniform(-1, 1, (8, 1, 64, 64)).astype(np.float32))
    _, y = _batch()
    gen = torch.Generator().manual_seed(3)
    xa, ya = augment_batch(x.clone(), y.clone(), ["speckle", "resolution"], gen)
    assert torch.equal(ya, y)
    assert xa.min() >= -1 and xa.max() <= 1 and torch.isfinite(xa).all()
    changed = (xa - x).abs().mean(dim=(1, 2, 3)) > 1e-3
    assert 0 < int(changed.sum()) <= 8  # each change is applied to about half the images


def test_depth_gain_changes_brightness_smoothly_with_depth_and_blur_softens_edges():
    x = torch.full((16, 1, 64, 64), 0.2)  # mid-grey ([-1, 1] scale) with a sharp vertical edge
    x[..., 32:] = -0.2
    _, y = _batch(16)
    gen = torch.Generator().manual_seed(5)
    xa, ya = augment_batch(x.clone(), y.clone(), ["gain"], gen)
    assert torch.equal(ya, y)
    assert xa.min() >= -1 and xa.max() <= 1 and torch.isfinite(xa).all()
    rows = xa[:, 0, :, :16].mean(-1)  # brightness per depth, left of the edge
    gained = (rows[:, 0] - rows[:, -1]).abs() > 0.02
    assert 0 < int(gained.sum()) < 16  # a depth profile on some images, not all
    assert (rows.diff(dim=1).abs().max(dim=1).values < 0.05).all()  # smooth over depth: no steps
    # gain is the same along a row, so two pixels left of the edge differ only where blur spread the edge there
    spread = (xa[:, 0, :, 30] - xa[:, 0, :, 29]).abs().mean(-1) > 1e-3
    assert 0 < int(spread.sum()) < 16  # a softer focus on some images, not all
