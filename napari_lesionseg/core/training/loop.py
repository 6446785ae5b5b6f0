"""`train()`: the one entry point the CLI, the dock (in a child process) and torchrun share.

Balanced sampling, augmentation, validation by case each epoch with early stopping, the best checkpoint kept,
resumable checkpoints after a crash, Cancel honoured after the current batch, and an atomic publish at the end.
The run itself is `trainer.Trainer` (small steps with hooks); this module keeps the names callers import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .config import TrainConfig
from .data import Case
from .events import Event
from .hooks import ProgressHooks, TrainerHooks
from .trainer import PALETTE, Trainer, TrainResult, _update_ema, card_for
from .validation import evaluate

__all__ = ["PALETTE", "TrainResult", "Trainer", "TrainerHooks", "_update_ema", "card_for", "evaluate", "train"]


def train(cfg: TrainConfig, progress: Callable[[Event], None] | None = None,
          cancelled: Callable[[], bool] | None = None, cases: list[Case] | None = None,
          resume: bool = True, publish: bool = True, hooks: Sequence[TrainerHooks] = ()) -> TrainResult:
    """Train or fine-tune a model as `cfg` says; returns the published card (None if nothing was learned).
    `progress` receives every event (typed, `events.py`); `hooks` are called at each step of the run."""
    all_hooks = ([ProgressHooks(progress)] if progress is not None else []) + list(hooks)
    return Trainer(cfg, hooks=all_hooks, cancelled=cancelled, cases=cases, resume=resume, publish=publish).run()
