# The two commands of the README: `make demo` and `make test`.
VENV := .venv
STAMP := $(VENV)/.weightgate-installed
DEMO_DIR ?= demo-workspace

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/weightgate demo $(DEMO_DIR)

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python tests/bench/startup.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
