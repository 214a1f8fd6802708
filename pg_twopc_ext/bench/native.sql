\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set r random(1, 1000000000000000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
PREPARE TRANSACTION 'twopc:bench:n-:client_id-:r';
COMMIT PREPARED 'twopc:bench:n-:client_id-:r';
