# SpatialAlign: `make demo` and `make test` set everything up on a fresh clone.
# uv is bootstrapped from PyPI into .uv/, the project venv lives in .venv/.

PY ?= python3
UV := .uv/bin/uv
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
# let Python cache bytecode in the venv: importing torch/transformers uncached costs ~15 s a process
unexport PYTHONDONTWRITEBYTECODE

.PHONY: all venv build demo test test-rust test-py bench bench-detect fuzz lint fmt clean

all: test

$(UV):
	$(PY) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv

# dependencies (re)installed when pyproject.toml changes
$(STAMP): pyproject.toml | $(UV)
	test -x $(VPY) || $(UV) venv --quiet --python $(PY) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -r pyproject.toml --all-extras
	touch $(STAMP)

venv: $(STAMP)

# (re)build the Rust extension into the venv (incremental)
build: $(STAMP)
	VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/maturin develop --quiet --release --uv

demo: build
	$(VENV)/bin/spatialalign demo demo_out

test-rust:
	cargo test --workspace

test-py: build
	$(VENV)/bin/pytest -q

test: test-rust test-py

bench: build
	cargo bench -p dsr_geom --bench dsr_batch
	$(VENV)/bin/pytest tests/benchmarks --benchmark-enable -q -p no:randomly

# GroundingDINO: gdino-onnx (batched) vs gdino-torch (per frame), real model size, random weights
bench-detect: build
	$(VPY) scripts/bench_detect.py $(BENCH_DETECT_ARGS)

# coverage-guided fuzzing of dsr_batch (cargo-fuzz, libFuzzer; needs a nightly
# toolchain, or falls back to RUSTC_BOOTSTRAP=1 on stable). Opt-in; FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 600
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd crates/dsr_geom/fuzz && \
	if rustup run nightly rustc --version >/dev/null 2>&1; then TC=+nightly; else TC=; export RUSTC_BOOTSTRAP=1; fi; \
	cargo $$TC fuzz run dsr_batch -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1

lint: $(STAMP)
	cargo fmt --all -- --check
	$(VENV)/bin/ruff check python tests
	$(VENV)/bin/ruff format --check python tests

fmt: $(STAMP)
	cargo fmt --all
	$(VENV)/bin/ruff format python tests

clean:
	rm -rf target $(VENV) demo_out
