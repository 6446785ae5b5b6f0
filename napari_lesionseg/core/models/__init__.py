"""Model cards, the registry of shipped and fine-tuned models, and building networks from a card."""

from .card import ModelCard
from .registry import ModelRegistry, default_registry
from .build import build_network, load_model, LoadedModel

__all__ = ["ModelCard", "ModelRegistry", "default_registry", "build_network", "load_model", "LoadedModel"]
