# The two commands of the README: `make demo` and `make test`.
VENV := .venv
STAMP := $(VENV)/.weightgate-installed
DEMO_DIR ?= demo-workspace
# Two workers on two cores; the tmux tests type into a real terminal and run alone after them.
PARALLEL := -n 2 --dist loadfile

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/weightgate demo $(DEMO_DIR)

# Every tier: unit, tui and e2e, slow tests included.
test: setup
	$(VENV)/bin/pytest $(PARALLEL) -m "not tmux"
	$(VENV)/bin/pytest -m tmux

# The fast tier for a developer: no slow, tmux or end-to-end tests (a few minutes).
test-fast: setup
	$(VENV)/bin/pytest $(PARALLEL) -m "not slow and not tmux and not e2e"

bench: setup
	$(VENV)/bin/python tests/bench/startup.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build
