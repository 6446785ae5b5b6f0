#!/usr/bin/env bash
# Builds the wheel, installs it with its dependencies into a fresh virtual environment outside the clone (no
# editable install) and checks it there as a new user would meet it (scripts/wheel_smoke.py). `make test` runs it.
# Prints the wheel's size and the install time. Fails when the wheel is 60 MB or more.
# PYTHON: the interpreter for the new venv (default python3); LESIONSEG_SMOKE_DIR: where to work (default a new
# folder in $TMPDIR, removed at the end; the venv takes about 6 GB: torch is a CUDA build).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
MAX_WHEEL_BYTES=60000000
WORK="${LESIONSEG_SMOKE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/lesionseg-wheel-smoke.XXXXXX")}"
case "$WORK" in "$REPO"|"$REPO"/*) echo "wheel smoke: $WORK is inside the clone" >&2; exit 1;; esac
[ -n "${LESIONSEG_SMOKE_DIR:-}" ] || trap 'echo "wheel smoke: removing $WORK"; rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

# Build from a copy of what the wheel is made of, so the clone gets no build/ or .egg-info (and no stale files
# from an earlier build/ end up in the wheel). cp -a keeps the relative links napari_lesionseg/resources/*.
mkdir -p "$WORK/src" "$WORK/dist"
cp -a "$REPO"/{pyproject.toml,README.md,LICENSE,napari_lesionseg,models,sample_data} "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --no-deps --quiet --wheel-dir "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/napari_lesionseg-*.whl)"
SIZE=$(stat -c %s "$WHEEL")
echo "wheel smoke: $(basename "$WHEEL") is $SIZE bytes ($((SIZE / 1000000)) MB)"
if [ "$SIZE" -ge "$MAX_WHEEL_BYTES" ]; then
    echo "wheel smoke: the wheel must stay under 60 MB" >&2
    exit 1
fi

# A fresh venv; constraints.txt takes torch/torchvision from the machine's disk, as `make` does.
rm -rf "$WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
START=$(date +%s)
"$WORK/venv/bin/python" -m pip install --quiet -c "$REPO/constraints.txt" "$WHEEL[qt]"
echo "wheel smoke: installed with its dependencies in $(( $(date +%s) - START )) s"

# Run from outside the clone, with nothing pointing back into it.
cd "$WORK"
SHARED="${LESIONSEG_SHARED_DATA:-$REPO/../shared/data}"
env -u PYTHONPATH -u LESIONSEG_MODELS_DIR -u LESIONSEG_LINE_MODEL_DIR \
    LESIONSEG_USER_MODELS_DIR="$WORK/user-models" OMP_NUM_THREADS=1 \
    "$WORK/venv/bin/python" "$REPO/scripts/wheel_smoke.py" --repo "$REPO" --shared "$SHARED"
echo "wheel smoke: ${SECONDS} s from the start to the last check"
