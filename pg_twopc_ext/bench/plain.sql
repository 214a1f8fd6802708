\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
-- No two-phase commit: the same BEGIN and UPDATE, then COMMIT. Run with -M simple and
-- -M prepared, it measures what the prepared protocol alone saves on these statements, the part
-- of the "twopc -M prepared" figure that native PREPARE TRANSACTION could also have had if
-- pgbench let it mix protocols.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
  RETURNING 'twopc' || ':' || 'bench' || ':' || 'c-' || pg_catalog.txid_current() AS unused \gset
COMMIT;
