"""Validation during training: Dice per case at the case's own resolution, with the inference engine users get."""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import dice
from ..models.card import ModelCard
from .data import Case


def evaluate(net: torch.nn.Module, card: ModelCard, cases: list[Case], device: torch.device,
             threshold: float | None = None, cache: dict | None = None) -> dict:
    """Dice per lesion case at the case's own resolution (as a user would see it) and false positives on
    lesion-free cases, using the same engine as inference. `cache` keeps prepared inputs between epochs."""
    from ..inference.engine import Predictor
    from ..preprocess import to_model_input

    if not cases:
        return {}
    was_training = net.training
    pred = Predictor(card, device=device, net=net, batch_size=8)
    t = card.threshold if threshold is None else threshold
    dices, by_label, fp_cases, n_neg = [], {}, 0, 0
    cache = {} if cache is None else cache
    for c in cases:
        if c.mask.ndim == 3:  # a volume (an RGB image has a 2D mask)
            probs = pred.predict_volume(c.image)
        elif card.fit == "breast":
            from ..breast import breast_input

            if c.name not in cache:  # breast found and normalised once, not every epoch
                cache[c.name] = breast_input(c.image, card)
            x, frame = cache[c.name]
            probs = frame.to_original(pred.forward(x[None])[0])
            probs = probs[0] if not card.multiclass else probs
        elif card.fit == "resize":
            if c.name not in cache:  # CLAHE/normalisation once, not every epoch
                cache[c.name] = to_model_input(c.image, card)[None]
            probs = pred._resize_predict(cache[c.name])[0]
            probs = probs[0] if not card.multiclass else probs
        else:
            probs = pred.predict_image(c.image)
        seg = probs.argmax(0) if card.multiclass else (probs >= t)
        truth = c.mask
        if truth.any():
            d = dice(seg > 0, truth > 0)
            dices.append(d)
            by_label.setdefault(c.label or "all", []).append(d)
        else:
            n_neg += 1
            fp_cases += int((seg > 0).any())
    net.train(was_training)
    out = {"val_dice": float(np.mean(dices)) if dices else float("nan"), "n_val_lesion": len(dices)}
    for k, v in by_label.items():
        out[f"val_dice_{k}"] = float(np.mean(v))
    if n_neg:
        out["val_fp_rate_lesion_free"] = fp_cases / n_neg
        out["n_val_lesion_free"] = n_neg
    return out
