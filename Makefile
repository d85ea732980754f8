# Portcullis — the two quick-start commands are `make run` and `make test`.
# Both install what they need (scripts/setup.sh) on a Debian machine as root.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test setup build plugins lint bench bench-smoke bench-edge bench-refresh clean

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

## make test: the whole suite (unit, integration, plugin, lint), then the load
## harness in smoke mode (seconds, on the debug binaries cargo test built; it
## fails when the harness breaks, its numbers are not asserted).
test: setup plugins lint
	cargo test --all-targets
	@if [ -x plugins/test.sh ]; then bash plugins/test.sh; fi
	bash benches/load.sh --smoke

## make bench: all criterion micro-benches, the loopback load comparison with
## its edge cases (TLS, HTTP/2, handshakes, OpenID Provider tokens:
## benches/edge_load.sh) (release build; writes benches/RESULTS.md), then
## refresh throughput on SQLite and Postgres (writes benches/SESSION-RESULTS.md).
bench: setup plugins
	cargo bench --bench jwt_verify --bench plugin_call --bench session --bench canonical_path
	bash benches/load.sh
	BENCH_CRITERION=0 bash benches/refresh_load.sh

## make bench-smoke: only the smoke run of make test (writes target/bench-smoke.md).
bench-smoke: setup plugins
	bash benches/load.sh --smoke

## make bench-edge: only the edge cases of make bench (release build; replaces
## their sections of benches/RESULTS.md).
bench-edge: setup plugins
	bash benches/edge_load.sh

## make bench-refresh: session/refresh throughput on SQLite and Postgres, the
## revoked-sid check cost, and `cargo bench --bench session` (writes benches/SESSION-RESULTS.md).
bench-refresh: setup
	bash benches/refresh_load.sh

clean:
	cargo clean
	rm -rf plugins/target plugins/out
