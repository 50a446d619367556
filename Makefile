# The README's two commands: `make report` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# The machine's local wheels (torch's CPU build lives there); harmless where absent.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check $(FIND_LINKS) -c constraints.txt

.PHONY: report test lint docs package setup clean

setup: $(STAMP)

# torch and jax are extras of the package (pip install gradcheck brings neither); the checkout's
# own environment has both, torch pinned to the CPU build by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev,html,torch,jax]'
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

$(DOCS_STAMP): $(STAMP)
	$(PIP) -e '.[docs]'
	touch $@

# The documentation site (mkdocs.yml, docs/): built into site/, every warning an error.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The wheel in a fresh venv without torch, on a NumPy user project (.ci/packaging).
package: $(STAMP)
	bash .ci/packaging

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
