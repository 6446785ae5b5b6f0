"""An image-class head trained with the segmenter (multi-task): normal / benign / malignant from the encoder.

Why: issue 15 asks for the image-level class "with the segmentation network or beside it". Beside it is the
`ultrasound-class` gate; this is the other way, a small head on the encoder's deepest features whose cross-entropy
is added to the segmentation loss, so that the encoder the decoder reads must also tell a normal image from a lesion
image. It is a training-time aid only: the published network is the plain segmenter (the head is not saved in the
model), so inference, cards and fine-tuning are untouched.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LesionSegError


class ImageHead(torch.nn.Module):
    """Global average pool of a feature map → dropout → one linear layer of class logits."""

    def __init__(self, channels: int, n_classes: int, dropout: float = 0.2):
        super().__init__()
        self.drop = torch.nn.Dropout(dropout)
        self.fc = torch.nn.Linear(channels, n_classes)
        torch.nn.init.zeros_(self.fc.weight)  # start at uniform class probabilities: no shock to the encoder
        torch.nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(features.float().mean(dim=(2, 3))))


def example_classes(examples, cases, fit: str) -> tuple[list[str], np.ndarray]:
    """The image classes (sorted) and each example's class index, from the cases' `label` (cases.json "cls").
    Whole images only: a patch of a lesion image may hold no lesion, so it cannot carry the image's class."""
    if fit not in ("resize", "breast"):
        raise LesionSegError(f"image_head_weight needs whole images (fit resize or breast), not fit {fit!r}: a "
                             "patch does not show its image's class.")
    label_of = {c.name: c.label for c in cases}
    unlabelled = sorted({e.case for e in examples if not label_of.get(e.case)})
    if unlabelled:
        raise LesionSegError(f"image_head_weight needs an image class for every training image (cases.json "
                             f"\"cls\"); {len(unlabelled)} have none, e.g. {unlabelled[0]}.")
    classes = sorted({label_of[e.case] for e in examples})
    if len(classes) < 2:
        raise LesionSegError(f"image_head_weight needs at least two image classes; the cases give {classes}.")
    return classes, np.array([classes.index(label_of[e.case]) for e in examples], dtype=np.int64)


class EncoderTap:
    """Keeps the deepest feature map of the network's encoder from its last forward pass (a forward hook)."""

    def __init__(self, net: torch.nn.Module):
        encoder = getattr(net, "encoder", None)
        if encoder is None or not hasattr(encoder, "out_channels"):
            raise LesionSegError("image_head_weight needs a network with an encoder (an smp architecture).")
        self.channels = int(list(encoder.out_channels)[-1])
        self.features: torch.Tensor | None = None
        encoder.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.features = output[-1]


def image_class_loss(head: ImageHead, tap: EncoderTap, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's class logits on the features of the batch just run, in fp32."""
    if tap.features is None:
        raise RuntimeError("the encoder has not run yet")
    return F.cross_entropy(head(tap.features).float(), targets)
