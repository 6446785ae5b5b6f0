"""Ensembles: trained networks of one architecture combined into one model that averages their probabilities.

Two U-Nets trained with different recipes make different mistakes; on BUSI validation their average gained about
0.013 Dice over either alone for every pair tried (README). The result is an ordinary model: one card
(`members: N`) and one safetensors file (`members.0.…`, `members.1.…`), int8 by default so that two networks fit
in the space one fp16 network took. Inference, evaluation and fine-tuning see a single network (`build.Ensemble`).
"""

from __future__ import annotations

import copy
import datetime as _dt

from ..errors import LesionSegError
from .build import Ensemble, load_model, round_to_int8
from .card import ModelCard

MUST_MATCH = ("modality", "architecture", "encoder", "decoder_channels", "in_channels", "input_kind", "classes",
              "normalisation", "preprocessing", "patch_size", "spacing_mm", "fit", "tta")
"""Card fields every member must share: one input, one output, one way to run."""


def combine(cards: list[ModelCard], name: str, weight_storage: str = "int8") -> tuple[Ensemble, ModelCard]:
    """The members' networks as one `Ensemble` (already rounded as its storage will round it), and its card
    (metrics left to the caller: only a measurement of the ensemble itself may go there)."""
    if len(cards) < 2:
        raise LesionSegError("An ensemble needs at least two models.")
    if weight_storage not in ("fp16", "int8"):
        raise LesionSegError(f"Unknown weight storage {weight_storage!r}; use fp16 or int8.")
    first = cards[0]
    for c in cards[1:]:
        differ = [f for f in MUST_MATCH if getattr(c, f) != getattr(first, f)]
        if differ:
            raise LesionSegError(f"Models {first.name} and {c.name} differ in {', '.join(differ)}; "
                                 "an ensemble's members need one architecture and one input.")
    members = []
    for c in cards:
        net = load_model(c).net
        members.extend(getattr(net, "members", [net]))
    card = copy.deepcopy(first)
    card.name, card.path, card.weights = name, None, ""
    card.members, card.weight_storage = len(members), weight_storage
    card.parent = None
    card.notes = f"Ensemble of {', '.join(c.name for c in cards)}: their probabilities are averaged."
    card.metrics = {"member_val_dice": [c.metrics.get("val_dice") for c in cards]}
    card.recipe = " + ".join(c.recipe or c.name for c in cards) + ", combined by `lesionseg ensemble`"
    card.date = _dt.date.today().isoformat()
    net = Ensemble(members, card.multiclass)
    if weight_storage == "int8":
        round_to_int8(net)
    return net, card


PROMPT_MUST_MATCH = ("in_channels", "channels", "prompt_channels", "frame_size", "normalisation", "tta", "prompts")
"""Fields every member of a prompt ensemble must share (one input frame, one way to run)."""


def combine_prompt(card_paths: list, name: str) -> tuple[Ensemble, dict]:
    """Prompt networks (card paths) as one prompt card with `members: N`: (the `Ensemble`, its card dict, weights
    kept as stored, fp16). The first member's card is the base; metrics are left to the caller."""
    from pathlib import Path

    from ..annotations.line_model import load_line_model

    if len(card_paths) < 2:
        raise LesionSegError("An ensemble needs at least two prompt networks.")
    loaded = [load_line_model(Path(p).stem, str(Path(p).parent)) for p in card_paths]
    raws = [raw for _, raw in loaded]
    for p, raw in zip(card_paths[1:], raws[1:]):
        differ = [f for f in PROMPT_MUST_MATCH if raw.get(f) != raws[0].get(f)]
        if differ:
            raise LesionSegError(f"Prompt networks {card_paths[0]} and {p} differ in {', '.join(differ)}; "
                                 "an ensemble's members need one architecture and one input.")
    members = [copy.deepcopy(m) for net, _ in loaded for m in getattr(net, "members", [net])]
    card = dict(raws[0], name=name, weights=f"{name}.safetensors", members=len(members), weight_storage="fp16",
                metrics={}, date=_dt.date.today().isoformat(),
                recipe=" + ".join(r.get("recipe", r["name"]) for r in raws) + ", probabilities averaged "
                       "(scripts/combine_prompt_networks.py)",
                member_seeds=[r.get("seed") for r in raws])
    for k in ("train_seconds", "epochs", "steps", "seed"):
        card.pop(k, None)
    return Ensemble(members).eval(), card
