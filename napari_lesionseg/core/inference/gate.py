"""The image gate: an image classifier decides whether a 2D image holds a lesion at all, before its mask is used.

A segmentation network trained mostly on lesion images finds "something" on most lesion-free ones (the shipped
ultrasound ensemble put a false region on 25 of 34 unseen normal BUSI images). A segmentation card may name a
classifier card in its `gate` ({"classifier": name, "suppress_class": "normal", "threshold": t}); when the
classifier's probability of `suppress_class` exceeds `t`, the image's lesion probabilities are set to zero, so the
mask is empty in `lesionseg predict`, `lesionseg evaluate` and the Segment dock alike (all three call
`gate_probabilities`). The classifier always reports its class probabilities for a gated model's 2D image; whether
it may empty the mask is `gate_on`: the card's `on_by_default` (true when absent) unless the user says otherwise
(`--gate` / `--no-gate`, the dock's checkbox). The shipped ultrasound card keeps it off: measured held out it
emptied more real lesions than it cleaned normal images (see its card, `metrics.image_gate`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LesionSegError


@dataclass
class GateResult:
    """What the classifier said about one image, and whether the mask was suppressed."""

    classifier: str
    probabilities: dict[str, float]
    suppress_class: str
    threshold: float
    suppressed: bool
    """The mask was emptied (the classifier said no lesion and the gate was on)."""
    no_lesion: bool = False
    """The classifier's P(suppress_class) is above the threshold, whether or not the gate was on."""

    def summary(self) -> str:
        """'normal 0.93 · benign 0.05 · malignant 0.02: no lesion (mask suppressed)'."""
        text = " · ".join(f"{k} {v:.2f}" for k, v in self.probabilities.items())
        if self.suppressed:
            return f"{text}: no lesion (P({self.suppress_class}) > {self.threshold:.2f}, mask suppressed)"
        if self.no_lesion:
            return f"{text}: the classifier sees no lesion (gate off: mask kept)"
        return text


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float):
    from ..models.card import ModelCard
    from ..models.classifier import load_classifier

    return load_classifier(ModelCard.read(path))


def classifier_card(seg_card):
    """The gate's classifier card: beside the segmentation card first (a models folder travels whole), else from
    the registry."""
    name = str(seg_card.gate.get("classifier", ""))
    if seg_card.path is not None:
        beside = Path(seg_card.path).parent / f"{name}.json"
        if beside.exists():
            from ..models.card import ModelCard

            return ModelCard.read(beside)
    from ..models import default_registry

    try:
        return default_registry().get(name, kind="classifier")
    except LesionSegError as e:
        raise LesionSegError(f"Model {seg_card.name} checks each image with the classifier {name!r}, which is "
                             f"not installed ({e}) Turn the gate off (--no-gate, or untick it in the dock) to "
                             "segment without it.") from None


def gate_on(seg_card, gate: bool | None = None) -> bool:
    """Whether the gate may empty masks: the user's choice, else the card's `on_by_default` (true when absent)."""
    if not getattr(seg_card, "gate", None):
        return False
    return bool(seg_card.gate.get("on_by_default", True)) if gate is None else bool(gate)


def gate_applies(seg_card, spatial_ndim: int, lazy: bool = False) -> bool:
    """Only whole 2D images of a model whose card names a gate (never volumes or slides)."""
    return bool(seg_card.gate) and spatial_ndim == 2 and not lazy


def classify(seg_card, image: np.ndarray) -> GateResult:
    """The classifier's probabilities for this image and the card's rule."""
    card = classifier_card(seg_card)
    wp = card.weights_path
    if wp is None or not wp.exists():
        raise LesionSegError(f"Classifier {card.name}: weights file {wp} is missing.")
    probs = _load(str(card.path), card.path.stat().st_mtime).probabilities(np.asarray(image))
    cls = str(seg_card.gate.get("suppress_class", "normal"))
    if cls not in probs:
        raise LesionSegError(f"Model {seg_card.name}: its gate suppresses class {cls!r}, which classifier "
                             f"{card.name} does not have ({', '.join(probs)}).")
    t = float(seg_card.gate.get("threshold", 0.5))
    return GateResult(card.name, probs, cls, t, probs[cls] > t, no_lesion=probs[cls] > t)


def suppress(probs, seg_card):
    """Probabilities of "no lesion anywhere" in the shape of `probs` (multi-class: all background)."""
    out = np.zeros_like(np.asarray(probs))
    if seg_card.multiclass:
        out[0] = 1.0
    return out


def gate_probabilities(seg_card, image: np.ndarray, probs, enabled: bool = True):
    """(probs, GateResult or None): the probabilities of a 2D image, emptied when the gate is `enabled` and its
    classifier says there is no lesion; the classifier reports either way. None when the model has no gate."""
    if not gate_applies(seg_card, 2):
        return probs, None
    result = classify(seg_card, image)
    if not enabled:
        result.suppressed = False
    return (suppress(probs, seg_card) if result.suppressed else probs), result
