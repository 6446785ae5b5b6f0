"""One list of models for the dock's dropdown and `lesionseg models`.

Shipped models come from the package data (`napari_lesionseg.resources`: the repository's `models/` folder) or
$LESIONSEG_MODELS_DIR; models made by fine-tuning live in the per-user data directory. A fine-tuned model never
overwrites another: names are unique. Listeners registered with `on_change` are called when a model is published,
so every dropdown refreshes itself.
Prompt networks (card kind 'prompt', in `models/line_prompt/`) are listed with `cards(kind=None)` or
`cards(kind="prompt")`; by default only whole-image models are, so no whole-image dropdown offers them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import platformdirs

from ... import resources
from ..errors import LesionSegError
from .card import ModelCard

APP_NAME = "napari-lesionseg"
PROMPT_SUBDIR = "line_prompt"
"""Sub-folder of a models folder holding prompt networks (kind 'prompt')."""


def shipped_models_dir() -> Path:
    env = os.environ.get("LESIONSEG_MODELS_DIR")
    if env:
        return Path(env)
    return resources.shipped_models_dir()


def user_models_dir() -> Path:
    env = os.environ.get("LESIONSEG_USER_MODELS_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def user_prompt_dir() -> Path:
    """The user's fine-tuned prompt networks (kind 'prompt'): `line_prompt/` in the user's models folder."""
    return user_models_dir() / PROMPT_SUBDIR


class ModelRegistry:
    def __init__(self, dirs: list[Path] | None = None):
        self._dirs = dirs
        self._listeners: list[Callable[[str | None], None]] = []

    @property
    def dirs(self) -> list[Path]:
        if self._dirs is not None:
            return list(self._dirs)
        return [shipped_models_dir(), user_models_dir()]

    def cards(self, kind: str | None = "segmentation") -> list[ModelCard]:
        """Readable cards of `kind` (None: every kind), shipped first; a card without its weights is left out."""
        seen: dict[str, ModelCard] = {}
        for d in self.dirs:
            if not d.is_dir():
                continue
            for p in sorted(d.glob("*.json")) + sorted(d.glob(f"{PROMPT_SUBDIR}/*.json")):
                if p.name.startswith("."):  # a card being written (io/atomic.py's temporary file)
                    continue
                try:
                    card = ModelCard.read(p)
                except LesionSegError:
                    continue
                wp = card.weights_path
                if wp is None or not wp.exists() or (kind is not None and card.kind != kind):
                    continue
                seen.setdefault(card.name, card)
        return list(seen.values())

    def names(self, modality: str | None = None, kind: str | None = "segmentation") -> list[str]:
        return [c.name for c in self.cards(kind) if modality is None or c.modality == modality]

    def get(self, name_or_path: str | Path, kind: str | None = "segmentation") -> ModelCard:
        p = Path(name_or_path)
        if p.suffix == ".json" and p.exists():
            return ModelCard.read(p)
        if p.suffix == ".safetensors" and p.exists() and p.with_suffix(".json").exists():
            return ModelCard.read(p.with_suffix(".json"))
        for c in self.cards(kind):
            if c.name == str(name_or_path):
                return c
        known = ", ".join(self.names(kind=kind)) or "none"
        raise LesionSegError(f"No model named {name_or_path!r}. Known models: {known}.")

    def unique_name(self, wanted: str) -> str:
        names = set(self.names(kind=None))
        if wanted not in names:
            return wanted
        i = 2
        while f"{wanted}-{i}" in names:
            i += 1
        return f"{wanted}-{i}"

    def on_change(self, callback: Callable[[str | None], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify(self, new_name: str | None = None) -> None:
        for cb in list(self._listeners):
            try:
                cb(new_name)
            except RuntimeError:  # a deleted Qt widget
                self.remove_listener(cb)


_default = ModelRegistry()


def default_registry() -> ModelRegistry:
    return _default
