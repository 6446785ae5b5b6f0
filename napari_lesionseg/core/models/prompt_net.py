"""TinyUNet: the prompt network's architecture (card architecture 'TinyUNet', kind 'prompt').

A plain 4-level U-Net (16-32-64-128, bottleneck 256, BatchNorm), 1.94 M parameters: small enough to run a prompt
in tens of milliseconds on a CPU and to fine-tune on a user's twenty corrected masks in minutes. Its input is
built by `core/annotations/line_model.frame_input` (the image crop in the prompt's frame plus prompt channels).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURE = "TinyUNet"
DEFAULT_CHANNELS = (16, 32, 64, 128)


def _block(ci: int, co: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
        nn.Conv2d(co, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    """(N, in_channels, S, S) → (N, 1, S, S) logits; S a multiple of 2 ** len(channels)."""

    def __init__(self, channels=DEFAULT_CHANNELS, in_channels: int = 2):
        super().__init__()
        ch = list(channels)
        self.down = nn.ModuleList()
        ci = in_channels
        for co in ch:
            self.down.append(_block(ci, co))
            ci = co
        self.bottom = _block(ch[-1], ch[-1] * 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        ci = ch[-1] * 2
        for co in reversed(ch):
            self.up.append(nn.ConvTranspose2d(ci, co, 2, stride=2))
            self.dec.append(_block(co * 2, co))
            ci = co
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = torch.nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.head(x)


def build_prompt_network(channels=DEFAULT_CHANNELS, in_channels: int = 2) -> TinyUNet:
    return TinyUNet(tuple(channels), in_channels)


def build_prompt_model(in_channels: int, channels=DEFAULT_CHANNELS, members: int = 1) -> nn.Module:
    """What a prompt card describes: one TinyUNet, or for a card with `members: N` an `Ensemble` of N of them
    whose probabilities are averaged (same forward(), so prompting, 3D and fine-tuning need no special case)."""
    from ..errors import LesionSegError
    from .build import Ensemble

    if int(members) < 1:
        raise LesionSegError(f"A prompt network needs at least one member, not {members}.")
    nets = [build_prompt_network(channels, in_channels) for _ in range(int(members))]
    return nets[0] if len(nets) == 1 else Ensemble(nets)
