"""Training options with the defaults that worked on the project's data; read from/written to JSON or YAML."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from ..errors import LesionSegError
from ..models.card import MODALITIES
from .losses import HARD_PIXEL_IMAGES, LOSSES

ARCHITECTURES = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "PAN",
                 "UPerNet", "Segformer", "DPT")
"""segmentation_models_pytorch's architectures as its classes spell them (a test keeps the list in step with smp)."""
AUGMENTATIONS = ("flip", "vflip", "rot90", "affine", "intensity", "stain", "hed", "speckle", "resolution", "gain")
CHOICES = {
    "modality": MODALITIES,
    "architecture": ARCHITECTURES,
    "input_kind": ("gray", "rgb", "slices"),
    "fit": ("resize", "tile", "breast"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "loss": LOSSES,
    "hard_pixel_images": HARD_PIXEL_IMAGES,
}
LIST_CHOICES = {"augment": AUGMENTATIONS, "preprocessing": ("clahe",), "tta": ("hflip", "vflip")}
NORMALISATIONS = ("percentile", "zscore", "range", "none")
POSITIVE = ("epochs", "batch_size", "learning_rate", "patch_size")


def check_encoder(name: str) -> None:
    """Refuse an encoder neither segmentation_models_pytorch nor timm (`tu-<model>`) has, naming close ones; checked
    when training starts (not in `validate`: the lists need smp, whose import takes seconds in the viewer)."""
    import difflib

    import segmentation_models_pytorch as smp

    smp_names = list(smp.encoders.get_encoder_names())
    if name in smp_names:
        return
    if name.startswith("tu-"):
        import timm

        timm_names = timm.list_models()
        if name[3:] in timm_names:
            return
        close = ["tu-" + n for n in difflib.get_close_matches(name[3:], timm_names, n=5)]
    else:
        close = difflib.get_close_matches(name, smp_names, n=5)
    raise LesionSegError(
        f"Training options not understood: encoder {name!r} is not one segmentation_models_pytorch or timm has"
        + (f" (close: {', '.join(close)})" if close else "")
        + f". Use one of {', '.join(smp_names[:8])}… or tu-<a timm model>, e.g. tu-resnet10t.")


SOURCE_KEYS = ("images", "masks", "cases_json")


def source_problems(cfg) -> list[str]:
    """What is wrong with `sources`: not a list of {images, masks[, cases_json]}, or given beside `images`/`masks`."""
    if cfg.sources is None:
        return []
    if cfg.images or cfg.masks or cfg.cases_json:
        return ["give either images/masks/cases_json or sources, not both"]
    if not isinstance(cfg.sources, list) or not cfg.sources:
        return ["sources must be a non-empty list of {images: FOLDER, masks: FOLDER}"]
    problems = []
    for i, src in enumerate(cfg.sources, 1):
        if not isinstance(src, dict):
            problems.append(f"sources entry {i} must be a mapping with images and masks, not {src!r}")
            continue
        unknown = sorted(set(src) - set(SOURCE_KEYS))
        if unknown:
            problems.append(f"sources entry {i}: unknown key(s) {', '.join(unknown)} "
                            f"(allowed: {', '.join(SOURCE_KEYS)})")
        problems += [f"sources entry {i} needs {k}: FOLDER" for k in ("images", "masks")
                     if not isinstance(src.get(k), str) or not src.get(k)]
    return problems


@dataclass
class TrainConfig:
    name: str
    modality: str
    images: str | None = None
    """Folder of images (PNG/TIFF/NIfTI…); masks with the same file stem in `masks`."""
    masks: str | None = None
    sources: list[dict] | None = None
    """Several image/mask folder pairs trained as one set, instead of `images`/`masks`: e.g.
    `[{images: a/images, masks: a/masks}, {images: b/images, masks: b/masks, cases_json: b/cases.json}]`."""
    cases_json: str | None = None
    """Optional BUSI-style cases.json giving a `group` per image (validation is split by group)."""
    base: str | None = None
    """Model to fine-tune (name or card path); None trains from scratch with the architecture below."""
    architecture: str = "Unet"
    encoder: str = "tu-resnet10t"
    encoder_init: str | None = None
    """Start the encoder from pretrained weights that an installed package carries (`core/models/pretrained.py`,
    e.g. "efficientnet-lite0-imagenet"); None: from scratch. Ignored when fine-tuning a `base` model."""
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 16, 8])
    input_kind: str = "gray"
    classes: list[str] = field(default_factory=lambda: ["lesion"])
    preprocessing: list[str] = field(default_factory=list)
    normalisation: dict = field(default_factory=lambda: {"kind": "percentile", "low": 0.5, "high": 99.5})
    fit: str = "resize"
    patch_size: list[int] = field(default_factory=lambda: [224, 224])
    spacing_mm: list[float] | None = None
    context_slices: int = 0
    epochs: int = 50
    max_minutes: float | None = None
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    encoder_lr_scale: float = 1.0
    """The encoder's learning rate as a share of `learning_rate` (e.g. 0.3 for a pretrained encoder: its
    ImageNet features change more slowly than the new decoder learns, which curbs overfitting on small data)."""
    precision: str = "auto"
    """auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, bf16, fp16."""
    ema_decay: float = 0.0
    """Validate and publish an exponential moving average of the weights (e.g. 0.995; 0 = off): steadier on
    small data sets, where single-epoch weights swing from one validation to the next."""
    loss: str = "bce_dice"
    """bce_dice (default; Dice over the batch), bce_image_dice (Dice per lesion image, as the metric averages it),
    dice, jaccard, focal, weighted_ce (U-Net paper's boundary-weighted cross-entropy)."""
    hard_pixel_fraction: float = 0.0
    """Add to the loss, per image, the cross-entropy of its hardest pixels, this share of them (e.g. 0.01; 0 = off):
    a confident false region on a lesion-free image then costs as much as a missed lesion (OHEM-style)."""
    hard_pixel_images: str = "all"
    """Which images the hard-pixel term charges: all, or lesion_free (only images without lesion: false regions on
    normal images, not a lesion's uncertain border)."""
    hard_pixel_weight: float = 1.0
    """The hard-pixel term's weight beside the main loss (1: as added since it exists; below 1 a milder push)."""
    image_head_weight: float = 0.0
    """Train an image-class head (cases.json "cls", e.g. normal/benign/malignant) on the encoder's deepest features
    beside the segmenter, its cross-entropy at this weight added to the loss (0 = off). Training only: the
    published network is the plain segmenter (`image_head.py`)."""
    augment: list[str] = field(default_factory=lambda: ["flip", "affine", "intensity"])
    """flip, rot90, affine (rotation/scale/shift), intensity (gamma, contrast, noise), stain (per-channel colour
    jitter), hed (H&E stain amounts in optical density), speckle (multiplicative noise), resolution (blur by down-
    and up-sampling): the last two mimic other scanners."""
    hed_sigma: float = 0.05
    """How far `hed` moves each stain: its amount scaled by 1 ± σ and shifted by ± σ in optical density."""
    samples_per_epoch: int | None = None
    """Patches per epoch; default one per training image (set it for a few large images, e.g. histology tiles)."""
    positive_fraction: float = 0.6
    """Share of sampled patches that contain lesion ('tile' fit; for 'resize' fit, share of lesion images)."""
    hard_negative_mining: bool = False
    tag_weights: dict = field(default_factory=dict)
    """Draw lesion images carrying a cases.json tag this many times as often as the other lesion images, e.g.
    {SPIC: 3, D: 3}: an image takes the largest weight among its tags, 1 when none is named (lesion-free images are
    drawn as before: `positive_fraction` keeps the two pools' shares)."""
    val_fraction: float = 0.2
    val_every: int = 1
    early_stopping: int = 15
    """Stop when validation Dice has not improved for this many validations (not epochs; 0: never)."""
    keep_last: bool = False
    """Publish the last epoch's weights (the EMA's, if on) instead of the best-scoring ones: a fixed schedule whose
    figures come from cross-validation, where nothing may be chosen (not even by training loss)."""
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"
    threshold: float = 0.5
    tta: list[str] = field(default_factory=list)
    """Test-time flips the published model averages over (["hflip"]); validation uses them too."""
    training_data: str = ""
    licence: str = ""
    notes: str = ""
    output_dir: str | None = None
    """Where the model is published; default the per-user model directory."""
    checkpoint_dir: str | None = None
    """Where resumable checkpoints go; default <output_dir>/.checkpoints/<name>."""
    recipe: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse values the training would silently ignore (`augment: [flps]` trained with no augmentation)."""
        problems = [f"{k}: {getattr(self, k)!r} is not one of {', '.join(v)}"
                    for k, v in CHOICES.items() if getattr(self, k) not in v]
        for key, allowed in LIST_CHOICES.items():
            values = getattr(self, key)
            if isinstance(values, str) or not isinstance(values, (list, tuple)):
                problems.append(f"{key} must be a list (e.g. [{allowed[0]}])")
                continue
            problems += [f"{key}: {v!r} is not one of {', '.join(allowed)}" for v in values if v not in allowed]
        kind = self.normalisation.get("kind", "percentile") if isinstance(self.normalisation, dict) else None
        if kind not in NORMALISATIONS:
            problems.append(f"normalisation kind {kind!r} is not one of {', '.join(NORMALISATIONS)}")
        for key in POSITIVE:
            value = getattr(self, key)
            numbers = value if isinstance(value, (list, tuple)) else [value]
            if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                      for v in numbers):
                problems.append(f"{key} must be positive, not {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must lie in [0, 1), not {self.val_fraction!r}")
        if not (isinstance(self.hard_pixel_fraction, (int, float)) and not isinstance(self.hard_pixel_fraction, bool)
                and 0.0 <= self.hard_pixel_fraction <= 0.5):
            problems.append(f"hard_pixel_fraction must lie in [0, 0.5], not {self.hard_pixel_fraction!r}")
        if not (isinstance(self.hard_pixel_weight, (int, float)) and not isinstance(self.hard_pixel_weight, bool)
                and 0.0 < self.hard_pixel_weight <= 10.0):
            problems.append(f"hard_pixel_weight must lie in (0, 10], not {self.hard_pixel_weight!r}")
        if not (isinstance(self.image_head_weight, (int, float)) and not isinstance(self.image_head_weight, bool)
                and 0.0 <= self.image_head_weight <= 10.0):
            problems.append(f"image_head_weight must lie in [0, 10], not {self.image_head_weight!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must lie in [0, 1), not {self.ema_decay!r}")
        if not isinstance(self.tag_weights, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in self.tag_weights.values()):
            problems.append(f"tag_weights must map tags to positive weights (e.g. {{SPIC: 3}}), not "
                            f"{self.tag_weights!r}")
        if not 0.0 <= self.hed_sigma <= 0.5:
            problems.append(f"hed_sigma must lie in [0, 0.5], not {self.hed_sigma!r}")
        problems += source_problems(self)
        if problems:
            raise LesionSegError("Training options not understood: " + "; ".join(problems) + ".")

    def folder_pairs(self) -> list[dict]:
        """The image/mask folder pairs to train on: `sources`, or the one `images`/`masks` pair."""
        if self.sources:
            return [dict(s) for s in self.sources]
        return [{"images": self.images, "masks": self.masks, "cases_json": self.cases_json}]

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        path = Path(path)
        try:
            text = path.read_text()
            if path.suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except Exception as e:
            raise LesionSegError(f"Cannot read training config {path}: {e}") from e
        if not isinstance(d, dict):
            raise LesionSegError(f"Training config {path} must hold options as `key: value` lines "
                                 f"(e.g. `name: my-model`, `modality: ultrasound`), not a {type(d).__name__}.")
        d.update({k: v for k, v in overrides.items() if v is not None})
        d.setdefault("recipe", str(path))
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise LesionSegError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
        missing = [k for k, f in cls.__dataclass_fields__.items()
                   if k not in d and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise LesionSegError(f"The training config lacks {', '.join(missing)} (required; e.g. "
                                 "`name: my-model` and `modality: ultrasound`).")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
