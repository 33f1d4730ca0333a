# gnc — set-up, demo and tests. Everything is project-local: the libtorch of the PyPI torch
# wheel in .venv, the data sets in data/, build outputs in target/. Every target is
# idempotent: a second run reuses what is there.

SHELL := /bin/bash
PYTHON ?= python3
TORCH_VERSION := 2.11.0
VENV := .venv
VENV_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
CARGO_CONFIG := .cargo/config.toml
DATA_STAMP := data/fashion-mnist/SOURCE.txt data/mnist/SOURCE.txt
CARGO := cargo

.PHONY: demo test setup venv data build lint system-packages nspawn-root bench bench-mpi bench-shm bench-control bench-methods bench-ne-f1 bench-diagnostics bench-regime bench-byo clean-runs

## The main job: GNC on real Fashion-MNIST (examples/demo.toml); prints the final hash.
demo: setup build
	./target/release/gncctl run examples/demo.toml

## The whole test suite (unit, reference, end-to-end), after format and lint checks.
## Every test binary runs even after a failure; the summary names each failed test.
## Fault injection (GNC_TEST_KILL_AT, GNC_TEST_HANG_AT) and the check that every tensor gnc
## writes in place is written whole (gnc-kernels' check-written) are in the test build only.
TEST_FEATURES := --features gnc-worker/fault-injection,gnc-kernels/check-written
test: setup lint
	-@$(MAKE) --no-print-directory nspawn-root
	$(CARGO) build --release --workspace $(TEST_FEATURES)
	@set -o pipefail; $(CARGO) test --release --workspace $(TEST_FEATURES) --no-fail-fast 2>&1 | tee target/test.log; \
	status=$$?; scripts/test-summary.sh target/test.log && exit $$status

setup: system-packages venv $(CARGO_CONFIG) data

## PyTorch-side tools: `onnx`, which torch.onnx.export needs (examples/byo/export.py,
## tests/onnx.rs). A stamp of its own, so a venv made before it gains it.
ONNX_VERSION := 1.23.2
VENV_TOOLS := $(VENV)/.onnx-$(ONNX_VERSION)
venv: $(VENV_STAMP) $(VENV_TOOLS)

$(VENV_TOOLS): $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check onnx==$(ONNX_VERSION)
	touch $@

$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION) numpy
	touch $@

$(CARGO_CONFIG): $(VENV_STAMP) scripts/cargo-config.sh
	./scripts/cargo-config.sh

data: $(VENV_STAMP)
	$(VENV)/bin/python scripts/fetch_data.py

build: system-packages $(CARGO_CONFIG)
	$(CARGO) build --release --workspace

lint: system-packages $(CARGO_CONFIG)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets $(TEST_FEATURES) -- -D warnings

## Benchmarks (about an hour); results in bench/RESULTS.md: GNC's cost per iteration in
## whole runs (the issue-10 matrix) and in instructions (callgrind), the reproducibility
## levels' cost, then one iteration against a PyTorch reference, then the portable matrix
## product per ISA against libtorch's.
bench: setup build
	$(VENV)/bin/python bench/run_cost_bench.py
	$(VENV)/bin/python bench/run_instructions.py
	$(VENV)/bin/python bench/run_levels_bench.py
	$(VENV)/bin/python bench/run_step_bench.py
	$(VENV)/bin/python bench/run_gemm_bench.py

## Data-plane benchmarks (minutes): all-reduce vs memcpy and gloo, 2 processes vs 1.
bench-shm: setup build
	$(VENV)/bin/python bench/run_shm_bench.py

## Control-plane benchmark (a few minutes): training under gncd with 200 status clients.
bench-control: setup build
	$(VENV)/bin/python bench/run_control_bench.py

## MPI all-reduce benchmark (a minute): gnc's deterministic all-reduce vs MPI_Allreduce.
bench-mpi: setup build
	$(VENV)/bin/python bench/run_mpi_bench.py

## Method comparison (about 40 minutes): the Fashion-MNIST examples trained to their end.
bench-methods: setup build
	$(VENV)/bin/python bench/run_methods.py

bench-diagnostics: setup build
	$(VENV)/bin/python bench/run_diagnostics.py

bench-ne-f1: setup build
	$(VENV)/bin/python bench/run_ne_f1.py

## The user's own network and data against the built-in ones (minutes).
bench-byo: setup build
	$(VENV)/bin/python bench/run_byo_bench.py

## GNC in its paper's regime (issue 24's pre-registered designs; hours, resumable: each
## invocation trains for --budget-minutes and the next continues from the checkpoints).
## REGIME_DESIGN: d2-pilot, d2-matrix, d2-full (the one still running) or d1.
REGIME_DESIGN ?= d2-full
bench-regime: setup build
	$(VENV)/bin/python bench/run_regime.py --design $(REGIME_DESIGN)

## Debian packages: OpenMPI and libclang (the `mpi` crate's bindings) to build gnc-mpi;
## systemd-nspawn and debootstrap for the boot of gncd.service under a real systemd
## (tests/systemd_boot.rs, which says it is skipped where they are missing); sshd for hosts
## made of network namespaces (tests/separate_hosts.rs, which only runs its own, on addresses
## inside its namespaces). Installed as root (CI); elsewhere install them yourself.
SYSTEM_PACKAGES := libopenmpi-dev openmpi-bin libclang-dev systemd-container debootstrap \
	openssh-server
system-packages:
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "not root with apt-get: not installing $(SYSTEM_PACKAGES)"; exit 0; fi; \
	missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || apt-get install -y -q $$missing >/dev/null \
		|| { apt-get update -qq && apt-get install -y -q $$missing >/dev/null; }

## A minimal Debian bookworm root (about 240 MB, 1-2 minutes) for tests/systemd_boot.rs.
NSPAWN_ROOT := target/nspawn/bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
nspawn-root: $(NSPAWN_ROOT).complete

$(NSPAWN_ROOT).complete:
	@command -v debootstrap >/dev/null || { echo "no debootstrap: the boot test will be skipped"; exit 1; }
	rm -rf $(NSPAWN_ROOT) $(NSPAWN_ROOT).tmp
	mkdir -p $(dir $(NSPAWN_ROOT))
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm \
		$(NSPAWN_ROOT).tmp $(DEBIAN_MIRROR) > $(NSPAWN_ROOT).log 2>&1 \
		|| { tail -5 $(NSPAWN_ROOT).log; exit 1; }
	mv $(NSPAWN_ROOT).tmp $(NSPAWN_ROOT)
	touch $@

clean-runs:
	rm -rf runs
