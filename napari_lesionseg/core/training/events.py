"""Typed training events: what the `Trainer` reports, what crosses the pipe from the child process, what the dock
and the CLI show.

Each event is a dataclass with a `kind` (its name on the wire); `to_dict()` / `event_from_dict()` turn it into one
JSON line and back. Events also read like the dicts they replaced (`ev["epoch"]`, `ev.get("val_dice")`), so
scripts written against the old `{"kind": ...}` stream keep working. The job the dock hands to the child process is
a dataclass too (`TrainingJob`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np


def json_safe(value):
    """JSON-safe values (NaN/inf become null, numpy scalars plain numbers)."""
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    return value


@dataclass
class Event(Mapping):
    """Base of all events; `time` is the wall clock when it happened (the dock tells batches run after Cancel)."""

    kind: ClassVar[str] = ""
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    # Read-only dict view (the events were plain dicts before).
    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass
class Started(Event):
    """The child process is up and has its training set."""

    kind: ClassVar[str] = "started"
    pid: int = 0
    n_cases: int = 0


@dataclass
class Log(Event):
    """A line for the user (cases found, resumed, early stop…)."""

    kind: ClassVar[str] = "log"
    message: str = ""


@dataclass
class BatchDone(Event):
    kind: ClassVar[str] = "batch"
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float | None = None


@dataclass
class Validated(Event):
    """Validation of one epoch: `metrics` holds val_dice, val_dice_<label>, val_fp_rate_lesion_free, counts."""

    kind: ClassVar[str] = "validated"
    epoch: int = 0
    metrics: dict = field(default_factory=dict)


@dataclass
class EpochDone(Event):
    """The epoch's record as the history keeps it; `metrics` (validation) is flat on the wire."""

    kind: ClassVar[str] = "epoch"
    epoch: int = 0
    loss: float | None = None
    minutes: float = 0.0
    best: float | None = None
    metrics: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict) -> "EpochDone":
        own = ("epoch", "loss", "minutes", "best")
        return cls(**{k: record[k] for k in own if k in record},
                   metrics={k: v for k, v in record.items() if k not in own})

    def to_dict(self) -> dict:
        d = super().to_dict()
        return {**d.pop("metrics"), **d}

    @classmethod
    def from_dict(cls, d: dict) -> "EpochDone":
        event = cls.from_record({k: v for k, v in d.items() if k not in ("kind", "time")})
        if "time" in d:
            event.time = d["time"]
        return event


@dataclass
class StopRequested(Event):
    """Cancel was seen before batch `batch` of epoch `epoch`: the run validates and publishes what it has."""

    kind: ClassVar[str] = "cancelled"
    epoch: int = 0
    batch: int = 0
    batches: int = 0
    step: int = 0


@dataclass
class Published(Event):
    """The best model was written (weights, then card) and announced."""

    kind: ClassVar[str] = "published"
    name: str = ""
    card: str = ""


@dataclass
class Done(Event):
    """The run ended without error; `name` is None when nothing was learned (stopped before the first epoch)."""

    kind: ClassVar[str] = "done"
    name: str | None = None
    card: str | None = None
    metrics: dict = field(default_factory=dict)
    cancelled: bool = False
    best_score: float | None = None
    epochs: int = 0


@dataclass
class Failed(Event):
    """The run stopped on an error; `user_error` when it is a LesionSegError (bad input, shown as it is)."""

    kind: ClassVar[str] = "error"
    message: str = ""
    user_error: bool = False


@dataclass
class Exited(Event):
    """The child process has exited (always the last event)."""

    kind: ClassVar[str] = "exit"
    code: int | None = None


EVENT_TYPES: dict[str, type[Event]] = {t.kind: t for t in (Started, Log, BatchDone, Validated, EpochDone,
                                                            StopRequested, Published, Done, Failed, Exited)}


def event_from_dict(d: dict) -> Event | None:
    """The event a JSON line describes, or None for a kind this version does not know."""
    cls = EVENT_TYPES.get(d.get("kind"))
    return cls.from_dict(d) if cls is not None else None


def event_to_line(event: Event) -> str:
    return json.dumps(json_safe(event.to_dict()))


@dataclass
class CaseFile:
    """One viewer pair saved for the child process (.npy files in the job's temporary folder)."""

    name: str
    image: str
    mask: str
    group: str
    label: str = ""


@dataclass
class TrainingJob:
    """What the dock's child process is asked to do: the config, the viewer's pairs, where Cancel is signalled."""

    config: dict
    cancel_file: str
    cases: list[CaseFile] = field(default_factory=list)
    num_threads: int | None = None
    resume: bool = False
    nice: int = 0

    def write(self, path: Path) -> None:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cases"] = [vars(c) for c in self.cases]
        path.write_text(json.dumps(d))

    @classmethod
    def read(cls, path: Path) -> "TrainingJob":
        d = json.loads(Path(path).read_text())
        d["cases"] = [CaseFile(**c) for c in d.get("cases", [])]
        return cls(**d)
