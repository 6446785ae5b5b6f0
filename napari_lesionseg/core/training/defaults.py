"""What a model trained from scratch looks like for each modality, when no recipe file says otherwise.

One table for both front ends: `lesionseg train --modality histology` without a --config and the Fine-tune dock's
"(train from scratch)" build the same model (3-channel RGB input, tiles, stain jitter, H&E stain amounts).
Fine-tuning keeps the base model's own settings, and a --config recipe is complete as written (the shipped ones in models/ spell everything
out), so neither takes these.
"""

from __future__ import annotations

import copy

from ..errors import LesionSegError
from ..models.card import MODALITIES

_COMMON = dict(patch_size=[256, 256], augment=["flip", "affine", "intensity"])
MODALITY_DEFAULTS: dict[str, dict] = {
    "ultrasound": dict(_COMMON, input_kind="gray", fit="resize", preprocessing=["clahe"]),
    "mammography": dict(_COMMON, input_kind="gray", fit="resize"),
    "histology": dict(_COMMON, input_kind="rgb", fit="tile", normalisation={"kind": "range", "max": 255},
                      augment=_COMMON["augment"] + ["stain", "hed"]),
    "mri": dict(_COMMON, input_kind="slices", context_slices=1, fit="tile", normalisation={"kind": "zscore"}),
}


def defaults_for(modality: str) -> dict:
    """TrainConfig options of a from-scratch model of `modality` (a fresh copy: callers may change it)."""
    if modality not in MODALITY_DEFAULTS:
        allowed = ", ".join(m for m in MODALITIES if m in MODALITY_DEFAULTS)
        raise LesionSegError(f"Training options not understood: modality {modality!r} is not one of {allowed}.")
    return copy.deepcopy(MODALITY_DEFAULTS[modality])


def with_modality_defaults(options: dict) -> dict:
    """`options` over the modality's from-scratch defaults; unchanged when fine-tuning (`base` given)."""
    if options.get("base"):
        return dict(options)
    return {**defaults_for(options.get("modality", "")), **options}
