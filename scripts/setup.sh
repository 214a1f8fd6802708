#!/usr/bin/env bash
# One-time, idempotent machine set-up for twopc (Debian 12, run as root or with sudo).
#
# Installs: the Debian packages (PostgreSQL 15 + server headers, clang for bindgen, redis-server,
# sudo, pkg-config, chromium + chromedriver, strace, python3-psycopg2), the wasm32 target, cargo-pgrx 0.18.0,
# wasm-bindgen-cli 0.2.130, and registers PostgreSQL 15 with pgrx. Every step checks first
# and skips what is already there, so a second run on a ready machine takes seconds.
set -euo pipefail

PGRX_VERSION=0.18.0
WASM_BINDGEN_VERSION=0.2.130
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# strace: tests/tests/log_durability.rs traces the coordinator's fsyncs and sends.
# python3-psycopg2: tests/tests/native_twophase.rs drives native two-phase commit with a real
# XA client (psycopg's tpc_* API) that nobody here wrote.
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang redis-server sudo
  pkg-config chromium chromium-driver ca-certificates strace curl bzip2 python3-psycopg2)
# PostgreSQL's own regression test for prepared transactions (sql + expected output), run by
# tests/tests/native_twophase.rs as written and rewritten to the twopc functions. Taken from
# the Debian source package of PostgreSQL 15 (pinned by checksum), not copied into the tree.
PG_REGRESS_TARBALL=postgresql-15_15.18.orig.tar.bz2
PG_REGRESS_URL=http://deb.debian.org/debian/pool/main/p/postgresql-15/$PG_REGRESS_TARBALL
PG_REGRESS_SHA256=11df0df97fe3ea4ba9a791faaf39cee1d2fe571e78885b5b55d8517d27c323b4
PG_REGRESS_TOP=postgresql-15.18
PG_REGRESS_DIR=/var/cache/twopc/pg15-regress

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian's postgresql package starts a cluster on 5432 and redis on 6379; the project
  # never uses them (it starts its own on its own ports), so stop them to free memory.
  $SUDO systemctl disable --now redis-server 2>/dev/null || $SUDO service redis-server stop 2>/dev/null || true
  $SUDO systemctl disable --now postgresql 2>/dev/null || $SUDO service postgresql stop 2>/dev/null || true
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^rustfmt'; then rustup component add rustfmt; fi
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then rustup component add clippy; fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "installing cargo-pgrx $PGRX_VERSION (a few minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
  # Not --locked: the locked webpki-roots version is not on the registry (toolchain-facts.md).
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs '^pg15' "$PGRX_HOME/config.toml"; then
  log "registering PostgreSQL 15 with pgrx"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

if [ ! -s "$PG_REGRESS_DIR/sql/prepared_xacts.sql" ] || [ ! -s "$PG_REGRESS_DIR/expected/prepared_xacts.out" ]; then
  log "fetching PostgreSQL 15's regression test for prepared transactions"
  tmp="$(mktemp -d)"
  curl -fsS --retry 3 -o "$tmp/$PG_REGRESS_TARBALL" "$PG_REGRESS_URL"
  echo "$PG_REGRESS_SHA256  $tmp/$PG_REGRESS_TARBALL" | sha256sum -c --quiet -
  top="$PG_REGRESS_TOP"
  tar -xjf "$tmp/$PG_REGRESS_TARBALL" -C "$tmp" \
    "$top/src/test/regress/sql/prepared_xacts.sql" "$top/src/test/regress/expected/prepared_xacts.out"
  $SUDO mkdir -p "$PG_REGRESS_DIR/sql" "$PG_REGRESS_DIR/expected"
  $SUDO cp "$tmp/$top/src/test/regress/sql/prepared_xacts.sql" "$PG_REGRESS_DIR/sql/"
  $SUDO cp "$tmp/$top/src/test/regress/expected/prepared_xacts.out" "$PG_REGRESS_DIR/expected/"
  rm -rf "$tmp"
fi

log "ready"
