# Latent Sky: two commands set everything up on a fresh machine.
#   make demo   venv + install + migrate + demo user + web server + Celery worker + demo pipeline
#   make test   the whole test suite (PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast npm reliability benchmarks venv lock clean help

help:
	@echo "make demo        run the site with a worker and the demo pipeline (http://127.0.0.1:8000)"
	@echo "make test        run the whole test suite"
	@echo "make test-fast   unit tests only"
	@echo "make reliability load test + fault injection + fuzzing (needs PostgreSQL and Redis)"
	@echo "make benchmarks  run every benchmark in --quick mode"
	@echo "make lock        regenerate requirements.lock and requirements-dev.lock after editing requirements*.txt"

venv: $(STAMP)

# Installs exactly the lock (requirements-dev.lock is a superset of requirements.lock), then
# timm without its torchvision requirement (requirements-nodeps.txt pins it exactly).
# The Python client (client/, a local package whose dependencies are all in the lock) is
# installed editable, --no-deps, for its tests against a live server (tests/client).
$(STAMP): requirements.lock requirements-dev.lock requirements-nodeps.txt client/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e ./client
	touch $(STAMP)

# The resolver is pip's; use the project venv's pip when there is one (any pip >= 23 works).
lock:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) scripts/lock.py

# Browser libraries from package.json (sampjs, aladin-lite), served from /static/vendor/.
# Only when the lock changed; without npm the pages say so and the sky view keeps its scatter.
node_modules/.package-lock.json: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; \
	else echo "note: npm not found: SAMP buttons and sky imagery stay off (install Node 20 and rerun)"; fi

npm: node_modules/.package-lock.json

demo: venv npm
	@bash scripts/demo.sh

test: venv npm
	@bash scripts/ensure_chromium.sh || true
	LATENTSKY_ENV=test LATENTSKY_DATA_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	LATENTSKY_ENV=test LATENTSKY_DATA_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest -m "unit and not slow" $(PYTEST_ARGS)

reliability: venv
	@bash scripts/ensure_chromium.sh || true
	$(BIN)/python benchmarks/reliability.py $(RELIABILITY_ARGS)

benchmarks: venv
	@for b in benchmarks/*.py; do case $$b in *common.py|*datasets.py|*goals.py|*backfill_provenance.py|*reliability.py|*load_browser.py) continue;; esac; echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf var .pytest_cache
