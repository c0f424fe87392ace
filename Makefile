# Local workflow for ridelock. PostgreSQL and Redis come from
# scripts/services.sh (profiles dev and test; sentinel and rcluster for
# `make cluster REDIS=…`; see that script).
#
# Each recipe runs in a single bash (.ONESHELL) with -e, so the env file that
# services.sh writes can be sourced and seen by the later lines, and the first
# failing line fails the target.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := test

SERVICES := bash scripts/services.sh
FMT_CHECK := cargo fmt --all -- --check
# --workspace: the server and the load-test client (loadtest/, its own crate) alike.
CLIPPY := cargo clippy --workspace --all-targets -- -D warnings

.PHONY: run cluster test loadtest bench services services-down clean-services fmt lint

# Build and serve on :3000 against the dev services, after migrate + seed.
run:
	$(SERVICES) up dev
	. var/dev/env
	# The binary applies production rules unless told otherwise (docs/security.md).
	export RIDELOCK_ENV=local
	export RUST_LOG="$${RUST_LOG:-info}"
	# Thousands of open client connections need file descriptors: take what the hard limit allows.
	ulimit -n "$$(ulimit -Hn)" || true
	cargo build --release
	./target/release/ridelock migrate
	./target/release/ridelock seed
	exec ./target/release/ridelock serve

# Three nodes (n1-n3 on :3001-3003) behind nginx on :3000, on the dev services, after
# migrate + seed; in the foreground, Ctrl-C stops it all. See scripts/cluster.sh.
# REDIS=sentinel runs them on the sentinel profile (a primary, two replicas, three
# Sentinels), REDIS=cluster on rcluster (a six-node Redis Cluster); the nodes get
# RIDELOCK_REDIS__MODE/NODES/SERVICE_NAME from its env file, which needs a server that
# supports redis.mode.
cluster:
	REDIS="$(REDIS)" bash scripts/cluster.sh

# What CI runs (.ci/run): format check, lints, every test target, the api and cluster suites on
# Redis Sentinel and on Redis Cluster, then schemathesis against real servers in both auth modes
# (scripts/fuzz.sh; FUZZ_EXAMPLES=200 for a deeper run).
test:
	$(SERVICES) up test
	$(SERVICES) up sentinel >/dev/null
	$(SERVICES) up rcluster >/dev/null
	. var/test/env
	export RIDELOCK_ENV=test
	$(FMT_CHECK)
	$(CLIPPY)
	cargo test --workspace --all-targets
	# The api and cluster suites again with redis.mode sentinel, then cluster, on those
	# profiles' servers (docs/testing.md); the chaos suite fails their primaries itself.
	for profile in sentinel rcluster; do
	  ( . "var/$$profile/env" && cargo test --test api --test cluster )
	done
	bash scripts/fuzz.sh target/debug/ridelock

# Every loadtest scenario against a running server (`make run` in another terminal).
# LOADTEST_ARGS adds options, e.g. LOADTEST_ARGS="--url http://127.0.0.1:3001 --riders 32".
loadtest:
	export RIDELOCK_ENV=local
	cargo build --release
	for scenario in tutorial same-booking driver-contention conflict actors lifecycle; do
	  ./target/release/ridelock loadtest --scenario "$$scenario" $(LOADTEST_ARGS)
	done

# This machine's limits (redis-benchmark, pgbench, wrk) and RideLock's figures in one run,
# against the `make run` server; see BENCHMARKS.md.
bench:
	bash scripts/bench.sh

services:
	$(SERVICES) up dev

services-down:
	$(SERVICES) down dev

clean-services:
	$(SERVICES) purge dev
	$(SERVICES) purge test
	$(SERVICES) purge chaos
	$(SERVICES) purge sentinel
	$(SERVICES) purge rcluster
	rm -rf var/

fmt:
	cargo fmt --all

lint:
	$(FMT_CHECK)
	$(CLIPPY)
