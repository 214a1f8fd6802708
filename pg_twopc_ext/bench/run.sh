#!/usr/bin/env bash
# Benchmark: twopc.prepare() + twopc.commit_prepared() vs native PREPARE TRANSACTION /
# COMMIT PREPARED, same one-row UPDATE, pgbench, 8 clients.
#
# Usage (as root, from anywhere):  pg_twopc_ext/bench/run.sh [--no-install]
#   env: CLIENTS (8), DURATION seconds per run (20), ROUNDS (2 x [native, twopc, twopc prepared], alternating
#        so that load from other processes hits both alike), WARMUP seconds per script (5),
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
WARMUP="${WARMUP:-5}"
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

run() { # $1 = script, $2 = seconds, $3 = protocol (default simple); prints tps
  local out
  out="$("$PG_BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -M "${3:-simple}" -c "$CLIENTS" \
    -j "$CLIENTS" -T "$2" -f "$HERE/$1" postgres 2>&1 || true)"
  if grep -q "error" <<<"$out"; then
    echo "[bench] $1: pgbench reported errors:" >&2
    grep "error" <<<"$out" | sort | uniq -c | head -5 >&2
  fi
  awk '/^tps = / { print $3; exit }' <<<"$out"
}

# Warm-up (not reported): caches, the extension's first-call plans, the tracking index.
run native.sql "$WARMUP" >/dev/null
run twopc.sql "$WARMUP" >/dev/null
run twopc-bound.sql "$WARMUP" prepared >/dev/null

declare -a NATIVE TWOPC BOUND
for r in $(seq 1 "$ROUNDS"); do
  n="$(run native.sql "$DURATION")"; echo "[bench] round $r native: $n tps" >&2; NATIVE+=("$n")
  t="$(run twopc.sql "$DURATION")";  echo "[bench] round $r twopc:  $t tps" >&2; TWOPC+=("$t")
  b="$(run twopc-bound.sql "$DURATION" prepared)"
  echo "[bench] round $r twopc, prepared statements: $b tps" >&2; BOUND+=("$b")
done

mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.1f", s / NR }'; }
N="$(mean "${NATIVE[@]}")"
T="$(mean "${TWOPC[@]}")"
B="$(mean "${BOUND[@]}")"
RATIO="$(awk -v t="$T" -v n="$N" 'BEGIN { printf "%.3f", t / n }')"
BRATIO="$(awk -v t="$B" -v n="$N" 'BEGIN { printf "%.3f", t / n }')"
LEFT="$("${PSQL[@]}" -Atc "SELECT count(*) FROM pg_prepared_xacts")"
TRACKED="$("${PSQL[@]}" -Atc "SELECT count(*) FROM twopc.tracking")"
HIST="$("${PSQL[@]}" -Atc "SELECT count(*) FROM twopc.history")"
FATALS="$(grep -c -E 'FATAL|PANIC' "$DIR/log" || true)"

echo "native PREPARE/COMMIT PREPARED: $N tps"
echo "twopc.prepare/commit_prepared:  $T tps"
echo "ratio twopc/native:             $RATIO"
echo "twopc, prepared statements:     $B tps (ratio $BRATIO)"

cat > "$HERE/RESULTS.md" <<MD
# pg_twopc_ext benchmark

Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') ($(nproc) cores, PostgreSQL
$("$PG_BIN/postgres" --version | awk '{print $3}'), release build of the extension).

pgbench, \`-M simple\`, $CLIENTS clients, $DURATION s per run after a $WARMUP s warm-up of each, $ROUNDS
alternating rounds, scale $SCALE,
default \`synchronous_commit = on\`, fresh cluster. Each transaction:
\`BEGIN; UPDATE pgbench_accounts ...;\` then either

* native: \`PREPARE TRANSACTION 'twopc:bench:n-<client>-<random>'; COMMIT PREPARED '...';\` ([native.sql](native.sql))
* twopc: \`SELECT twopc.prepare('twopc:bench:t-<client>-<random>'); SELECT twopc.commit_prepared('...');\` ([twopc.sql](twopc.sql))
* twopc, prepared statements: the same with \`pgbench -M prepared\` (gid as a bound parameter),
  which is how the Postgres participant issues them (tokio-postgres); native PREPARE TRANSACTION
  cannot take a parameter, so the native script must use the simple protocol
  ([twopc-bound.sql](twopc-bound.sql)).

Gids are twopc-format (\`twopc:<coordinator>:<txid>\`) as the participant uses them.

| run | native tps | twopc tps | ratio | twopc, prepared statements | ratio |
|---|---|---|---|---|---|
$(for i in "${!NATIVE[@]}"; do echo "| round $((i + 1)) | ${NATIVE[$i]} | ${TWOPC[$i]} | $(awk -v t="${TWOPC[$i]}" -v n="${NATIVE[$i]}" 'BEGIN { printf "%.3f", t / n }') | ${BOUND[$i]} | $(awk -v t="${BOUND[$i]}" -v n="${NATIVE[$i]}" 'BEGIN { printf "%.3f", t / n }') |"; done)
| **mean** | **$N** | **$T** | **$RATIO** | **$B** | **$BRATIO** |

**Ratio twopc / native: $RATIO** (target ≥ 0.9).

Load average when the runs ended: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared with
other builds and tests, so single rounds are noisy; rounds alternate to spread that noise).

After the runs: $LEFT prepared transactions left, $TRACKED tracking rows, $HIST history rows,
$FATALS FATAL/PANIC lines in the server log.

## Where the difference comes from

* **WAL flushes are equal.** The tracking row is written inside the prepared transaction (PREPARE
  flushes it, no extra flush) and the history row is committed with \`synchronous_commit = off\`
  for that one implicit transaction (COMMIT PREPARED has already flushed the outcome; see
  src/twophase.rs). Measured with \`pg_stat_wal\` during development: 0.70 (native) vs 0.72
  (twopc) \`fdatasync\` calls per transaction; the function path writes ~1.6 kB of WAL per
  transaction against ~0.9 kB (tracking + history rows and their index entries, one more commit
  record).
* **CPU is not.** With \`fsync = off\` at 1 client a native transaction took ~0.065 ms and the
  function path ~0.10-0.12 ms: each \`SELECT twopc.f(...)\` goes through parse, plan, executor and
  a snapshot where the native statements are utility commands, and the functions add two heap
  inserts, two index inserts and an index probe (in a \`perf\` profile of the backend, the
  function bodies including FinishPreparedTransaction were ~10-15 % of its CPU; planning and
  executing the SELECTs about as much again). Already done to cut it: no SPI on the hot path
  (the gid-in-use probe is \`LookupGXact\`, not a query over \`pg_prepared_xacts\` — that query's
  planning alone was ~20 % of the backend's CPU), direct heap inserts instead of SPI, no
  tracking-index lookup in commit_prepared for twopc-format gids.
* **WAL volume, and so the length of each flush, is not.** \`pg_walinspect\` over 2400
  transactions right after a checkpoint: native wrote PREPARE 317 B + COMMIT PREPARED 42 B +
  the UPDATE per transaction; the function path adds two heap inserts (394 B together while both
  rows carried a 64 B \`name\`; \`history.finished_by\` is \`text\` since), two btree leaf inserts (147 B) plus, after each
  checkpoint, a full-page image for every leaf of the random-key gid indexes it touches (4.5 kB
  per transaction in that window, falling off as the leaves get touched), a 195 B larger PREPARE
  record (two more lock records) and a 34 B commit record for the history row. Flushes are
  serialized and took ~0.29 ms instead of ~0.23 ms each, which alone costs about 20 % of
  throughput when both runs keep the WAL device ~80 % busy.
* **This machine is CPU-bound.** 2 cores, 8 clients plus pgbench, and other sessions' builds
  and test suites running at the same time (load average above): throughput follows CPU per
  transaction here, so the 30-50 µs show up in the ratio. With idle cores the run is bound by
  WAL flushes: equal in number, longer by the extra WAL volume above. The prepared-statement column removes the
  per-call parse/plan cost (it also prepares the UPDATE, which the native script cannot).
MD
echo "[bench] wrote $HERE/RESULTS.md" >&2
