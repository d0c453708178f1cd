# Two commands do all the set-up on a fresh Debian machine as root: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
# Debian's interpreter: root-owned and world-readable, so study accounts can run the environment
# (a Python under a 0700 home, such as pyenv's in /root, cannot be run by other uids).
PYTHON ?= /usr/bin/python3.11
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= /var/lib/workbench/demo
DEMO_POLICY ?= workbench/hub_config/policy.yaml
# The slowest tests are listed at the end of every run, so where the time goes is on record.
PYTEST_ARGS ?= --durations=40
# Two xdist workers, tests grouped by the accounts they share (tests/conftest.py): 14-16 minutes
# on 2 cores (20-25 on a slower machine, where one process took 25-29; three workers are no
# faster there: the suite is CPU-bound).
# PYTEST_WORKERS= runs everything in one process.
PYTEST_WORKERS ?= -n 2 --dist loadgroup --no-loadscope-reorder
# "command:package" pairs: a package is installed only when its command is missing (NodeSource's
# nodejs ships npm and conflicts with Debian's npm package, so npm is looked for, not dpkg'd).
APT_COMMANDS := bwrap:bubblewrap setpriv:util-linux npm:npm chromium:chromium
APT_PACKAGES := python3.11-venv fonts-dejavu-core libseccomp2 libsodium23

.PHONY: demo test bench lint system-deps clean-demo labextension

# Debian packages: bubblewrap for the kernel sandbox, setpriv (util-linux), node/npm for
# configurable-http-proxy, chromium for the browser tests, libseccomp2 for the kernel's seccomp
# filter, libsodium23 for the linkage OPRF (pysodium loads it). Skipped when all are present.
system-deps:
	@missing=""; \
	for pair in $(APT_COMMANDS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v configurable-http-proxy >/dev/null || npm install -g --silent configurable-http-proxy@5

# The environment is root-owned and world-readable so study kernels (other uids) can run it.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	chmod -R a+rX $(VENV)
	$(PY) -c "from workbench.hub.layout import ensure_interpreter_reachable as e; e(fix=True)"
	touch $(STAMP)

demo: system-deps $(STAMP)
	$(VENV)/bin/workbench demo --data-dir $(DEMO_DIR) --policy $(DEMO_POLICY)

test: system-deps $(STAMP)
	$(VENV)/bin/ruff check workbench tests benchmarks
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: system-deps $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The researcher's JupyterLab extension (labextension/ -> workbench/labextension/, committed):
# only after changing its source; `make demo` and installs use the prebuilt output, no node.
labextension:
	rm -rf workbench/labextension/workbench-lab
	cd labextension && npm ci --no-audit --no-fund && npx tsc && \
	  PATH=$(CURDIR)/$(VENV)/bin:$$PATH jupyter builder build .
	$(PY) -c "from pathlib import Path; from workbench.labextension import record_build; \
	  print(record_build(Path('labextension')))"
