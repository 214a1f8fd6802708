\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set r random(1, 1000000000000000)
\set g :client_id * 1000000000000000 + :r
-- pgbench -M prepared turns every ":name" into a parameter, even inside quotes: keep ':'
-- away from letters in the literals.
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT twopc.prepare('twopc:' || 'bench:' || 'p-' || CAST(:g AS bigint));
SELECT twopc.commit_prepared('twopc:' || 'bench:' || 'p-' || CAST(:g AS bigint));
