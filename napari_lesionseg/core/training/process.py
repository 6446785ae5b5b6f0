"""Training in a child process, watched without blocking: what the dock (and anything else interactive) uses.

Measured here: training inside a napari thread_worker ran 15% slower and stalled the GUI event loop up to 365 ms
(the GIL); a child process avoids both. `TrainingProcess` writes the training set (.npy) and a job file to a
temporary folder, starts `python -m napari_lesionseg.core.training.worker job.json`, and a reader thread turns
the child's JSON lines into typed events (`events.py`) on a queue that `poll()` drains. Cancel writes a cancel file the child checks
before every batch. The child publishes the model; `poll()` then calls `registry.notify(name)` in the caller's
thread (the GUI thread for the dock), so every model dropdown refreshes.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from .config import TrainConfig
from .data import Case
from .events import CaseFile, Done, Event, Exited, Failed, TrainingJob, event_from_dict


class TrainingProcess:
    """One training run in a child process. Its events (`events.py`): Started, Log, BatchDone, Validated,
    EpochDone, StopRequested (epoch and batch at which Cancel was seen), Published, Done (name, card, metrics),
    Failed (message), and last Exited (exit code)."""

    def __init__(self, cfg: TrainConfig, cases: list[Case] | None = None, num_threads: int | None = None,
                 resume: bool = False, registry=None, python: str | None = None, nice: int = 0):
        self.cfg = cfg
        self.cases = list(cases or [])
        self.num_threads = num_threads
        self.resume = resume
        self.nice = nice
        self.registry = registry
        self.python = python or sys.executable
        self.events: queue.Queue = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.result: Done | None = None
        self.error: str | None = None
        self._reader: threading.Thread | None = None
        self._stderr = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> "TrainingProcess":
        if not self.cases and not (self.cfg.images and self.cfg.masks):
            raise LesionSegError("Nothing to train on: choose image/mask pairs or a folder of them.")
        self.workdir = Path(tempfile.mkdtemp(prefix="lesionseg-train-"))
        job = TrainingJob(config=self.cfg.to_dict(), cases=self._write_cases(self.workdir),
                          cancel_file=str(self.workdir / "CANCEL"), num_threads=self.num_threads,
                          resume=self.resume, nice=self.nice)
        job_path = self.workdir / "job.json"
        job.write(job_path)
        self._stderr = open(self.workdir / "stderr.log", "w+b")
        env = dict(os.environ)
        if self.num_threads:
            env.setdefault("OMP_NUM_THREADS", str(self.num_threads))
        self.proc = subprocess.Popen([self.python, "-m", "napari_lesionseg.core.training.worker", str(job_path)],
                                     stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                                     env=env)
        self._reader = threading.Thread(target=self._read, name="lesionseg-train-reader", daemon=True)
        self._reader.start()
        return self

    def _write_cases(self, folder: Path) -> list[CaseFile]:
        out = []
        for i, c in enumerate(self.cases):
            ip, mp = folder / f"case{i:04d}_image.npy", folder / f"case{i:04d}_mask.npy"
            np.save(ip, np.asarray(c.image))
            np.save(mp, np.asarray(c.mask))
            out.append(CaseFile(name=c.name, image=str(ip), mask=str(mp), group=c.group, label=c.label))
        return out

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("{"):
                continue
            try:
                event = event_from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, AttributeError):
                continue
            if event is not None:
                self.events.put(event)
        code = self.proc.wait()
        self.events.put(Exited(code=code))

    def cancel(self) -> None:
        """Ask the child to stop after its current batch; it still validates and publishes the best model so far."""
        if self.workdir is not None and self.running:
            (self.workdir / "CANCEL").touch()

    def kill(self) -> None:
        """Hard stop (no model is published; the last epoch's checkpoint stays for a resume)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._cleanup()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def finished(self) -> bool:
        """The child has exited and all its events have been read by `poll()`."""
        return self._exited

    _exited = False
    _log = ""

    def stderr_tail(self, n: int = 2000) -> str:
        """The child's stderr (warnings, a traceback after a crash), also after the temporary folder is gone."""
        if self._stderr is None:
            return self._log[-n:]
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-n:]

    # -- events ------------------------------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """Events since the last call (never blocks). On `done` the registry is told about the new model, in the
        calling thread — call this from the GUI thread."""
        out = []
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(ev, Done):
                self.result = ev
                if ev.name:
                    from ..models.registry import default_registry

                    (self.registry or default_registry()).notify(ev.name)
            elif isinstance(ev, Failed):
                self.error = ev.message
            elif isinstance(ev, Exited):
                self._exited = True
                if ev.code and self.error is None and self.result is None:
                    tail = self.stderr_tail().strip().splitlines()
                    self.error = f"Training stopped unexpectedly (exit code {ev.code})" + (
                        f": {tail[-1]}" if tail else ".")
                    out.append(Failed(message=self.error))
                self._cleanup()
            out.append(ev)
        return out

    def wait(self, timeout: float | None = None) -> list[Event]:
        """Block until the child exits (for scripts and tests); returns every event."""
        events = []
        if self.proc is not None:
            self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        while not self._exited:
            got = self.poll()
            events += got
            if not got:
                break
        return events

    def _cleanup(self) -> None:
        if self._stderr is not None:
            log = self.stderr_tail(20000)
            self._stderr.close()
            self._stderr = None
            self._log = log
        if self.workdir is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __del__(self):  # a dock closed mid-run must not leave a training process behind
        try:
            self.kill()
        except Exception:  # noqa: BLE001
            pass
