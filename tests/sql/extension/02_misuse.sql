-- pg_twopc_ext: every misuse is a clean ERROR; nothing is prepared by mistake, and the
-- session stays usable. After each case, pg_prepared_xacts shows what exists. Like PREPARE
-- TRANSACTION, a prepare refused inside a transaction block ends the transaction: the
-- ROLLBACK after it only warns that there is no transaction in progress.
CREATE EXTENSION pg_twopc_ext;
CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 5) g;
CREATE VIEW prepared AS SELECT gid FROM pg_prepared_xacts ORDER BY gid;

-- Outside a transaction block (PostgreSQL itself would only warn and commit).
SELECT twopc.prepare('m1');
UPDATE acct SET bal = 1 WHERE id = 1 RETURNING bal;
SELECT * FROM prepared;

-- Inside the client's own savepoints: accepted, and they are subcommitted, as PREPARE
-- TRANSACTION does (what was rolled back to a savepoint stays undone).
BEGIN;
SAVEPOINT s1;
UPDATE acct SET bal = bal + 10 WHERE id = 1;
SAVEPOINT s2;
UPDATE acct SET bal = bal + 100 WHERE id = 1;
ROLLBACK TO s2;
SELECT twopc.prepare('m2');
SELECT * FROM prepared;
SELECT twopc.commit_prepared('m2');
SELECT bal FROM acct WHERE id = 1;
-- Inside a plpgsql EXCEPTION block (a subtransaction).
BEGIN;
DO $$ BEGIN PERFORM twopc.prepare('m3'); EXCEPTION WHEN division_by_zero THEN NULL; END $$;
ROLLBACK;

-- Called twice in one transaction: the ERROR happens after the first call marked the
-- block for PREPARE, so the whole transaction is rolled back (no block is left open).
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 2;
SELECT twopc.prepare('m4a'), twopc.prepare('m4b');
ROLLBACK;
SELECT * FROM prepared;
SELECT bal FROM acct WHERE id = 2;

-- More statements after twopc.prepare() in the same query string: ERROR (not FATAL),
-- transaction rolled back, session usable.
BEGIN \; UPDATE acct SET bal = bal + 1 WHERE id = 3 \; SELECT twopc.prepare('m5') \; COMMIT;
SELECT 'still alive' AS session, (SELECT bal FROM acct WHERE id = 3) AS bal;
BEGIN \; UPDATE acct SET bal = bal + 1 WHERE id = 3 \; SELECT twopc.prepare('m6') \; SELECT 1;
BEGIN \; SELECT twopc.prepare('m7') \; PREPARE TRANSACTION 'm7b';
BEGIN \; SELECT twopc.prepare('m8') \; BEGIN;
SELECT * FROM prepared;
SELECT bal FROM acct WHERE id = 3;

-- gid problems.
BEGIN;
SELECT twopc.prepare('');
ROLLBACK;
BEGIN;
SELECT twopc.prepare(NULL);
ROLLBACK;
BEGIN;
SELECT twopc.prepare(repeat('x', 200));
ROLLBACK;
BEGIN;
SELECT twopc.prepare(repeat('x', 199)) = repeat('x', 199) AS ok_199;
SELECT twopc.rollback_prepared(repeat('x', 199));
-- gid already in use by a prepared transaction (native or tracked).
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 4;
PREPARE TRANSACTION 'busy';
BEGIN;
SELECT twopc.prepare('busy');
ROLLBACK;
-- gid already used by a committed tracked transaction.
BEGIN;
SELECT twopc.prepare('done');
SELECT twopc.commit_prepared('done');
BEGIN;
SELECT twopc.prepare('done');
ROLLBACK;
-- Coordinator / global id that contradict a twopc-format gid.
BEGIN;
SELECT twopc.prepare('twopc:c1:t1', coordinator => 'c2');
ROLLBACK;
BEGIN;
SELECT twopc.prepare('twopc:c1:t1', global_id => 't2');
ROLLBACK;
BEGIN;
SELECT twopc.prepare('twopc:c1:t1', 'c1', 't1');
SELECT gid, global_id, coordinator FROM twopc.in_doubt WHERE gid = 'twopc:c1:t1';
SELECT twopc.rollback_prepared('twopc:c1:t1');

-- After an error has aborted the block.
BEGIN;
SELECT 1 / 0;
SELECT twopc.prepare('m9');
ROLLBACK;

-- A transaction that touched a temporary table.
BEGIN;
CREATE TEMP TABLE scratch (i int);
SELECT twopc.prepare('m10');
ROLLBACK;

-- A read-only transaction (the tracking row is written below the executor, so the function
-- checks this itself).
BEGIN READ ONLY;
SELECT twopc.prepare('m11');
ROLLBACK;

-- Finishing: inside a transaction block, in a multi-statement string, unknown gid, bad via,
-- read-only session.
BEGIN;
SELECT twopc.commit_prepared('busy');
ROLLBACK;
SELECT 1 \; SELECT twopc.commit_prepared('busy');
SELECT twopc.commit_prepared('no-such-gid');
SELECT twopc.rollback_prepared('no-such-gid');
SELECT twopc.commit_prepared('busy', 'robot');
SELECT twopc.commit_prepared(NULL);
SELECT twopc.outcome('');
SET default_transaction_read_only = on;
SELECT twopc.commit_prepared('busy');
SELECT twopc.record_decision('busy', 'abort');
RESET default_transaction_read_only;
-- Decisions.
SELECT twopc.record_decision('busy', 'maybe');
SELECT twopc.record_decision('busy', 'abort');
SELECT twopc.record_decision('busy', 'abort');
SELECT twopc.record_decision('busy', 'commit');
SELECT gid, decision FROM twopc.in_doubt;
SELECT twopc.rollback_prepared('busy');
SELECT twopc.outcome('busy');
SELECT twopc.forget(interval '-1 day');
-- The functions write the tracking table below SQL and maintain its plain-column indexes; an
-- expression or partial index added by hand is refused, not left stale.
CREATE INDEX tracking_lower_gid ON twopc.tracking (lower(gid));
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 5;
SELECT twopc.prepare('with-expression-index');
ROLLBACK;
DROP INDEX twopc.tracking_lower_gid;
-- So is an index on the columns the commit stamp overwrites in place.
CREATE INDEX tracking_finished_via ON twopc.tracking (finished_via);
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 5;
SELECT twopc.prepare('with-stamp-index');
ROLLBACK;
DROP INDEX twopc.tracking_finished_via;
-- Another unique index is enforced as usual (only the gid index merely flags conflicts).
CREATE UNIQUE INDEX tracking_global_id_unique ON twopc.tracking (global_id);
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 5;
SELECT twopc.prepare('unique-global-1', global_id => 'same-global');
SELECT twopc.commit_prepared('unique-global-1');
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 5;
SELECT twopc.prepare('unique-global-2', global_id => 'same-global');
ROLLBACK;
DROP INDEX twopc.tracking_global_id_unique;
-- A plain extra index is maintained.
CREATE INDEX tracking_global_id ON twopc.tracking (global_id);
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 5;
SELECT twopc.prepare('with-plain-index', global_id => 'g-plain');
SELECT twopc.commit_prepared('with-plain-index');
SET enable_seqscan = off;
SELECT gid FROM twopc.tracking WHERE global_id = 'g-plain';
RESET enable_seqscan;
DROP INDEX twopc.tracking_global_id;

-- An implicit transaction block (several statements in one string without BEGIN) behaves
-- like native PREPARE TRANSACTION there: PostgreSQL warns, and the transaction is prepared.
UPDATE acct SET bal = bal + 1 WHERE id = 5 \; SELECT twopc.prepare('implicit');
SELECT * FROM prepared;
SELECT twopc.commit_prepared('implicit');

-- Nothing left behind.
SELECT * FROM prepared;
SELECT id, bal FROM acct ORDER BY id;
