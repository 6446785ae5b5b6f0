"""One exception type for problems a user can fix (bad file, empty annotation, model that does not fit).

The napari layer shows its message as a notification; the CLI prints it and exits with status 2.
Anything else that escapes is a bug.
"""


class LesionSegError(Exception):
    """A problem with the user's input, phrased for the user."""


class Cancelled(Exception):
    """Raised inside long work when the user pressed Cancel."""
