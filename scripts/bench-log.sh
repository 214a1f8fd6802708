#!/usr/bin/env bash
# Decision-log benchmark (not a test): release builds of everything, the whole stack on local
# servers, once per decision log (the file log; the PostgreSQL log; the PostgreSQL log with a
# synchronous standby; the PostgreSQL log with three coordinators sharing it and the load),
# throughput, latency and coordinator CPU at concurrency 1, 3 and 64, rounds alternating
# between the logs in the same run. Writes coordinator/bench/DECISION_LOG.md.
#
# SKIP_INSTALL=1 skips `cargo pgrx install` (uses the pg_twopc_ext already installed on this
# machine, e.g. when someone else is testing with it). Every TWOPC_BENCH_* variable of
# tests/src/bin/twopc-bench-log.rs passes through (seconds, rounds, levels, variants, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  (cd pg_twopc_ext && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
fi
cargo build --release -p twopc-tests \
  --bin twopc-bench-log --bin twopc-coordinator-under-test --bin twopc-redis-participant-under-test
mkdir -p coordinator/bench
TWOPC_BENCH_OUT="${TWOPC_BENCH_OUT:-coordinator/bench/DECISION_LOG.md}" \
  "${CARGO_TARGET_DIR:-target}/release/twopc-bench-log"
