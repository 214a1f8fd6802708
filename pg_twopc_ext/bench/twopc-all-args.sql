\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
-- twopc.sql with every argument given, the way the Postgres participant calls the functions
-- (coordinator and global id, via). With fewer arguments than parameters PostgreSQL reads and
-- parses the defaults from pg_proc on every call (in parse analysis), which shows up here.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid
  RETURNING 'twopc' || ':' || 'bench' || ':' || 'a-' || pg_catalog.txid_current() AS gid,
            'a-' || pg_catalog.txid_current() AS txid \gset
SELECT twopc.prepare(':gid', 'bench', ':txid');
SELECT twopc.commit_prepared(':gid', 'coordinator');
