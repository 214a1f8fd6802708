#!/usr/bin/env bash
# Benchmark: twopc.prepare() + twopc.commit_prepared() vs native PREPARE TRANSACTION /
# COMMIT PREPARED, same one-row UPDATE, pgbench, 8 clients.
#
# Usage (as root, from anywhere):  pg_twopc_ext/bench/run.sh [--no-install]
#   env: CLIENTS (8), DURATION seconds per run (20), ROUNDS (2: native, twopc, native, twopc),
#        SCALE (10).
# Installs a release build of the extension into the system PostgreSQL 15 first (unless
# --no-install), starts a fresh throwaway cluster under /tmp as the postgres user, runs the
# rounds alternately, prints tps and the ratio, and writes bench/RESULTS.md.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
CLIENTS="${CLIENTS:-8}"
DURATION="${DURATION:-20}"
ROUNDS="${ROUNDS:-2}"
SCALE="${SCALE:-10}"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" != "--no-install" ]; then
  echo "[bench] installing a release build of pg_twopc_ext" >&2
  (cd "$HERE/.." && cargo pgrx install --release --pg-config "$PG_BIN/pg_config" >/dev/null)
fi

DIR="$(mktemp -d /tmp/twopc-bench-XXXXXX)"
chmod 755 "$DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() {
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

as_pg "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
max_connections = 50
max_prepared_transactions = 32
shared_buffers = '256MB'
CONF
as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null

PSQL=("$PG_BIN/psql" -X -q -h "$DIR" -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION pg_twopc_ext"
"$PG_BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1

run() { # $1 = script; prints tps
  "$PG_BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -M simple -c "$CLIENTS" -j "$CLIENTS" \
    -T "$DURATION" -f "$HERE/$1" postgres 2>&1 \
    | awk '/^tps = / { print $3; exit }'
}

declare -a NATIVE TWOPC
for r in $(seq 1 "$ROUNDS"); do
  n="$(run native.sql)"; echo "[bench] round $r native: $n tps" >&2; NATIVE+=("$n")
  t="$(run twopc.sql)";  echo "[bench] round $r twopc:  $t tps" >&2; TWOPC+=("$t")
done

mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.1f", s / NR }'; }
N="$(mean "${NATIVE[@]}")"
T="$(mean "${TWOPC[@]}")"
RATIO="$(awk -v t="$T" -v n="$N" 'BEGIN { printf "%.3f", t / n }')"
LEFT="$("${PSQL[@]}" -Atc "SELECT count(*) FROM pg_prepared_xacts")"
TRACKED="$("${PSQL[@]}" -Atc "SELECT count(*) FROM twopc.tracking")"
HIST="$("${PSQL[@]}" -Atc "SELECT count(*) FROM twopc.history")"
FATALS="$(grep -c -E 'FATAL|PANIC' "$DIR/log" || true)"

echo "native PREPARE/COMMIT PREPARED: $N tps"
echo "twopc.prepare/commit_prepared:  $T tps"
echo "ratio twopc/native:             $RATIO"

cat > "$HERE/RESULTS.md" <<MD
# pg_twopc_ext benchmark

Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') ($(nproc) cores, PostgreSQL
$("$PG_BIN/postgres" --version | awk '{print $3}'), release build of the extension).

pgbench, \`-M simple\`, $CLIENTS clients, $DURATION s per run, $ROUNDS alternating rounds, scale $SCALE,
default \`synchronous_commit = on\`, fresh cluster. Each transaction:
\`BEGIN; UPDATE pgbench_accounts ...;\` then either

* native: \`PREPARE TRANSACTION 'n-<client>-<random>'; COMMIT PREPARED '...';\` ([native.sql](native.sql))
* twopc: \`SELECT twopc.prepare('t-<client>-<random>'); SELECT twopc.commit_prepared('...');\` ([twopc.sql](twopc.sql))

| run | native tps | twopc tps |
|---|---|---|
$(for i in "${!NATIVE[@]}"; do echo "| round $((i + 1)) | ${NATIVE[$i]} | ${TWOPC[$i]} |"; done)
| **mean** | **$N** | **$T** |

**Ratio twopc / native: $RATIO** (target ≥ 0.9).

After the runs: $LEFT prepared transactions left, $TRACKED tracking rows, $HIST history rows,
$FATALS FATAL/PANIC lines in the server log.

Why the function path keeps up: the tracking row is written inside the prepared transaction
(no extra WAL flush: PREPARE flushes it), and the history row is committed with
\`synchronous_commit = off\` for that one implicit transaction (COMMIT PREPARED has already
flushed the outcome; see src/twophase.rs). So both paths do two WAL flushes per transaction;
the function path adds two heap inserts, two index inserts, a commit record and a
\`pg_prepared_xacts\` probe.
MD
echo "[bench] wrote $HERE/RESULTS.md" >&2
