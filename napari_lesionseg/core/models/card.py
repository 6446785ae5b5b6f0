"""The model card: everything needed to run a model correctly and to judge whether to trust it.

Stored as JSON beside a safetensors file of the same stem. Nothing in a card or a weights file is executed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LesionSegError

MODALITIES = ("ultrasound", "mammography", "histology", "mri")
KINDS = ("segmentation", "prompt", "classifier")
"""'segmentation': a whole-image model (the Segment dock's list, `lesionseg predict`); 'prompt': a network that
segments the lesion a line, box or click points at (`core/annotations/`), modality 'any' when trained on all;
'classifier': one label per image (`classifier.py`; `classes` are its labels, e.g. normal/benign/malignant), used
as a segmentation card's `gate`."""


@dataclass
class ClassInfo:
    name: str
    color: str = "#ff3030"


def _detection_clause(block: dict) -> str:
    """'; 22 of 33 masses found at 0.37 false regions per image': how a detection model (mammography) is judged,
    from a block that counts lesion regions at its operating threshold; empty for other blocks."""
    n, sens, fp = (block.get(k) for k in ("n_mass_regions", "sensitivity_at_threshold", "fp_per_image_at_threshold"))
    if not (isinstance(n, int) and n > 0 and isinstance(sens, (int, float)) and isinstance(fp, (int, float))):
        return ""
    return f"; {round(sens * n)} of {n} masses found at {fp:.2f} false regions per image"


@dataclass
class ModelCard:
    name: str
    modality: str
    kind: str = "segmentation"
    """One of KINDS."""
    architecture: str = "Unet"
    encoder: str = "resnet18"
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16, 8])
    in_channels: int = 1
    input_kind: str = "gray"
    """'gray' (one channel), 'rgb' (three colour channels) or 'slices' (2.5D: neighbouring slices as channels)."""
    classes: list[ClassInfo] = field(default_factory=lambda: [ClassInfo("lesion")])
    """Foreground classes. One class → a sigmoid output; several → softmax over background + these."""
    normalisation: dict = field(default_factory=lambda: {"kind": "percentile", "low": 0.5, "high": 99.5})
    preprocessing: list[str] = field(default_factory=list)
    """Extra steps before normalisation, e.g. ['clahe'] for ultrasound."""
    patch_size: list[int] = field(default_factory=lambda: [256, 256])
    spacing_mm: list[float] | None = None
    """Pixel spacing the model was trained at; None when images were resized whole (see `fit`)."""
    fit: str = "resize"
    """'resize': the whole image is resized to patch_size (ultrasound); 'tile': sliding window; 'breast': the breast
    found, cropped, chest wall turned left and scaled to patch_size, normalised inside the breast (mammography,
    `core/breast.py`), the prediction put back on the image's own grid."""
    threshold: float = 0.5
    tta: list[str] = field(default_factory=list)
    """Test-time flips averaged with the plain prediction, e.g. ["hflip"] (costs one forward pass each)."""
    members: int = 1
    """Networks of this architecture whose probabilities are averaged (an ensemble, `core/models/ensemble.py`);
    1: a single network."""
    weight_storage: str = "fp16"
    """How the safetensors hold the weights: 'fp16', or 'int8' (per-output-channel, for ensembles under 15 MB)."""
    gate: dict | None = None
    """Segmentation cards only: an image classifier that decides whether there is a lesion at all
    (`core/inference/gate.py`): {"classifier": name, "suppress_class": "normal", "threshold": t}: the mask is
    emptied when P(suppress_class) > t. None: no gate."""
    training_data: str = ""
    metrics: dict = field(default_factory=dict)
    parent: str | None = None
    pretrained_encoder: str | None = None
    """Where the encoder's starting weights came from (`core/models/pretrained.py`); None: trained from scratch."""
    licence: str = ""
    intended_use: str = "Research use only, not for diagnosis."
    recipe: str = ""
    date: str = ""
    notes: str = ""
    weights: str = ""
    """File name of the safetensors weights, relative to the card."""
    path: Path | None = field(default=None, compare=False, repr=False)
    """Where the card was read from (not stored)."""

    @property
    def n_outputs(self) -> int:
        return 1 if len(self.classes) == 1 else len(self.classes) + 1

    @property
    def network(self) -> str:
        """What runs, in a few words: "Unet/resnet18", or "2 × Unet/resnet18" for an ensemble."""
        one = f"{self.architecture}/{self.encoder}"
        return one if self.members == 1 else f"{self.members} × {one}"

    def headline_metric(self) -> str:
        """The one figure to show a user (Segment dock, `lesionseg models`, README): measured on data that chose
        nothing about the model (`metrics["external"]`, written from `lesionseg evaluate`), with its n; else
        cross-validated figures (`metrics["cross_validated"]`); else the validation Dice named for what it is: the
        split that chose the epoch, so optimistic. A classifier: its cross-validated figures."""
        if self.kind == "classifier":
            return self._classifier_headline()
        external = self.metrics.get("external") or {}
        if isinstance(external, dict) and external:
            block = next(iter(external.values()))
            if isinstance(block.get("mean_dice"), (int, float)):
                text = f"Dice {block['mean_dice']:.2f}"
                folds = block.get("folds")  # cross-validated: the spread of the fold means
                if isinstance(folds, dict) and isinstance(folds.get("sd_mean_dice"), (int, float)):
                    text += f" ± {folds['sd_mean_dice']:.2f} over {folds.get('n', '?')} folds"
                ci = block.get("ci95_mean_dice")
                if isinstance(ci, list) and len(ci) == 2:
                    text += f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})"
                text += f" on {block.get('n_lesion', '?')} unseen {block.get('unit', 'lesion images')}"
                text += f" ({block.get('short', block.get('dataset', 'another source'))})"
                if isinstance(block.get("misses"), int):
                    text += f", {block['misses']} missed"
                if block.get("n_lesion_free") and isinstance(block.get("fp_images"), int):
                    text += f", false lesion on {block['fp_images']} of {block['n_lesion_free']} normal images"
                return text + _detection_clause(block)
        cross_validated = self.metrics.get("cross_validated") or {}
        if isinstance(cross_validated, dict) and cross_validated:  # held-out folds: a patient is never in both
            return "Dice on held-out folds: " + "; ".join(f"{k} {v:.2f}" for k, v in cross_validated.items())
        metric = self.metrics.get("val_dice")
        if isinstance(metric, (int, float)):
            return f"validation Dice {metric:.2f} (on the split that chose the epoch: optimistic)"
        return "no independent validation"

    def _classifier_headline(self) -> str:
        """'held-out folds: accuracy 0.85 ± 0.03, macro F1 …, normal images recognised …, lesions suppressed …'."""
        s = (self.metrics.get("cross_validated_5fold_by_group") or {}).get("summary") or {}
        names = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("auc_benign_malignant", "benign/malignant AUC"),
                 ("normal_recall_gate", "normal images gated"), ("lesion_suppressed", "lesion images gated"))
        parts = [f"{label} {s[k]['mean']:.2f} ± {s[k]['sd']:.2f}" for k, label in names
                 if isinstance(s.get(k), dict) and isinstance(s[k].get("mean"), (int, float))]
        return "held-out folds: " + ", ".join(parts) if parts else "no independent validation"

    @property
    def multiclass(self) -> bool:
        return len(self.classes) > 1

    @property
    def weights_path(self) -> Path | None:
        if self.path is None or not self.weights:
            return None
        return self.path.parent / self.weights

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path", None)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, path: Path | None = None) -> "ModelCard":
        d = dict(d)
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        missing = {"name", "modality"} - set(d)
        if missing:
            raise LesionSegError(f"Model card {path or ''} lacks {', '.join(sorted(missing))}.")
        classes = [c if isinstance(c, ClassInfo) else ClassInfo(**c) for c in d.pop("classes", [{"name": "lesion"}])]
        kwargs = {k: v for k, v in d.items() if k in known}
        card = cls(classes=classes, path=path, **kwargs)
        if card.kind not in KINDS:
            raise LesionSegError(f"Model card {card.name}: unknown kind {card.kind!r}.")
        if card.modality not in MODALITIES and not (card.kind == "prompt" and card.modality == "any"):
            raise LesionSegError(f"Model card {card.name}: unknown modality {card.modality!r}.")
        return card

    @classmethod
    def read(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LesionSegError(f"Cannot read model card {path}: {e}") from e
        return cls.from_dict(d, path=path)
