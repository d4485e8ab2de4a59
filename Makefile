# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs into it.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
DEMO   ?= demo-out

.PHONY: demo test lint bench chromium clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files re-run the install whenever pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# The demo computes features with (randomly initialised) networks: it needs torch.
$(VENV)/.installed-ml: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[ml]'
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[ml,dev]'
	touch $@ $(VENV)/.installed-ml $(VENV)/.installed-base

demo: $(VENV)/.installed-ml
	$(VENV)/bin/percept demo --out $(DEMO)

# Browser tests drive Debian's chromium; Playwright's own browser download is never used.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing and this is not root: run 'sudo apt-get install chromium'"; \
	fi

# All but the browser tests in one process per core, at most 4 (pytest-xdist): many wait on a
# paced crowd or a server. The browser tests check frame-exact timing, which a second busy
# process on 2 cores spoils, so they run afterwards on their own.
test: $(VENV)/.installed-test chromium
	$(VENV)/bin/pytest -m "not browser" --numprocesses auto --maxprocesses 4
	$(VENV)/bin/pytest -m browser

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed-test chromium
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/timing.py
	$(PY) benchmarks/load.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
