"""Hooks of a training run (Lightning/MONAI-Label style): override the steps you want to watch.

The `Trainer` calls each hook with itself and a typed event (`events.py`) on rank 0; `ProgressHooks` forwards every
event to one callback (`train(progress=...)`, the dock's pipe), the CLI's `ConsolePrinter` prints some of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .events import BatchDone, EpochDone, Event, Log, Published, StopRequested, Validated

if TYPE_CHECKING:
    from .trainer import Trainer, TrainResult


class TrainerHooks:
    """Override the steps you want to watch; each receives the trainer and a typed event. All are no-ops here."""

    def on_log(self, trainer: "Trainer", event: Log) -> None: ...

    def on_batch_end(self, trainer: "Trainer", event: BatchDone) -> None: ...

    def on_stop_requested(self, trainer: "Trainer", event: StopRequested) -> None: ...

    def on_validation(self, trainer: "Trainer", event: Validated) -> None: ...

    def on_best(self, trainer: "Trainer", record: dict) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", event: EpochDone) -> None: ...

    def on_publish(self, trainer: "Trainer", event: Published) -> None: ...

    def on_finish(self, trainer: "Trainer", result: TrainResult) -> None: ...


class ProgressHooks(TrainerHooks):
    """Every event to one callback: `train(progress=...)`, the child process's pipe."""

    def __init__(self, progress: Callable[[Event], None]):
        self.progress = progress

    def _forward(self, trainer, event: Event) -> None:
        self.progress(event)

    on_log = on_batch_end = on_stop_requested = on_validation = on_epoch_end = on_publish = _forward
