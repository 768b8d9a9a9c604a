# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Oldest Python with torch 2.13.0 wheels, kept in one place: setup.cfg's python_requires.
PYTHON_MIN := $(shell sed -n 's/^python_requires *= *>= *//p' setup.cfg)
# Empty: scripts/install_torch.py picks the build (CPU on Linux without an NVIDIA GPU, else PyPI's).
# A URL: torch comes from that index, e.g. https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=

.PHONY: demo engine-demo test bench quality clean

$(STAMP): setup.cfg pyproject.toml
	@found=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || found=; \
	need=$(PYTHON_MIN); \
	case "$$found" in [0-9]*.[0-9]*) ;; *) found="no Python" ;; esac; \
	if [ "$$found" = "no Python" ] || [ $${found%%.*} -lt $${need%%.*} ] || \
	   { [ $${found%%.*} -eq $${need%%.*} ] && [ $${found#*.} -lt $${need#*.} ]; }; then \
	  echo "stylegan3-hubness needs Python >= $$need; found $$found at $(PYTHON): set PYTHON=python$$need" >&2; \
	  exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "setuptools<81" wheel
	# Before `.[test]`, whose bare `torch` requirement would pull PyPI's CUDA build on a CPU-only Linux machine.
	TORCH_INDEX='$(TORCH_INDEX)' $(BIN)/python scripts/install_torch.py
	$(BIN)/python -m pip install -q -e '.[test]'
	# stylegan2-ada runtime (dnnlib, torch_utils, legacy, training): the embedded network and the integration tests.
	$(BIN)/python -m pip install -q --no-deps draggan==1.1.6
	touch $(STAMP)

# Random, truncation and hubness grids from the embedded digits network, the paper's figures, and last
# THE figure to look at: the four samplers side by side from one pool, titled with their quality.
demo: $(STAMP)
	$(BIN)/python gen_images_hub.py --seeds=0-9999 --sampler=random --num=64 --grid --clean --outdir=out/random
	$(BIN)/python gen_images_hub.py --seeds=0-9999 --sampler=truncation --trunc=0.7 --num=64 --grid --clean --outdir=out/truncation
	$(BIN)/python gen_images_hub.py --seeds=0-9999 --sampler=hubness --t=15 --num=64 --grid --clean --outdir=out/hubness
	$(BIN)/python hubness_report.py --t=15 --outdir=out/report
	$(BIN)/python compare_samplers.py --t=15 --t-lq=1 --outdir=out/compare
	@echo "Look at out/compare/comparison.png: random | truncation 0.7 | hubness m >= 15 | hubness-lq m <= 1"

engine-demo: $(STAMP)
	$(BIN)/python -m extensions.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/knn.py

quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py --seeds 0-4

clean:
	rm -rf $(VENV) build *.egg-info
