# Restore-R1: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.restore-r1-installed
# Weights never come from a hub at run time: absent weights fail fast, by name.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo test test-fast bench clean help promtool

help:
	@echo "make demo   - create the environment if missing, then run the demo"
	@echo "make test   - the full test suite (what CI runs)"
	@echo "make bench  - the benchmarks; results land in bench/results/"

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision: the matching pair that lies on this machine's disk
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	# packages whose declared requirements we do not want (see the file)
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

# promtool (alert rule tests) from Debian's prometheus package, unpacked into an ignored folder.
PROMTOOL := .cache/promtool/usr/bin/promtool
promtool: $(PROMTOOL)
$(PROMTOOL):
	rm -rf .cache/promtool && mkdir -p .cache/promtool/deb
	cd .cache/promtool/deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg -x .cache/promtool/deb/prometheus_*.deb .cache/promtool
	rm -rf .cache/promtool/deb
	$@ --version | head -1

demo: $(STAMP)
	$(BIN)/restore-r1 demo --out demo_out

test: $(STAMP) $(PROMTOOL)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP) $(PROMTOOL)
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python bench/tools_bench.py --out bench/results

clean:
	rm -rf demo_out .pytest_cache
