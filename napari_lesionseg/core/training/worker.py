"""Child-process entry point of `TrainingProcess`: `python -m napari_lesionseg.core.training.worker job.json`.

Training in its own process keeps the viewer's event loop free (in a napari thread it ran 15% slower and stalled
the GUI up to 365 ms). Progress goes to stdout as one JSON object per line; everything else libraries print is
sent to stderr so it cannot corrupt that stream. Cancel = the job's cancel file appears (or SIGTERM): the loop
checks before each batch, finishes the epoch's validation, and the best model so far is still published.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np


def _clean(v):
    """JSON-safe values (NaN/inf become null)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def load_cases(job: dict):
    from .data import Case

    cases = []
    for c in job.get("cases", []):
        cases.append(Case(name=c["name"], image=np.load(c["image"]), mask=np.load(c["mask"]),
                          group=c.get("group", c["name"]), label=c.get("label", "")))
    return cases


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text())
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # stray prints from libraries must not break the JSON-lines stream

    cancel_file = Path(job["cancel_file"])
    terminated = {"flag": False}

    def send(ev: dict) -> None:
        ev = {**ev, "time": time.time()}  # wall clock: the parent can tell which batches ran after Cancel
        try:
            out.write(json.dumps(_clean(ev)) + "\n")
            out.flush()
        except (BrokenPipeError, ValueError):  # the viewer went away: stop as if cancelled, keep the best model
            terminated["flag"] = True
    signal.signal(signal.SIGTERM, lambda *_: terminated.__setitem__("flag", True))

    def cancelled() -> bool:
        return terminated["flag"] or cancel_file.exists()

    if job.get("nice") and hasattr(os, "nice"):
        os.nice(int(job["nice"]))  # the viewer wins any fight for the CPU
    try:
        import torch

        if job.get("num_threads"):
            torch.set_num_threads(int(job["num_threads"]))
        from .config import TrainConfig
        from .loop import train

        cfg = TrainConfig.from_dict(job["config"])
        cases = load_cases(job)
        if cases and cfg.images and cfg.masks:  # viewer pairs plus a folder of pairs
            from .data import load_folder

            cases += load_folder(cfg.images, cfg.masks, cfg.cases_json,
                                 report=lambda message: send({"kind": "log", "message": message}))
        send({"kind": "started", "pid": os.getpid(), "n_cases": len(cases)})
        result = train(cfg, progress=send, cancelled=cancelled, cases=cases or None,
                       resume=bool(job.get("resume", False)))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which shows it to the user
        from ..errors import LesionSegError

        msg = str(e) if isinstance(e, LesionSegError) else f"{type(e).__name__}: {e}"
        send({"kind": "error", "message": msg, "user_error": isinstance(e, LesionSegError)})
        if not isinstance(e, LesionSegError):
            import traceback

            traceback.print_exc()
        return 2
    card = result.card
    send({"kind": "done", "name": card.name if card else None, "card": str(card.path) if card else None,
          "metrics": card.metrics if card else {}, "cancelled": result.cancelled, "best_score": result.best_score,
          "epochs": len(result.history)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
