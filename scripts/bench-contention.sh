#!/usr/bin/env bash
# Contention benchmark (not a test): release builds of everything, the whole stack on local
# servers, 16 and 64 clients on 2, 8 and 64 accounts, twopc against the native floor under the
# same contention in the same run. Writes coordinator/bench/CONTENTION.md.
#
# SKIP_INSTALL=1 skips `cargo pgrx install` (uses the pg_twopc_ext already installed on this
# machine, e.g. when someone else is testing with it). Every TWOPC_BENCH_* variable of
# tests/src/bin/twopc-bench-contention.rs passes through (seconds, rounds, cells, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  (cd pg_twopc_ext && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
fi
cargo build --release -p twopc-tests \
  --bin twopc-bench-contention --bin twopc-coordinator-under-test --bin twopc-redis-participant-under-test
mkdir -p coordinator/bench
TWOPC_BENCH_OUT="${TWOPC_BENCH_OUT:-coordinator/bench/CONTENTION.md}" \
  "${CARGO_TARGET_DIR:-target}/release/twopc-bench-contention"
