# Two commands on a fresh machine: `make run` and `make test`. Both build .venv/ on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test bench lint venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The main job: a full simulated session with its report, then the clinic dashboard with a
# demo clinic on the simulated table and SQLite (Ctrl-C to stop).
run: $(STAMP)
	$(BIN)/spinedecomp demo
	$(BIN)/spinedecomp serve --demo

demo: $(STAMP)
	$(BIN)/spinedecomp demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
