# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "setuptools<81" wheel
	# CPU build of torch; a bare `torch` requirement would pull several GB of CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	# stylegan2-ada runtime (dnnlib, torch_utils, legacy, training) used by the integration tests.
	$(BIN)/python -m pip install -q --no-deps draggan==1.1.6
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m extensions.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/knn.py

clean:
	rm -rf $(VENV) build *.egg-info
