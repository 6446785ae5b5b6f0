"""Publishing a trained model: weights then card, each written atomically, under a name no other model has.

The card is written last: the registry only lists a model once its card exists, so a half-published model is
never offered (MONAI Label's lesson: inference picks up only complete checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..io.atomic import atomic_path, write_text_atomic
from ..models.build import save_weights
from ..models.card import ModelCard
from ..models.registry import ModelRegistry, default_registry, user_models_dir
from ..names import check_model_name


def publish_model(net: torch.nn.Module, card: ModelCard, output_dir: str | Path | None = None,
                  registry: ModelRegistry | None = None) -> ModelCard:
    """Write `<name>.safetensors` and `<name>.json` into output_dir (default: per-user models) and announce it."""
    card.name = check_model_name(card.name)
    registry = registry or default_registry()
    out = Path(output_dir) if output_dir else user_models_dir()
    out.mkdir(parents=True, exist_ok=True)
    name = registry.unique_name(card.name)
    while (out / f"{name}.json").exists() or (out / f"{name}.safetensors").exists():
        name = registry.unique_name(name + "-new")
    card.name = name
    card.weights = f"{name}.safetensors"
    with atomic_path(out / card.weights) as tmp:  # the project's one atomic writer (core/io/atomic.py)
        save_weights(net, tmp, int8=card.weight_storage == "int8")
    write_text_atomic(out / f"{name}.json", card.to_json())
    card.path = out / f"{name}.json"
    registry.notify(name)
    return card
