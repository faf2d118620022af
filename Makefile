# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.core
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs dist bench clean

# The venv's own pip (Python 3.11+ ships one new enough for editable installs): upgrading it
# would cost the demo a download.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The demo needs only the core; tests, lint and the docs need every extra.
$(CORE): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[all,test,docs]'
	touch $(CORE) $(STAMP)

demo: $(CORE)
	$(BIN)/eventrouter route examples/config.yaml examples/events.jsonl
	@echo "Output: every event in out/archive.jsonl; the filtered, redacted analytics"
	@echo "branch in out/analytics.jsonl. First analytics line:"
	@head -n 1 out/analytics.jsonl
	@echo "The command is .venv/bin/eventrouter (or run '. .venv/bin/activate' first)."

lint: $(STAMP)
	$(BIN)/ruff check eventrouter tests benchmarks scripts examples docs/gen_reference.py
	$(BIN)/ruff format --check eventrouter tests benchmarks scripts examples docs/gen_reference.py
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest
	$(MAKE) docs dist

# The site, into site/; --strict turns every warning (a broken link or anchor) into an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The sdist and the wheel install into a clean venv and run.
dist: $(STAMP)
	.ci/check-dist $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps event-tracking==4.0.2 pytz
	$(BIN)/python benchmarks/routing.py
	$(BIN)/python benchmarks/mongodb.py
	$(BIN)/python benchmarks/end_to_end.py
	$(BIN)/python benchmarks/emit_latency.py
	$(BIN)/python benchmarks/scale_out.py

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache
