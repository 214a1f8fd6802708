#!/usr/bin/env bash
# Builds the Yew app for wasm32 and generates its JS glue with wasm-bindgen into web/dist/,
# where the coordinator serves it from. Offline: no trunk, only cargo + wasm-bindgen-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p twopc-web --target wasm32-unknown-unknown --release
mkdir -p web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist \
  target/wasm32-unknown-unknown/release/twopc-web.wasm
cp web/index.html web/dist/index.html
echo "[build-web] web/dist ready" >&2
