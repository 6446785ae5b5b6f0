"""Model names become file names (`<name>.json`, `<name>.safetensors`, `.checkpoints/<name>`): they must be names,
never paths, so a model can only ever be written inside the model folder."""

from __future__ import annotations

import re

from .errors import LesionSegError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 100


def check_model_name(name: str | None) -> str:
    """Return `name` (stripped) when it is a usable model name; raise LesionSegError saying why not otherwise.

    Allowed: letters, digits, '-', '_' and '.', starting with a letter or digit; no '/' or '\\', no '..'."""
    text = (name or "").strip()
    if not text:
        raise LesionSegError("Give the model a name (letters, digits, - _ and .).")
    if "/" in text or "\\" in text or ".." in text:
        raise LesionSegError(f"Model name {text!r} looks like a path; a model name is a plain name such as "
                             "'ultrasound-mine' (letters, digits, - _ and ., no / \\ or ..).")
    if not _NAME.fullmatch(text):
        raise LesionSegError(f"Model name {text!r} may hold only letters, digits, - _ and ., and must start with a "
                             "letter or digit.")
    if len(text) > MAX_NAME_LENGTH:
        raise LesionSegError(f"Model name is {len(text)} characters long; keep it under {MAX_NAME_LENGTH}.")
    return text
