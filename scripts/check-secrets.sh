#!/usr/bin/env bash
# The suite's search for leaked secrets (issue 19): every token and password the tests made
# (listed in $1, one per line, by tests/src/secrets.rs) must appear in none of the logs in $2
# (the whole test run's output, and every PostgreSQL and redis-server log the harness kept).
# Reports where a secret was found, never the secret.
set -euo pipefail
secrets="$1"
logs="$2"
count=$(sort -u "$secrets" | grep -c . || true)
# A search for nothing cannot fail: the suite must have registered its secrets.
if [ "$count" -lt 20 ]; then
    echo "check-secrets: only $count secrets registered in $secrets; the harness did not record them" >&2
    exit 1
fi
files=$(find "$logs" -type f | wc -l)
if [ "$files" -lt 10 ]; then
    echo "check-secrets: only $files log files in $logs; the logs were not kept" >&2
    exit 1
fi
if hits=$(grep -rlF -f <(sort -u "$secrets") "$logs"); then
    echo "check-secrets: a test secret appears in these logs:" >&2
    for f in $hits; do
        echo "  $f: $(grep -cF -f <(sort -u "$secrets") "$f") line(s)" >&2
    done
    exit 1
fi
echo "check-secrets: none of $count secrets appears in $files logs ($(cat "$logs"/* | wc -l) lines)" >&2
