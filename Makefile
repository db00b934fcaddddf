# Every target installs what it needs into .venv from pyproject.toml (pinned versions).
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODES   ?= 6
SEED    ?= 7

.PHONY: venv test demo bench chaos lint typecheck clean image image-check image-lock report-screenshot

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python 3.11) on PATH"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	@touch $(STAMP)

venv: $(STAMP)

## test: the type check, then the whole suite (what CI runs). Most tests wait on the simulated
## cluster's latencies rather than compute, so four workers keep two cores busy; the longest
## tests are collected first (tests/conftest.py) and idle workers steal queued ones.
test: typecheck
	$(BIN)/python -m pytest -n 4 --dist worksteal -q

## demo: the whole migration on the embedded simulated cluster
demo: $(STAMP)
	$(BIN)/migrator demo --nodes $(NODES) --seed $(SEED)

## bench: performance figures (printed, not asserted)
bench: $(STAMP)
	$(BIN)/python -m bench

## chaos: the chaos suite (faults, outage, crash sweep, takeover, concurrency), then its table;
## CHAOS_ARGS passes options, e.g. CHAOS_ARGS="--only faults --seeds 1"
chaos: $(STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

## image: build the container image (Containerfile) with docker, podman or buildah, the first that
## works here (IMAGE_ENGINE=podman picks one), tagged as `migrator manifests` names it:
## ghcr.io/migrator/migrator:<version in pyproject.toml> (IMAGE=name:tag overrides)
image:
	$(PY) tools/image.py build $(if $(IMAGE),--tag $(IMAGE))

## image-check: what the image holds, proven without an engine or a registry: the wheel installed
## without extras into a clean venv (exactly tools/image.lock), the ENTRYPOINT run from it
## (tests/test_image.py runs it too, so `make test` does)
image-check: $(STAMP)
	$(BIN)/python tools/image.py check

## image-lock: rewrite tools/image.lock (the image's exact packages) after a dependency change
image-lock: $(STAMP)
	$(BIN)/python tools/image.py lock

## lint: ruff, then the type check
lint: $(STAMP)
	$(BIN)/ruff check migrator tests bench chaos tools
	$(BIN)/mypy

## typecheck: mypy over migrator/ (settings in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

## report-screenshot: render a run report to PNG with a headless browser (chromium), when one is
## installed; without one it says so and exits 0. REPORT=file.html (default: the newest
## migrator-report-*.html here), SCREENSHOT=file.png (default: REPORT with .png)
report-screenshot: $(STAMP)
	$(BIN)/python -m migrator.report.screenshot "$(REPORT)" "$(SCREENSHOT)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
