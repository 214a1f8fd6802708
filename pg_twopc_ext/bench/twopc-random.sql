\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set rnd random(1, 1000000000000000)
-- Worst case for the gid indexes: client-chosen random ids (every insert lands on a random
-- leaf page, and after each checkpoint its first change writes a full-page image). The UPDATE
-- returns the same (unused) value as in the other scripts, so that it costs the same.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
  RETURNING 'twopc' || ':' || 'bench' || ':' || 'x-' || pg_catalog.txid_current() AS unused \gset
SELECT twopc.prepare('twopc:bench:x-:client_id-:rnd');
SELECT twopc.commit_prepared('twopc:bench:x-:client_id-:rnd');
