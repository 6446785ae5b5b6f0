"""Project rules a reviewer would otherwise check by hand: short functions and one atomic writer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "napari_lesionseg"
MAX_FUNCTION_LINES = 120


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_function_is_longer_than_120_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these functions: " + "; ".join(long)


def test_only_core_io_atomic_renames_files_into_place():
    """Every write that replaces a file goes through `core.io.atomic.atomic_path` (no private copies)."""
    pattern = re.compile(r"\bos\.(replace|rename)\(|shutil\.move\(|NamedTemporaryFile\(")
    users = {str(p.relative_to(PACKAGE)) for p in _sources() if pattern.search(p.read_text(encoding="utf-8"))}
    assert users == {"core/io/atomic.py"}
