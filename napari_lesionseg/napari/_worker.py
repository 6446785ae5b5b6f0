"""The one way a dock runs work off the GUI thread: `DockJobs(dock, ...).start(fn, ..., done=...)`; `fn` reports
progress and checks for a cancel through `DockJobs.context` (the core's `progress` / `cancelled` callbacks).

- The work runs in a napari `create_worker` thread, so it is listed in napari's status-bar task list, whose Cancel
  asks the worker to quit; its progress shows in napari's activity dialog as a `cancelable_progress` (with its own
  Cancel) and in the dock's progress bar. The dock's Cancel button, napari's two cancels and closing the dock or
  the viewer all set one `threading.Event`, which the work polls through `JobContext.cancelled()` (the core's
  `cancelled` callbacks) and ends with `core.errors.Cancelled`.
- Errors come back as values, never raised on the GUI thread: napari's own notifier would show each one a second
  time with a traceback. A LesionSegError is shown once, as its message; anything else as one line.
- `done(result)` runs on the GUI thread. Closing the window, quitting, or taking the dock out of its window
  cancels the running job and waits for its thread (at most JOIN_TIMEOUT_S): a worker left inside torch while
  napari tears its window down ended the process with a segfault.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from qtpy.QtCore import QEvent, QObject, Signal

JOIN_TIMEOUT_S = 20.0
"""How long closing napari waits for a cancelled job to stop (the core checks for a cancel every batch)."""


@dataclass
class _Outcome:
    """What the worker thread hands back: a value, or the error it raised (Cancelled included)."""

    value: Any = None
    error: BaseException | None = None


class _Signals(QObject):
    """Carries progress and notices from the worker thread to the GUI thread (queued)."""

    progress = Signal(int, int)
    notice = Signal(str)


class JobContext:
    """What a job's function gets (all safe to call from the worker thread)."""

    def __init__(self, jobs: "DockJobs"):
        self._jobs = jobs

    def progress(self, done: int, total: int) -> None:
        """The core's `progress(done, total)` callback."""
        self._jobs._signals.progress.emit(int(done), int(total))

    def cancelled(self) -> bool:
        """The core's `cancelled()` callback: any of the cancels was pressed, or the dock is closing."""
        return self._jobs.cancelled()

    def notice(self, message: str) -> None:
        """Say something to the user (a napari warning) from the worker."""
        self._jobs._signals.notice.emit(str(message))


class _CloseGuard(QObject):
    """Cancels the running job and waits for it when the window closes, the app quits or the dock goes away.

    A worker thread left inside torch while napari tears its window down was reported to end in a segfault (rc 139);
    without a cancel it kept the process alive until the whole run had finished (100 s after closing, on a Duke
    volume). Holds only the job's two events (never the dock), so it is safe to call while the dock is destroyed."""

    def __init__(self, cancel: threading.Event, idle: threading.Event):
        super().__init__()
        self.cancel, self.idle = cancel, idle
        self.closing = False

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:
            self.stop()
        elif event.type() == QEvent.ParentChange and not self.idle.is_set() and obj.parent() is None:
            self.stop()  # the dock was taken out of its window (its close button, `remove_dock_widget`)
        return False

    def stop(self, *_) -> bool:
        """Cancel the running job (if any) and wait for its thread to finish; True when it finished."""
        self.closing = True
        if self.idle.is_set():
            return True
        self.cancel.set()
        return self.idle.wait(JOIN_TIMEOUT_S)


class DockJobs:
    """Runs one dock's background jobs, one at a time, with progress, cancel, errors and close handled alike.

    progress_bar / cancel_button / start_buttons / status: the dock's own widgets (any may be None); the buttons
    are disabled / enabled while a job runs, the status label gets the error line. hide_progress: the progress bar
    shows only while a job runs. on_progress(done, total): also told of progress (GUI thread). failure_prefix:
    how an unexpected (non-LesionSegError) error starts, e.g. "Segmentation failed"."""

    def __init__(self, dock, *, progress_bar=None, cancel_button=None, start_buttons=(), status=None,
                 hide_progress: bool = False, on_progress: Callable | None = None,
                 failure_prefix: str = "Unexpected error"):
        self.dock = dock
        self.on_progress = on_progress
        self.failure_prefix = failure_prefix
        self.progress_bar, self.cancel_button, self.status = progress_bar, cancel_button, status
        self.start_buttons = tuple(start_buttons)
        self.hide_progress = hide_progress
        self.cancel_event = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.worker = None
        self.pbar = None
        self._outcome_of_worker: _Outcome | None = None
        self.context = JobContext(self)
        """progress / cancelled / notice callbacks for the running job's function (thread-safe)."""
        self._guard = _CloseGuard(self.cancel_event, self.idle)
        self._window = None
        self._signals = _Signals()
        self._signals.progress.connect(self._on_progress)
        from napari.utils.notifications import show_warning

        self._signals.notice.connect(show_warning)
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(self.cancel)
        dock.installEventFilter(self._guard)
        dock.destroyed.connect(self._guard.stop)
        from qtpy.QtWidgets import QApplication

        QApplication.instance().aboutToQuit.connect(self._guard.stop)

    @property
    def closing(self) -> bool:
        return self._guard.closing

    def running(self) -> bool:
        return self.worker is not None

    def cancelled(self) -> bool:
        worker, pbar = self.worker, self.pbar
        return (self.cancel_event.is_set() or bool(worker is not None and worker.abort_requested)
                or bool(pbar is not None and pbar.is_canceled))

    def notice(self, message: str) -> None:
        """Show a warning; safe from any thread (e.g. the Predictor's out-of-memory notices)."""
        self._signals.notice.emit(str(message))

    def cancel(self) -> None:
        """The dock's Cancel button (napari's cancels are read by `cancelled`)."""
        if self.worker is not None:
            self.cancel_event.set()
            self.say("Cancelling…")

    def say(self, text: str) -> None:
        """Put a line in the dock's status label (a Qt QLabel or a magicgui Label)."""
        if self.status is None:
            return
        if hasattr(self.status, "setText"):
            self.status.setText(text)
        else:
            self.status.value = text

    def stop(self) -> bool:
        """Cancel a running job and wait for its thread to end (at most JOIN_TIMEOUT_S); True when it ended."""
        return self._guard.stop()

    def start(self, fn: Callable, *args, desc: str, done: Callable, failed: Callable | None = None,
              cancelled: Callable | None = None, finished: Callable | None = None, **kwargs):
        """Run `fn(*args, **kwargs)` in a worker; returns the napari worker (None if one is running).

        done(result) on success; failed(error) after the error was shown (optional); cancelled() after a cancel
        (default: an info message); finished() in every case, unless the dock is closing. They run once the job is
        over (`running()` False), so `done` may start the next job."""
        from napari.qt.threading import create_worker
        from napari.utils.progress import cancelable_progress

        if self.worker is not None:
            return None

        run = _Run(desc, lambda: fn(*args, **kwargs), self.idle)

        self._watch_window()
        self._guard.closing = False
        self.cancel_event.clear()
        self.idle.clear()
        self._busy(True)
        self.pbar = cancelable_progress(total=0, desc=desc)  # napari's activity dialog, with a Cancel button
        self._outcome_of_worker = None
        worker = create_worker(run, _start_thread=False)
        worker.returned.connect(self._keep_outcome)  # not emitted when napari's status-bar Cancel quit the worker
        worker.finished.connect(lambda: self._finished(done, failed, cancelled, finished))
        self.worker = worker
        worker.start()
        return worker

    # -- GUI thread ------------------------------------------------------------------------------------------
    def _busy(self, busy: bool) -> None:
        for button in self.start_buttons:
            button.setEnabled(not busy)
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(busy)
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, 0 if busy else 1)
            if self.hide_progress:
                self.progress_bar.setVisible(busy)

    def _on_progress(self, done: int, total: int) -> None:
        if self.closing:
            return
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
        if self.pbar is not None:
            if self.pbar.total != total:
                self.pbar.total = total
            self.pbar.update(done - self.pbar.n)
        if self.on_progress is not None:
            self.on_progress(done, total)

    def _keep_outcome(self, outcome: _Outcome) -> None:
        self._outcome_of_worker = outcome

    def _finished(self, done, failed, cancelled, finished) -> None:
        from ..core.errors import Cancelled

        self._unwatch_window()
        self.worker = None
        if self.pbar is not None:
            try:
                self.pbar.close()
            except RuntimeError:  # the activity dialog went with the window
                pass
            self.pbar = None
        if self.closing:  # the window (and the dock's widgets) may be gone
            return
        self._busy(False)
        outcome = self._outcome_of_worker or _Outcome(error=Cancelled())
        self._outcome_of_worker = None
        if outcome.error is None:
            done(outcome.value)
        elif isinstance(outcome.error, Cancelled):
            if cancelled is not None:
                cancelled()
            else:
                from napari.utils.notifications import show_info

                self.say("Cancelled.")
                show_info("Cancelled.")
        else:
            show_job_error(outcome.error, self.say, self.failure_prefix)
            if failed is not None:
                failed(outcome.error)
        if finished is not None:
            finished()

    def _watch_window(self) -> None:
        """While a job runs, closing the main window cancels it and waits for it."""
        window = self.dock.window()
        if window is not self.dock:
            window.installEventFilter(self._guard)
            self._window = window

    def _unwatch_window(self) -> None:
        if self._window is not None:
            try:
                self._window.removeEventFilter(self._guard)  # left installed, it keeps the viewer alive
            except RuntimeError:  # the window is already gone
                pass
            self._window = None


class _Run:
    """The worker's function: returns an `_Outcome` (never raises) and sets `idle` when done. Its repr is the job's
    description, which napari's status-bar task list shows."""

    def __init__(self, desc: str, call: Callable, idle: threading.Event):
        self.desc, self.call, self.idle = desc, call, idle

    def __repr__(self) -> str:
        return self.desc

    def __call__(self) -> _Outcome:
        try:
            return _Outcome(value=self.call())
        except Exception as e:  # noqa: BLE001 - shown once by DockJobs._outcome, on the GUI thread
            return _Outcome(error=e)
        finally:
            self.idle.set()


def show_job_error(error: BaseException, say=None, prefix: str = "Unexpected error") -> str:
    """One notification for a failed job: a LesionSegError's message as it is, anything else in one line."""
    from napari.utils.notifications import show_error

    from ..core.errors import LesionSegError

    text = str(error) if isinstance(error, LesionSegError) else f"{prefix}: {type(error).__name__}: {error}"
    if say is not None:
        say(text)
    show_error(text)
    return text
