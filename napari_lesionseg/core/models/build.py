"""Build a network from a model card and load its safetensors weights — no pickle, no code from files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LesionSegError
from .card import ModelCard


def build_network(card: ModelCard) -> torch.nn.Module:
    """The segmentation-models-pytorch network the card describes, with no pretrained weights (nothing downloads)."""
    import segmentation_models_pytorch as smp

    kwargs = dict(
        encoder_name=card.encoder,
        encoder_weights=None,
        in_channels=card.in_channels,
        classes=card.n_outputs,
    )
    if card.architecture in ("Unet", "UnetPlusPlus") and card.decoder_channels:
        kwargs["decoder_channels"] = list(card.decoder_channels)
    try:
        return smp.create_model(card.architecture, **kwargs)
    except (KeyError, ValueError, TypeError) as e:
        raise LesionSegError(f"Model {card.name}: cannot build {card.architecture}/{card.encoder}: {e}") from e


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
    return {k: v.float() for k, v in state.items()}


def load_model(card: ModelCard, device: torch.device | str = "cpu") -> LoadedModel:
    wp = card.weights_path
    if wp is None or not wp.exists():
        raise LesionSegError(f"Model {card.name}: weights file {wp} is missing.")
    net = build_network(card)
    state = load_state(wp)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LesionSegError(
            f"Model {card.name}: weights do not fit the architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)."
        )
    device = torch.device(device)
    net.to(device).eval()
    return LoadedModel(card=card, net=net, device=device)


def save_weights(net: torch.nn.Module, path: Path, half: bool = True) -> None:
    """Write weights as safetensors (fp16 by default: half the size, no measurable loss for inference)."""
    from safetensors.torch import save_file

    state = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    save_file(state, str(path))
