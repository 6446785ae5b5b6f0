"""Build a network from a model card and load its safetensors weights — no pickle, no code from files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LesionSegError
from .card import ModelCard


class Ensemble(torch.nn.Module):
    """Networks of one architecture whose probabilities are averaged: the usual +0.01 Dice of an ensemble, behind
    the same forward() as a single network (it returns the logits of the mean probability), so inference,
    evaluation and fine-tuning need no special case."""

    def __init__(self, members: list[torch.nn.Module], multiclass: bool = False):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.multiclass = multiclass

    @property
    def encoder(self) -> torch.nn.Module:
        """The first member's encoder (its output stride is every member's)."""
        return self.members[0].encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x).float() for m in self.members])  # fp32: bf16 autocast would round the mean
        if self.multiclass:
            return torch.log(torch.softmax(logits, 2).mean(0).clamp_min(1e-7))
        p = torch.sigmoid(logits).mean(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)


def build_network(card: ModelCard) -> torch.nn.Module:
    """The segmentation-models-pytorch network the card describes, with no pretrained weights (nothing downloads);
    an `Ensemble` of them when the card has several members; the prompt network (`prompt_net.TinyUNet`) for a
    card of that architecture."""
    import segmentation_models_pytorch as smp

    from .prompt_net import ARCHITECTURE as PROMPT_ARCHITECTURE, build_prompt_model

    if card.architecture == PROMPT_ARCHITECTURE:
        return build_prompt_model(card.in_channels, members=card.members)

    kwargs = dict(
        encoder_name=card.encoder,
        encoder_weights=None,
        in_channels=card.in_channels,
        classes=card.n_outputs,
    )
    if card.architecture in ("Unet", "UnetPlusPlus") and card.decoder_channels:
        kwargs["decoder_channels"] = list(card.decoder_channels)
    if int(card.members) < 1:
        raise LesionSegError(f"Model {card.name}: members must be at least 1, not {card.members}.")
    try:
        nets = [smp.create_model(card.architecture, **kwargs) for _ in range(int(card.members))]
    except (KeyError, ValueError, TypeError) as e:
        raise LesionSegError(f"Model {card.name}: cannot build {card.architecture}/{card.encoder}: {e}") from e
    return nets[0] if len(nets) == 1 else Ensemble(nets, card.multiclass)


@dataclass
class LoadedModel:
    card: ModelCard
    net: torch.nn.Module
    device: torch.device


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise LesionSegError(f"Cannot read model weights {path}: {e}") from e
    scales = {k[:-len(INT8_SCALE)]: v for k, v in state.items() if k.endswith(INT8_SCALE)}
    out = {}
    for k, v in state.items():
        if k.endswith(INT8_SCALE):
            continue
        if k in scales:  # int8 storage: back to float, one scale per output channel
            v = _from_int8(v, scales[k])
        out[k] = v.float() if v.is_floating_point() else v
    return out


def load_weights_into(net: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load `state` into `net`, or raise LesionSegError naming the first tensor that does not fit (a weights file
    made for another architecture, encoder or number of classes), instead of torch's page of size mismatches."""
    own = net.state_dict()
    wrong = [k for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        more = f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else ""
        raise LesionSegError(f"{what}: weights do not fit the architecture: tensor {k} has shape "
                             f"{tuple(state[k].shape)} in the file but the network needs {tuple(own[k].shape)}{more}.")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        example = f"e.g. {missing[0]} missing" if missing else f"e.g. {unexpected[0]} not in the network"
        raise LesionSegError(f"{what}: weights do not fit the architecture ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected tensors; {example}).")
    net.load_state_dict(state)


def load_model(card: ModelCard, device: torch.device | str = "cpu") -> LoadedModel:
    wp = card.weights_path
    if wp is None or not wp.exists():
        raise LesionSegError(f"Model {card.name}: weights file {wp} is missing.")
    net = build_network(card)
    load_weights_into(net, load_state(wp), f"Model {card.name}")
    device = torch.device(device)
    net.to(device).eval()
    return LoadedModel(card=card, net=net, device=device)


INT8_SCALE = ".int8_scale"
"""Suffix of the per-output-channel scale tensor stored beside an int8 weight."""


def _to_int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: weight ≈ q · scale (rounding error ≤ scale/2 = max|w|/254)."""
    scale = v.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
    q = torch.round(v / scale.view(-1, *[1] * (v.ndim - 1))).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.float().contiguous()


def _from_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float().view(-1, *[1] * (q.ndim - 1))


@torch.no_grad()
def round_to_int8(net: torch.nn.Module) -> None:
    """Give the network in memory the weights int8 storage will give it, so what is measured is what is shipped."""
    for v in net.state_dict().values():
        if v.is_floating_point() and v.ndim >= 2:
            v.copy_(_from_int8(*_to_int8(v.float())))


def save_weights(net: torch.nn.Module, path: Path, half: bool = True, int8: bool = False) -> None:
    """Write weights as safetensors (fp16 by default: half the size, no measurable loss for inference).

    `int8`: convolution and linear weights as int8 with a scale per output channel, a quarter of fp32 (an
    ensemble of two networks fits the 15 MB a shipped model may take; Dice changed by < 0.002 when checked)."""
    from safetensors.torch import save_file

    state = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        if int8 and v.is_floating_point() and v.ndim >= 2:
            state[k], state[k + INT8_SCALE] = _to_int8(v.float())
            continue
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    save_file(state, str(path))
