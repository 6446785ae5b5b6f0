"""Batch augmentation on tensors (cheap on CPU): flips, 90° turns, rotation/scale/shift, intensity, stain jitter,
and the changes another scanner brings (speckle, resolution; `gain`: an ultrasound scanner's depth gain and focus).
`hed` perturbs H&E stain amounts in optical density
(Tellez et al., Med Image Anal 58, 2019), the colour change between labs and organs that `stain`'s per-channel
jitter barely covers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Ruifrok & Johnston's stain vectors (haematoxylin, eosin, DAB) as rows: optical density = concentrations @ HED_RGB.
HED_RGB = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_SIGMA = 0.05
"""Stain amounts are scaled by 1 ± σ and shifted by ± σ (in optical density), the range Tellez et al. found best."""


def hed_jitter(x: torch.Tensor, gen: torch.Generator, sigma: float = HED_SIGMA) -> torch.Tensor:
    """x (N, 3, H, W) RGB in [-1, 1] → the same tissue as if stained a little more or less with each dye."""
    n = x.shape[0]
    rgb_hed = HED_RGB / HED_RGB.norm(dim=1, keepdim=True)
    to_hed = torch.linalg.inv(rgb_hed)
    rgb = ((x + 1) / 2).clamp(1e-3, 1)
    od = -torch.log(rgb).permute(0, 2, 3, 1)  # N, H, W, 3
    hed = od @ to_hed
    scale = 1 + (torch.rand(n, 1, 1, 3, generator=gen) * 2 - 1) * sigma
    shift = (torch.rand(n, 1, 1, 3, generator=gen) * 2 - 1) * sigma
    od = (hed * scale + shift) @ rgb_hed
    rgb = torch.exp(-od.clamp(min=0)).permute(0, 3, 1, 2)
    return rgb.clamp(0, 1) * 2 - 1


def augment_batch(x: torch.Tensor, y: torch.Tensor, kinds: list[str], gen: torch.Generator,
                  hed_sigma: float = HED_SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C, H, W) float, y (N, H, W) long → augmented copies; the mask follows every geometric change.
    `hed_sigma`: how far `hed` moves the stain amounts (±σ scale and shift)."""
    n = x.shape[0]
    if "flip" in kinds:
        f = torch.rand(n, generator=gen) < 0.5
        x[f] = x[f].flip(-1)
        y[f] = y[f].flip(-1)
    if "vflip" in kinds or "rot90" in kinds:
        f = torch.rand(n, generator=gen) < 0.5
        x[f] = x[f].flip(-2)
        y[f] = y[f].flip(-2)
    if "rot90" in kinds and x.shape[-1] == x.shape[-2]:
        f = torch.rand(n, generator=gen) < 0.5
        x[f] = x[f].transpose(-1, -2)
        y[f] = y[f].transpose(-1, -2)
    if "affine" in kinds:
        ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(15)
        scale = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log(1.2))
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.1
        cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        # The mask is padded like the image: a lesion reflected into the border is lesion in both.
        y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                          align_corners=False)[:, 0].long()
    if "intensity" in kinds:
        x01 = ((x + 1) / 2).clamp(0, 1)
        gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * math.log(1.5))
        x01 = x01 ** gamma
        contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.2
        bright = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.1
        x01 = (x01 - 0.5) * contrast + 0.5 + bright
        x01 = x01 + torch.randn(x.shape, generator=gen) * 0.02 * torch.rand(n, 1, 1, 1, generator=gen)
        x = x01 * 2 - 1
    if "resolution" in kinds:
        # A coarser probe or a smaller export: down-sample by up to 2x and back, on half the images.
        f = torch.rand(n, generator=gen) < 0.5
        if f.any():
            h, w = x.shape[-2:]
            k = float(1 + torch.rand(1, generator=gen))
            small = F.interpolate(x[f], size=(max(8, int(h / k)), max(8, int(w / k))), mode="bilinear",
                                  align_corners=False, antialias=True)
            x[f] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if "speckle" in kinds:
        # Multiplicative speckle of random strength (gamma-distributed, mean 1), on half the images.
        f = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
        looks = 4 + 28 * torch.rand(n, 1, 1, 1, generator=gen)
        g = torch._standard_gamma(looks.expand_as(x).contiguous(), generator=gen) / looks
        x01 = ((x + 1) / 2).clamp(0, 1)
        x01 = x01 * (1 + f * (g - 1))
        x = x01.clamp(0, 1) * 2 - 1
    if "gain" in kinds:
        x = depth_gain_and_focus(x, gen)
    if "hed" in kinds and x.shape[1] == 3:
        x = hed_jitter(x, gen, hed_sigma)
    if "stain" in kinds and x.shape[1] == 3:
        # H&E staining varies between labs: jitter each colour channel's scale and offset a little.
        s = 1 + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * 0.08
        b = (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * 0.08
        x = x * s + b
    return x.contiguous(), y.contiguous()


def depth_gain_and_focus(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Another ultrasound scanner's settings: its time-gain compensation (brightness changing smoothly with depth,
    rows from the probe at the top: a random linear and quadratic profile, up to about ×0.7–×1.4 at the ends) on
    half the images, and a softer focus (Gaussian blur, σ 0.5–1.5 px) on a third."""
    n, _, h, w = x.shape
    x01 = ((x + 1) / 2).clamp(0, 1)
    t = torch.linspace(-0.5, 0.5, h).view(1, 1, h, 1)
    a1 = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.6
    a2 = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 1.2
    on = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    x01 = x01 * torch.exp(on * (a1 * t + a2 * (t ** 2 - 1 / 12)))
    blur = torch.rand(n, generator=gen) < 1 / 3
    if blur.any():
        sigma = float(0.5 + torch.rand(1, generator=gen))
        r = torch.arange(-3, 4, dtype=x.dtype)
        k = torch.exp(-r ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        c = x.shape[1]
        xb = x01[blur]
        xb = F.conv2d(F.pad(xb, (3, 3, 0, 0), mode="reflect"), k.view(1, 1, 1, 7).repeat(c, 1, 1, 1), groups=c)
        xb = F.conv2d(F.pad(xb, (0, 0, 3, 3), mode="reflect"), k.view(1, 1, 7, 1).repeat(c, 1, 1, 1), groups=c)
        x01[blur] = xb
    return x01.clamp(0, 1) * 2 - 1
