\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
-- The gid grows with the transaction id, like the ids the coordinator generates
-- (<coordinator>-<ms>-<n>); the UPDATE hands it back, so no statement is added. pgbench
-- substitutes ":name" even inside quotes (and -M prepared makes it a parameter): no ':' before
-- a letter in the literals.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
  RETURNING 'twopc' || ':' || 'bench' || ':' || 'n-' || pg_catalog.txid_current() AS gid \gset
PREPARE TRANSACTION ':gid';
COMMIT PREPARED ':gid';
