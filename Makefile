# The two commands a new user needs: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := plugins/generic_webhook plugins/slack plugins/zapier
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint test-slow test-browser bench mutate venv clean

$(STAMP): setup.cfg pyproject.toml $(foreach p,$(PLUGINS),$(p)/setup.cfg)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test]' $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

venv: $(STAMP)

# Options for `gateway run`, e.g. make run ARGS="--port 9000 --workers 2"
run: $(STAMP)
	$(BIN)/gateway run $(ARGS)

# Tests mostly wait on real servers and worker processes, so three pytest-xdist workers
# roughly halve the wall time on two cores. Each worker starts its own embedded Redis; with
# REDIS_URL (one shared database that tests flush) they run serially instead.
TEST_WORKERS ?= $(if $(REDIS_URL),0,3)

# What some tests drive besides Python, so that none of them is skipped: wrk (the bench
# harness's tests, bench/setup.sh installs it from Debian) and Zapier's own app tester
# (zapier-platform-core from npm, pinned by the app's package-lock.json).
ZAPIER_APP := plugins/zapier/zapier-app
TOOLS_STAMP := $(ZAPIER_APP)/node_modules/.installed
$(TOOLS_STAMP): $(ZAPIER_APP)/package.json $(ZAPIER_APP)/package-lock.json bench/setup.sh
	sh bench/setup.sh
	npm ci --prefix $(ZAPIER_APP) --no-audit --no-fund --loglevel=error
	touch $(TOOLS_STAMP)

test: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" --ignore=tests/browser -q -n $(TEST_WORKERS)

# The house habits a reviewer would otherwise check by hand: ruff (pyflakes, pycodestyle,
# import order, bugbear, ...) and mypy (strict on the plugin API, normal elsewhere).
lint: $(STAMP)
	$(BIN)/ruff check gateway plugins bench tests mutation
	$(BIN)/mypy

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# Debian's chromium (never `playwright install`), driven by Playwright for Python.
BROWSER_STAMP := $(VENV)/.browser-installed
$(BROWSER_STAMP): $(STAMP)
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)
	$(PIP) install -e '.[test,browser]'
	touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	$(BIN)/python -m pytest -m browser tests/browser -q

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

# Mutation testing of the critical paths (cosmic-ray over the Python modules, hand-written
# mutants of the Lua scripts), one mutant at a time in a copy of the work tree: about an hour
# on 2 cores, so not part of make test. Report: test-artifacts/mutation/report.md (and .json).
# One module or script again: make mutate ARGS="--only signing --only lua:claim".
MUTATE_STAMP := $(VENV)/.mutate-installed
$(MUTATE_STAMP): $(STAMP)
	$(PIP) install -e '.[test,mutate]'
	touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	$(BIN)/python -m mutation $(ARGS)

clean:
	rm -rf $(VENV) .gateway build *.egg-info
