# The two commands a newcomer needs: `make serve` and `make test`. Each does all set-up itself.
# `make test-fast` is the developer's tier: the tests that need no Ray app, browser, RTSP server or network
# (docs/testing.md says which tier to run when).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Offline machines point at a local model pack; the shared development pack sits beside the repo.
TEST_MODELS ?= $(abspath ../shared/models)

.PHONY: setup softhsm system-deps serve test test-fast bench

# CPU build by default; GPU=1 (`make serve GPU=1`, `make test GPU=1`) installs the [gpu] extra instead. The CPU and
# GPU builds of ONNX Runtime and FAISS install the same modules (last one wins), so a venv holds exactly one set:
# switching removes both sets before installing, and a GPU install removes the CPU onnxruntime that insightface
# pulls in, then lays onnxruntime-gpu's files down again (same version, no deps).
IS_GPU    = $(filter 1 yes true,$(GPU))
FLAVOUR   = $(if $(IS_GPU),gpu,cpu)
OWN_SET   = $(if $(IS_GPU),onnxruntime-gpu faiss-gpu-cu12,onnxruntime faiss-cpu)
OTHER_SET = $(if $(IS_GPU),onnxruntime faiss-cpu,onnxruntime-gpu faiss-gpu-cu12)
INSTALLED = $(VENV)/.securegate-$(FLAVOUR)

$(INSTALLED): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@other=$$($(BIN)/python -c "import importlib.metadata as m, sys; print(*(d for d in sys.argv[1:] if list(m.distributions(name=d))))" $(OTHER_SET)); \
	if [ -n "$$other" ]; then echo "removing $$other and $(OWN_SET) (switching build)"; \
	  $(BIN)/pip uninstall -q -y $$other $(OWN_SET); fi
	$(BIN)/pip install -q -e '.[$(FLAVOUR),test]'
ifneq ($(IS_GPU),)
	$(BIN)/pip uninstall -q -y onnxruntime
	$(BIN)/pip install -q --force-reinstall --no-deps "onnxruntime-gpu==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("onnxruntime-gpu"))')"
endif
	rm -f $(VENV)/.securegate-*
	touch $@

setup: $(INSTALLED)

# SoftHSM2 backs the PKCS#11 tests (in the fast tier too), nginx the mTLS front's test, chromium + chromium-driver
# the console's browser tests, npm fetches their axe-core (tests/axe.py); each installed only when missing.
# GStreamer's RTSP server (system python3 + gi) serves the camera tests' RTSP stream (tests/streams/rtsp_server.py).
export GST_CHECK = import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0"); \
  from gi.repository import Gst; Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in ("qtdemux", "h264parse", "rtph264pay"))
softhsm:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq softhsm2 >/dev/null; }

system-deps: softhsm
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nginx >/dev/null; }
	@/usr/bin/python3 -c "$$GST_CHECK" >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends python3-gi \
	    gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad >/dev/null; }
	@{ command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; } || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends npm >/dev/null; }

serve: setup
	$(BIN)/securegate serve $(ARGS)

test: setup system-deps
	SECUREGATE_MODELS=$${SECUREGATE_MODELS:-$(TEST_MODELS)} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Only what the fast tier uses: no Ray, nginx, GStreamer or Chromium (tests/conftest.py marks the tiers).
test-fast: setup softhsm
	SECUREGATE_MODELS=$${SECUREGATE_MODELS:-$(TEST_MODELS)} $(BIN)/python -m pytest -m fast $(PYTEST_ARGS)

bench: setup
	$(BIN)/pip install -q -e '.[$(FLAVOUR),bench]'
	SECUREGATE_MODELS=$${SECUREGATE_MODELS:-$(TEST_MODELS)} $(BIN)/python benchmarks/embed.py
