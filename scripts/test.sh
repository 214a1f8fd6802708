#!/usr/bin/env bash
# Runs every twopc test: formatting, clippy, the wire protocol and unit tests, the extension's
# #[pg_test]s inside PostgreSQL, the psql golden tests and the end-to-end tests against real
# PostgreSQL 15 and Redis servers that the tests start themselves, and the web app build.
# Runs scripts/setup.sh first, so this is the only command a new machine needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGRX_PGDATA=/tmp/twopc-pgrx-test-data

step() { printf '\n=== %s ===\n' "$*" >&2; }

# Every secret the end-to-end tests make, and every log they write, for the last step's search
# (tests/src/secrets.rs, scripts/check-secrets.sh).
SUITE_DIR="$(pwd)/target/twopc-suite"
rm -rf "$SUITE_DIR"
mkdir -p "$SUITE_DIR/logs"
export TWOPC_SECRETS_FILE="$SUITE_DIR/secrets.txt"
export TWOPC_SUITE_LOGS="$SUITE_DIR/logs"
: > "$TWOPC_SECRETS_FILE"

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (host crates and the extension)"
cargo clippy --workspace --exclude twopc-web --all-targets -- -D warnings
step "clippy (web, wasm32)"
cargo clippy -p twopc-web --target wasm32-unknown-unknown -- -D warnings

step "extension tests inside PostgreSQL (cargo pgrx test)"
# PostgreSQL refuses to run as root: the test cluster runs as postgres in a directory it owns.
rm -rf "$PGRX_PGDATA"
mkdir -p "$PGRX_PGDATA"
chown postgres:postgres "$PGRX_PGDATA"
(cd pg_twopc_ext && cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_PGDATA")

# cargo pgrx test installs its own pg_test build; install the real one after it.
step "install the extension into PostgreSQL 15 (the build the end-to-end tests load)"
(cd pg_twopc_ext && cargo pgrx install --pg-config "$PG_CONFIG")

step "the wire protocol crate builds for wasm32"
cargo build -p twopc-protocol --target wasm32-unknown-unknown

step "web app state logic (host unit tests)"
cargo test -p twopc-web --lib

step "build the web app (wasm32 + wasm-bindgen)"
bash scripts/build-web.sh

step "workspace tests (unit, golden, end-to-end against real servers)"
# The output carries every coordinator's and participant's log (their stderr is the tests').
cargo test --workspace --exclude pg_twopc_ext --exclude twopc-web 2>&1 | tee "$SUITE_DIR/logs/cargo-test.log"

step "no test secret in any log, event or answer of the suite"
bash scripts/check-secrets.sh "$TWOPC_SECRETS_FILE" "$TWOPC_SUITE_LOGS"

step "all tests passed"
