# Portcullis — the two quick-start commands are `make run` and `make test`.
# Both install what they need (scripts/setup.sh) on a Debian machine as root.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test setup build plugins lint bench bench-smoke clean

setup:
	@bash scripts/setup.sh

plugins: setup
	@if [ -x plugins/build.sh ]; then bash plugins/build.sh; fi

build: setup plugins
	cargo build --release --bins

## make run: build everything, start the demo backend + gateway, print curl commands.
run: build
	@bash scripts/run-demo.sh

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## make test: the whole suite (unit, integration, plugin, lint).
test: setup plugins lint
	cargo test --all-targets
	@if [ -x plugins/test.sh ]; then bash plugins/test.sh; fi

## make bench: criterion micro-benches + the loopback load comparison.
bench: setup plugins
	PORTCULLIS_SETUP_BENCH=1 bash scripts/setup.sh
	cargo bench --bench jwt_verify --bench plugin_call
	bash benches/load.sh

bench-smoke: setup plugins
	PORTCULLIS_SETUP_BENCH=1 bash scripts/setup.sh
	BENCH_SECONDS=2 bash benches/load.sh --smoke

clean:
	cargo clean
	rm -rf plugins/target plugins/out
