#!/usr/bin/env bash
# Starts the twopc demo locally: builds everything, then runs PostgreSQL 15 (with pg_twopc_ext
# and its participant endpoint), redis-server with the Redis participant, and the coordinator
# serving the web app, until Ctrl-C. Runs scripts/setup.sh first, so this is the only command a
# new machine needs. `--ha`: three coordinators (7700, 7701, 7702) on a decision log in a
# PostgreSQL cluster of its own with a synchronous streaming standby. `--sharded`: bank on two
# PostgreSQL clusters and ledger on three redis-servers, as shards (PG_URLS, REDIS_URLS).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[demo] building the extension and installing it into PostgreSQL 15" >&2
(cd pg_twopc_ext && cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null)
echo "[demo] building the web app" >&2
bash scripts/build-web.sh
echo "[demo] building the services" >&2
cargo build -p twopc-tests -p twopc-coordinator -p twopc-redis-participant --bins
exec target/debug/twopc-demo "$@"
