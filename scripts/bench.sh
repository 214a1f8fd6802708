#!/usr/bin/env bash
# Coordinator benchmark (not a test): release builds of everything, the whole stack on local
# servers, throughput/latency against the native floor measured in the same run, and the
# coordinator's memory with 10,000 transactions in flight. Writes coordinator/bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
(cd pg_twopc_ext && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
cargo build --release -p twopc-tests --bins
mkdir -p coordinator/bench
TWOPC_BENCH_OUT=coordinator/bench/RESULTS.md target/release/twopc-bench
