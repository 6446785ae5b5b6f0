"""Writes from a dock whose errors are shown once (background jobs: see `_worker.DockJobs`)."""

from __future__ import annotations


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
