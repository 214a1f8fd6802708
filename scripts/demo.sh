#!/usr/bin/env bash
# Starts the twopc demo locally: builds everything, then runs PostgreSQL 15 (with the
# extension), Redis and the twopc services until Ctrl-C. Runs scripts/setup.sh first, so this is
# the only command a new machine needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[demo] building the extension and installing it into PostgreSQL 15" >&2
(cd pg_twopc_ext && cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
echo "[demo] building the web app" >&2
bash scripts/build-web.sh
echo "[demo] building the services" >&2
cargo build --workspace --exclude pg_twopc_ext --exclude twopc-web --bins
exec target/debug/twopc-demo
