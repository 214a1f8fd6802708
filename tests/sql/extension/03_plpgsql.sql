-- pg_twopc_ext from DO blocks and plpgsql functions (no subtransaction): it behaves like a
-- top-level call. The transaction is prepared when the top-level statement (the DO, the
-- SELECT calling the function) ends. SQL that the function runs after twopc.prepare() still
-- executes and becomes part of the prepared transaction.
CREATE EXTENSION pg_twopc_ext;
CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 3) g;

BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 1;
DO $$ BEGIN PERFORM twopc.prepare('twopc:c1:do'); END $$;
SELECT gid, global_id, coordinator, tracked FROM twopc.in_doubt;

CREATE FUNCTION transfer_and_prepare(gid text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  UPDATE acct SET bal = bal - 5 WHERE id = 2;
  PERFORM twopc.prepare(gid);
  -- Runs after the prepare was requested: joins the prepared transaction.
  UPDATE acct SET bal = bal + 5 WHERE id = 3;
  RETURN gid;
END $$;
BEGIN;
SELECT transfer_and_prepare('twopc:c1:fn');
SELECT gid, tracked FROM twopc.in_doubt ORDER BY gid;
SELECT id, bal FROM acct ORDER BY id;
SELECT twopc.commit_prepared('twopc:c1:fn');
SELECT id, bal FROM acct ORDER BY id;

-- Without BEGIN the function call is its own transaction: refused.
SELECT transfer_and_prepare('twopc:c1:no-block');
-- A procedure called inside a transaction block is atomic: same as a function.
CREATE PROCEDURE prepare_proc(gid text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM twopc.prepare(gid);
END $$;
BEGIN;
CALL prepare_proc('twopc:c1:proc');
SELECT gid FROM twopc.in_doubt ORDER BY gid;

-- Finishing from a DO block outside a transaction block works (like the top-level call).
DO $$ BEGIN PERFORM twopc.commit_prepared('twopc:c1:do', 'resolver'); END $$;
DO $$ BEGIN PERFORM twopc.rollback_prepared('twopc:c1:proc', 'resolver'); END $$;
SELECT gid, decision, via FROM twopc.history ORDER BY gid;
SELECT twopc.outcome('twopc:c1:do'), twopc.outcome('twopc:c1:proc'), twopc.outcome('twopc:c1:fn');
-- But not inside a transaction block.
BEGIN;
DO $$ BEGIN PERFORM twopc.commit_prepared('anything'); END $$;
ROLLBACK;
SELECT count(*) AS left_in_doubt FROM twopc.in_doubt;
