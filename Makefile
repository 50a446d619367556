# The README's two commands: `make report` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The machine's local wheels (torch's CPU build lives there); harmless where absent.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: report test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(FIND_LINKS) \
		-c constraints.txt -e '.[dev,html]'
	touch $@

report: $(STAMP)
	$(BIN)/gradcheck run --format text --output reports/gradcheck.md --output reports/gradcheck.json \
		--output reports/gradcheck.html

LINTED := $(wildcard gradcheck cases tests benchmarks)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
