# The two commands a newcomer needs: `make serve` and `make test`. Each does all set-up itself.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Offline machines point at a local model pack; the shared development pack sits beside the repo.
TEST_MODELS ?= $(abspath ../shared/models)

.PHONY: setup system-deps serve test bench

$(BIN)/securegate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/securegate

# SoftHSM2 backs the PKCS#11 tests, nginx the mTLS front's test; each installed only when missing.
system-deps:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq softhsm2 >/dev/null; }
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nginx >/dev/null; }

serve: setup
	$(BIN)/securegate serve $(ARGS)

test: setup system-deps
	SECUREGATE_MODELS=$${SECUREGATE_MODELS:-$(TEST_MODELS)} $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	SECUREGATE_MODELS=$${SECUREGATE_MODELS:-$(TEST_MODELS)} $(BIN)/python benchmarks/embed.py
