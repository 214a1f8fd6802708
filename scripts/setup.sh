#!/usr/bin/env bash
# One-time, idempotent machine set-up for twopc (Debian 12, run as root or with sudo).
#
# Installs: the Debian packages (PostgreSQL 15 + server headers, clang for bindgen, redis-server,
# sudo, pkg-config, chromium + chromedriver, strace), the wasm32 target, cargo-pgrx 0.18.0,
# wasm-bindgen-cli 0.2.130, and registers PostgreSQL 15 with pgrx. Every step checks first
# and skips what is already there, so a second run on a ready machine takes seconds.
set -euo pipefail

PGRX_VERSION=0.18.0
WASM_BINDGEN_VERSION=0.2.130
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# strace: tests/tests/log_durability.rs traces the coordinator's fsyncs and sends.
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang redis-server sudo
  pkg-config chromium chromium-driver ca-certificates strace)

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

log "ready"
