# Every target creates .venv with uv when it is missing (installing uv with pip first if needed).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
RUN := $(UV) run --frozen

.PHONY: venv demo test lint bench fmt clean

venv: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

lint: venv
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy src

test: lint
	$(RUN) pytest -q

demo: venv
	$(RUN) python examples/fitness/demo.py

bench: venv
	$(RUN) python bench/ingest.py && $(RUN) python bench/identity.py && $(RUN) python bench/models.py

fmt: venv
	$(RUN) ruff check --fix src tests bench
	$(RUN) ruff format src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
