# Two commands from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export FLASK_APP := app

.PHONY: run test lint install install-dev migrate demo clean translations translations-update mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed translations
install-dev: $(VENV)/.installed-dev translations

# The interface's gettext catalogs are compiled at install (the .mo files are not
# committed). `make translations-update` re-extracts the strings and merges them in.
translations: | $(VENV)/.installed
	$(BIN)/pybabel compile -d translations --statistics

translations-update: install-dev
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o translations/messages.pot \
		--no-location --sort-output --project=Counterfund --copyright-holder=Counterfund \
		--ignore-dirs=".venv tests bench migrations verifier instance" .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --width=100 --ignore-obsolete -N

migrate: install
	$(BIN)/flask db upgrade

demo: migrate
	$(BIN)/flask demo load

# Links in emails sent by later CLI commands (`flask settle --due`) point where this serves.
run: demo
	@mkdir -p $${COUNTERFUND_INSTANCE:-instance}
	@[ -n "$$PUBLIC_URL" ] || echo "http://127.0.0.1:$(PORT)" > $${COUNTERFUND_INSTANCE:-instance}/public_url
	@echo "Counterfund is serving on http://127.0.0.1:$(PORT)/"
	$(BIN)/gunicorn --bind 127.0.0.1:$(PORT) --workers 1 --threads 8 app:app

# pytest exits 5 when it collected no test: that is a failure, not a pass.
# PYTHONNODEBUGRANGES: Python 3.11 formats tracebacks with ast.parse, whose state is
# shared between threads; a background thread logging an exception while the main
# thread builds URL rules (also ast.parse) can raise "AST constructor recursion depth
# mismatch" (CPython gh-106905). Without column ranges, tracebacks never parse.
test: export PYTHONNODEBUGRANGES = 1
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# Style, formatting, the layering contracts (pyproject: tool.importlinter) and types.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Mutation testing (pyproject: tool.mutmut): slow, by hand, not in CI. Surviving
# mutants are code no test can tell apart from the original: `mutmut show NAME`.
# A mutant that loops forever building lists (a loop's step made constant) can fill
# the machine's memory before mutmut's timeout: 8 GiB each, then it dies (killed).
MUTANTS ?=
mutants: install-dev
	$(BIN)/pip install --quiet "mutmut==3.8.1"
	rm -rf mutants
	ulimit -v 8388608 && $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache *.egg-info mutants
