# The README's two commands: `make report` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# torch's CPU build. The pin alone does not give it: on Linux, PyPI's torch==2.13.0 is the CUDA
# build with its nvidia-* packages and triton (several GB). So torch is installed first, on its
# own: from a local wheel directory where one holds a torch wheel (WHEELS), else from PyTorch's
# CPU index (its dependencies from PyPI). The second install then finds torch==2.13.0 in place.
WHEELS ?= /opt/wheels
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
FIND_LINKS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS),)
TORCH_FROM := $(if $(wildcard $(WHEELS)/torch-*.whl),$(FIND_LINKS),--index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: report test lint docs package setup clean

setup: $(STAMP)

# torch and jax are extras of the package (pip install gradcheck brings neither); the checkout's
# own environment has torch's CPU build (TORCH_FROM above), at the version constraints.txt
# pins, and jax (CPU jaxlib).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_FROM) torch
	$(PIP) $(FIND_LINKS) -e '.[dev,html,torch,jax]'
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
	$(PIP) $(FIND_LINKS) -e '.[docs]'
	touch $@

# The documentation site (mkdocs.yml, docs/): built into site/, every warning an error.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The wheel in a fresh venv without torch, on a NumPy user project (.ci/packaging).
package: $(STAMP)
	bash .ci/packaging

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
