"""The docks' one worker helper (`napari/_worker.DockJobs`): progress in napari's activity display, the three cancels
(the dock's button, the activity dialog's, the status bar's), errors shown once as their message, results on the GUI
thread, and a `done` that may start the next job (the PACS dock lists series right after studies)."""

from __future__ import annotations

import threading
import time

import pytest
from napari.utils.progress import progress
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from napari_lesionseg.core.errors import Cancelled, LesionSegError
from napari_lesionseg.napari._worker import DockJobs


@pytest.fixture
def dock(qtbot):
    w = QWidget()
    w.bar, w.cancel_btn, w.go_btn, w.status = QProgressBar(w), QPushButton("Cancel", w), QPushButton("Go", w), QLabel(w)
    qtbot.addWidget(w)
    w.jobs = DockJobs(w, progress_bar=w.bar, cancel_button=w.cancel_btn, start_buttons=(w.go_btn,), status=w.status)
    return w


def _slow_job(jobs, steps=400, started=None):
    """Reports progress and stops at a cancel, as the core's loops do."""
    def job():
        for i in range(steps):
            if jobs.context.cancelled():
                raise Cancelled()
            jobs.context.progress(i + 1, steps)
            if started is not None:
                started.set()
            time.sleep(0.01)
        return "finished"
    return job


def _run_and_cancel(dock, qtbot, cancel) -> list:
    outcome: list = []
    started = threading.Event()
    worker = dock.jobs.start(_slow_job(dock.jobs, started=started), desc="a slow job",
                             done=outcome.append, cancelled=lambda: outcome.append("cancelled"))
    assert worker is not None and not dock.go_btn.isEnabled() and dock.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: dock.bar.value() >= 2, timeout=20_000)
    assert dock.jobs.pbar in progress._all_instances, "the job is shown in napari's activity dialog"
    assert dock.jobs.pbar.desc.startswith("a slow job") and dock.jobs.pbar.total == 400 and dock.jobs.pbar.n >= 2
    cancel(dock)
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=20_000)
    assert dock.jobs.idle.is_set() and dock.go_btn.isEnabled() and not dock.cancel_btn.isEnabled()
    assert not [p for p in progress._all_instances if str(p.desc).startswith("a slow job")], "progress closed"
    return outcome


@pytest.mark.parametrize("cancel", [lambda d: d.cancel_btn.click(),            # the dock's Cancel
                                    lambda d: d.jobs.pbar.cancel(),            # the activity dialog's Cancel
                                    lambda d: d.jobs.worker.quit()],           # the status bar's task Cancel
                         ids=["dock-button", "activity-dialog", "status-bar"])
def test_every_cancel_stops_the_job(dock, qtbot, cancel):
    assert _run_and_cancel(dock, qtbot, cancel) == ["cancelled"]


def test_result_comes_back_on_the_gui_thread_and_may_start_the_next_job(dock, qtbot):
    seen: list = []

    def second(value):
        seen.append((value, threading.current_thread() is threading.main_thread()))

    def first(value):
        seen.append((value, threading.current_thread() is threading.main_thread()))
        assert dock.jobs.start(lambda: "second", desc="second", done=second) is not None

    dock.jobs.start(lambda: "first", desc="first", done=first)
    qtbot.waitUntil(lambda: len(seen) == 2 and not dock.jobs.running(), timeout=20_000)
    assert seen == [("first", True), ("second", True)]


@pytest.mark.parametrize("error, shown", [(LesionSegError("The file is damaged."), "The file is damaged."),
                                          (RuntimeError("boom"), "Unexpected error: RuntimeError: boom")])
def test_an_error_is_shown_once_as_a_message(dock, qtbot, messages, error, shown):
    failed: list = []

    def job():
        raise error

    dock.jobs.start(job, desc="failing", done=lambda _: pytest.fail("done after an error"), failed=failed.append)
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=20_000)
    qtbot.wait(50)
    assert failed == [error]
    assert [m for m in messages if "damaged" in m or "boom" in m] == [shown]
    assert dock.status.text() == shown and "Traceback" not in shown


def test_stop_cancels_and_waits_for_the_thread(dock, qtbot):
    started = threading.Event()
    dock.jobs.start(_slow_job(dock.jobs, started=started), desc="long", done=lambda _: None)
    assert started.wait(20)
    assert dock.jobs.stop() is True, "stop() returned before the thread ended"
    assert dock.jobs.cancel_event.is_set() and dock.jobs.idle.is_set()
    qtbot.waitUntil(lambda: not dock.jobs.running(), timeout=20_000)
