# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eventrouter route examples/config.yaml examples/events.jsonl
	@echo "Output: every event in out/archive.jsonl; the filtered, redacted analytics"
	@echo "branch in out/analytics.jsonl. First analytics line:"
	@head -n 1 out/analytics.jsonl

lint: $(STAMP)
	$(BIN)/ruff check eventrouter tests benchmarks scripts examples
	$(BIN)/ruff format --check eventrouter tests benchmarks scripts examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps event-tracking==4.0.2 pytz
	$(BIN)/python benchmarks/routing.py
	$(BIN)/python benchmarks/mongodb.py
	$(BIN)/python benchmarks/end_to_end.py
	$(BIN)/python benchmarks/emit_latency.py
	$(BIN)/python benchmarks/scale_out.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
