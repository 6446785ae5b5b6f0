"""Publishing a trained model: weights then card, each written atomically, under a name no other model has.

The card is written last: the registry only lists a model once its card exists, so a half-published model is
never offered (MONAI Label's lesson: inference picks up only complete checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io.atomic import atomic_path
from ..models.build import save_weights
from ..models.card import ModelCard
from ..models.registry import ModelRegistry, default_registry, user_models_dir
from ..names import check_model_name


def _atomic_write_bytes(path: Path, writer) -> None:
    """`writer(tmp_path)` fills a temporary file that then replaces `path` (the project's one atomic writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        writer(tmp)


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
    _atomic_write_bytes(out / card.weights, lambda p: save_weights(net, p, int8=card.weight_storage == "int8"))
    _atomic_write_bytes(out / f"{name}.json", lambda p: p.write_text(card.to_json()))
    card.path = out / f"{name}.json"
    registry.notify(name)
    return card


def write_json_atomic(path: Path, data: dict) -> None:
    _atomic_write_bytes(path, lambda p: p.write_text(json.dumps(data, indent=2)))
