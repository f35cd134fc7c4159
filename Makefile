# The two commands of the README:
#   make book   set everything up and build the site into _build/html
#   make test   set everything up and run every test
# Both create .venv with the Python you name (default python3, 3.10 or newer).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch. On a machine whose pip cannot find it, use e.g.
#   make test TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
export OMP_NUM_THREADS ?= 1

.PHONY: setup vendor book test test-lib test-notebooks benchmark execute student clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

# MathJax, require.js and the widget manager, served from the book so that the
# site works with no internet (needs npm once; does nothing when vendor/ is complete).
vendor: $(BIN)/python
	$(BIN)/python scripts/vendor_assets.py

book: setup vendor
	$(BIN)/jupyter-book build . -W -n --keep-going

# The site is built first (warnings are errors), so that the browser tests
# (tests/test_site.py, headless /usr/bin/chromium) can check it.
test: setup vendor
	$(BIN)/jupyter-book build . -W -n --keep-going
	SITE_TESTS=required $(BIN)/python -m pytest tests chapters --nbval --nbval-sanitize-with tests/sanitize.cfg

test-lib: setup
	$(BIN)/python -m pytest tests -q

test-notebooks: setup
	$(BIN)/python -m pytest chapters --nbval --nbval-sanitize-with tests/sanitize.cfg -q

# Re-run every notebook from a fresh kernel and save its outputs (do this after
# changing a notebook or attnlib, then commit the notebooks).
execute: setup
	for nb in chapters/*.ipynb; do $(BIN)/jupyter execute --inplace "$$nb" || exit 1; done

# The student edition of every chapter (solutions removed) into student/
student: setup
	$(BIN)/python scripts/student_edition.py chapters student

benchmark: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build
