\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
-- As twopc.sql, run with pgbench -M prepared: the gid is a bound parameter.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
  RETURNING 'twopc' || ':' || 'bench' || ':' || 'p-' || pg_catalog.txid_current() AS gid \gset
SELECT twopc.prepare(:gid);
SELECT twopc.commit_prepared(:gid);
