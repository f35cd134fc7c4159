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

# How many notebooks run at once in the seed gate and `make robustness`.
JOBS ?= 2
# pytest's workers in `make test`. Three on two cores: the browser tests spend most of their time
# waiting (page loads, the quizzes' 0.9 s animations), and a third worker fills those waits.
TEST_JOBS ?= 3
# `make robustness SEEDS="101 202" [CHAPTERS="chapters/01_activation.ipynb ..."]`
SEEDS    ?=
CHAPTERS ?=

.PHONY: results setup vendor book test test-lib test-notebooks seed-gate robustness benchmark execute student assignment clean preflight-book preflight-test

# System packages (npm; Chromium for the tests): installed with apt-get when run as root,
# otherwise make stops here, before any long step, naming the command to run.
preflight-book:
	@bash scripts/preflight.sh book

preflight-test:
	@bash scripts/preflight.sh test

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

book: preflight-book setup vendor
	$(BIN)/jupyter-book build . -W -n --keep-going

# The site is built first (warnings are errors), so that the browser tests
# (tests/test_site.py, headless /usr/bin/chromium) can check it. pytest runs the unit
# tests, the browser tests and nbval (every notebook at its committed seed, outputs
# compared) on $(JOBS) workers; then the rotating-seed gate runs the chapters of
# tests/seed_gate.txt again with a base seed derived from the commit (CONTRIBUTING.md).
test: preflight-test setup vendor
	@$(BIN)/python scripts/seed_gate.py --print-seed
	$(BIN)/jupyter-book build . -W -n --keep-going
	SITE_TESTS=required $(BIN)/python -m pytest tests chapters --nbval --nbval-sanitize-with tests/sanitize.cfg \
		-n $(TEST_JOBS) --dist loadfile
	$(BIN)/python scripts/seed_gate.py --rotating --jobs $(JOBS)

seed-gate: setup
	$(BIN)/python scripts/seed_gate.py --rotating --jobs $(JOBS)

# Every chapter (or CHAPTERS) for every seed in SEEDS, $(JOBS) at once: a table of pass/fail.
robustness: setup
	@test -n "$(SEEDS)" || { echo 'usage: make robustness SEEDS="101 202 ..." [CHAPTERS="chapters/..."]'; exit 2; }
	$(BIN)/python scripts/seed_gate.py --seeds $(SEEDS) $(if $(CHAPTERS),--chapters $(CHAPTERS)) --jobs $(JOBS)

# The full-scale results (attnlib/experiments, stored under results/; README, "Full-scale results"):
#   make results [CHAPTERS="chapters/05_pooling.ipynb ..."] [SEED=123]
# Each experiment runs its independent units in $(JOBS) processes, one thread each; rerun the same
# command after an interruption and it resumes. Then the chapters' conclusions are checked on the
# new data and a table says which hold (exit status 1 if any does not).
SEED ?=
results: setup
	$(BIN)/python scripts/results.py $(if $(CHAPTERS),--chapters $(CHAPTERS)) $(if $(SEED),--seed $(SEED)) --jobs $(JOBS)

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

# One chapter as one nbgrader assignment, in grading/ (teachers.md, "Grading"): its exercises
# only; the marks are decided outside the students' notebooks (grading/judge.py). Builds
# nbgrader's source with a random secret seed for the hidden inputs (SEED=... fixes one),
# releases it, then autogrades the reference solutions once in a scratch folder: it stops if
# they miss a mark, and prints how long one submission took here and so how long a class of
# 100 takes (one after another). It refuses while submissions are in (FORCE=1 overrides).
#   make assignment CHAPTER=02_shapes   -> grading/release/02_shapes/02_shapes.ipynb
assignment: setup
	@test -f "chapters/$(CHAPTER).ipynb" || { echo 'usage: make assignment CHAPTER=02_shapes (a notebook in chapters/, without .ipynb)'; exit 2; }
	$(BIN)/python grading/assignment.py $(CHAPTER) $(if $(SEED),--seed $(SEED)) $(if $(FORCE),--force)

benchmark: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build
