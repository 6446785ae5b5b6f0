"""Child-process entry point of `TrainingProcess`: `python -m napari_lesionseg.core.training.worker job.json`.

Training in its own process keeps the viewer's event loop free (in a napari thread it ran 15% slower and stalled
the GUI up to 365 ms). Progress goes to stdout as one JSON line per typed event (`events.py`); everything else
libraries print is sent to stderr so it cannot corrupt that stream. Cancel = the job's cancel file appears (or
SIGTERM): the loop checks before each batch, finishes the epoch's validation, and the best model so far is still
published.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from .events import Done, Event, Failed, Log, Started, TrainingJob, event_to_line


def load_cases(job: TrainingJob):
    """The viewer's pairs the parent saved as .npy files."""
    from .data import Case

    return [Case(name=c.name, image=np.load(c.image), mask=np.load(c.mask), group=c.group, label=c.label)
            for c in job.cases]


class _Pipe:
    """Events to the parent, one JSON line each; a closed pipe (the viewer went away) counts as Cancel."""

    def __init__(self, cancel_file: Path):
        self.out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        sys.stdout = sys.stderr  # stray prints from libraries must not break the JSON-lines stream
        self.cancel_file = cancel_file
        self.terminated = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "terminated", True))

    def send(self, event: Event) -> None:
        try:
            self.out.write(event_to_line(event) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):  # stop as if cancelled, keep the best model
            self.terminated = True

    def cancelled(self) -> bool:
        return self.terminated or self.cancel_file.exists()


def _run(job: TrainingJob, pipe: _Pipe):
    import torch

    if job.num_threads:
        torch.set_num_threads(int(job.num_threads))
    from .config import TrainConfig
    from .loop import train

    cfg = TrainConfig.from_dict(job.config)
    cases = load_cases(job)
    if cases and ((cfg.images and cfg.masks) or cfg.sources):  # viewer pairs plus the recipe's folders
        from .data import load_sources

        cases += load_sources(cfg, report=lambda message: pipe.send(Log(message=message)))
    pipe.send(Started(pid=os.getpid(), n_cases=len(cases)))
    return train(cfg, progress=pipe.send, cancelled=pipe.cancelled, cases=cases or None, resume=job.resume)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = TrainingJob.read(Path(argv[0]))
    pipe = _Pipe(Path(job.cancel_file))
    if job.nice and hasattr(os, "nice"):
        os.nice(int(job.nice))  # the viewer wins any fight for the CPU
    try:
        result = _run(job, pipe)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which shows it to the user
        from ..errors import LesionSegError

        user_error = isinstance(e, LesionSegError)
        pipe.send(Failed(message=str(e) if user_error else f"{type(e).__name__}: {e}", user_error=user_error))
        if not user_error:
            import traceback

            traceback.print_exc()
        return 2
    card = result.card
    pipe.send(Done(name=card.name if card else None, card=str(card.path) if card else None,
                   metrics=card.metrics if card else {}, cancelled=result.cancelled, best_score=result.best_score,
                   epochs=len(result.history)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
