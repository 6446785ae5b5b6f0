"""Background jobs whose errors are shown once.

napari's thread workers pass every exception raised in the worker to napari's own notification manager (and, unless
told otherwise, raise it again on the GUI thread) on top of the dock's own message: each error appeared twice. A job
wrapped here returns its exception as a `JobFailed` value instead, and the dock shows it, once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass
class JobFailed:
    """What a wrapped job returns instead of raising."""

    error: BaseException


def returning_errors(fn):
    """`fn` that returns `JobFailed(error)` instead of raising an Exception (for thread workers)."""

    @functools.wraps(fn)
    def job(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - handed to the dock, which says what went wrong
            return JobFailed(e)

    return job


def on_result(done, failed):
    """A `returned` slot: `failed(error)` for a JobFailed, else `done(result)`."""

    def slot(result):
        if isinstance(result, JobFailed):
            failed(result.error)
        else:
            done(result)

    return slot


def written_or_reported(write, path):
    """`write()`'s result, or None after one error notification (a refused or failed write: nothing is left half
    written, the writers are atomic)."""
    from napari.utils.notifications import show_error

    from ..core.errors import LesionSegError

    try:
        return write()
    except LesionSegError as e:
        show_error(str(e))
    except OSError as e:
        show_error(f"Could not write {path}: {e}")
    return None
