-- twopc.run_and_prepare(): the Postgres participant's phase 1. Client statements run nested,
-- as the client role, in client mode: whatever their text, they cannot end, split or prepare
-- the transaction, call the writing twopc functions, or leave state in the session.
CREATE EXTENSION pg_twopc_ext;
CREATE ROLE twopc_part LOGIN;
CREATE ROLE twopc_cli NOLOGIN;
CREATE ROLE twopc_stranger NOLOGIN;
GRANT twopc_cli TO twopc_part;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc TO twopc_part;
CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL CHECK (bal >= 0));
INSERT INTO acct VALUES (1, 100), (2, 100);
GRANT SELECT, UPDATE ON acct TO twopc_cli;
CREATE TABLE owed (id int PRIMARY KEY,
                   acct int REFERENCES acct (id) DEFERRABLE INITIALLY DEFERRED);
GRANT SELECT, INSERT ON owed TO twopc_cli;
CREATE PROCEDURE commits() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
CREATE FUNCTION sets_session(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('SET search_path = %I', v);
  RETURN v;
END $$;
CREATE FUNCTION calls_prepare() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN twopc.prepare('twopc:c1:from-a-function');
END $$;

\c - twopc_part
-- The ordinary case: parameters are typed from the query, as in the extended protocol.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ok', 'c1', 'ok', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal - $1 WHERE id = $2',
        'UPDATE acct SET bal = bal + $1 WHERE id = $2',
        'SET LOCAL lock_timeout = 1000',
        $$SELECT set_config('application_name', 'inside', true)$$],
  ARRAY[2, 2, 0, 0], ARRAY['10', '1', '10', '2']);
SELECT gid, owner, tracked FROM twopc.in_doubt;
-- The same request again runs nothing.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ok', 'c1', 'ok', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
SELECT twopc.commit_prepared('twopc:c1:ok', 'coordinator');
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ok', 'c1', 'ok', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
SELECT id, bal FROM acct ORDER BY id;

-- Transaction control, however it is spelled: nothing is prepared, nothing is committed.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc1', 'c1', 'tc1', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal - 1 WHERE id = 1', '/* /* */ SELECT */ COMMIT'],
  ARRAY[0, 0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc2', 'c1', 'tc2', 'twopc_cli',
  ARRAY[E'-- x\rROLLBACK /*\nSELECT */'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc3', 'c1', 'tc3', 'twopc_cli',
  ARRAY[E'-- x\rSAVEPOINT s /*\nSELECT */'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc4', 'c1', 'tc4', 'twopc_cli',
  ARRAY[$$PREPARE TRANSACTION 'evil'$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc5', 'c1', 'tc5', 'twopc_cli',
  ARRAY['CALL public.commits()'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:tc6', 'c1', 'tc6', 'twopc_cli',
  ARRAY[$q$DO $$ BEGIN ROLLBACK; END $$$q$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT id, bal FROM acct ORDER BY id;

-- The writing twopc functions, directly, through a function, or nested run_and_prepare.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn1', 'c1', 'fn1', 'twopc_cli',
  ARRAY[$$SELECT twopc.prepare('evil')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn2', 'c1', 'fn2', 'twopc_cli',
  ARRAY[$$SELECT twopc.rollback_prepared('twopc:c1:victim', 'coordinator')$$],
  ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn3', 'c1', 'fn3', 'twopc_cli',
  ARRAY[$$SELECT twopc.record_decision('twopc:c1:zzz', 'commit')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn4', 'c1', 'fn4', 'twopc_cli',
  ARRAY[$$SELECT twopc.forget('0')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn5', 'c1', 'fn5', 'twopc_cli',
  ARRAY['SELECT public.calls_prepare()'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn6', 'c1', 'fn6', 'twopc_cli',
  ARRAY[$$SELECT twopc.run_and_prepare('twopc:c1:inner', 'c1', 'inner', 'twopc_cli',
          ARRAY['SELECT 1'], ARRAY[0], ARRAY[]::text[])$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
-- Client mode refuses them even when the client role was granted EXECUTE by mistake.
\c - postgres
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc TO twopc_cli;
\c - twopc_part
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn8', 'c1', 'fn8', 'twopc_cli',
  ARRAY[$$SELECT twopc.prepare('evil')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn9', 'c1', 'fn9', 'twopc_cli',
  ARRAY[$$SELECT twopc.record_decision('twopc:c1:zzz', 'commit')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn10', 'c1', 'fn10', 'twopc_cli',
  ARRAY[$$SELECT twopc.forget('0')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn11', 'c1', 'fn11', 'twopc_cli',
  ARRAY['SELECT public.calls_prepare()'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
\c - postgres
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc FROM twopc_cli;
\c - twopc_part
-- Reading stays possible.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:fn7', 'c1', 'fn7', 'twopc_cli',
  ARRAY[$$SELECT twopc.outcome('twopc:c1:ok'), twopc.gid_state('twopc:c1:ok')$$],
  ARRAY[0], ARRAY[]::text[]);
SELECT twopc.rollback_prepared('twopc:c1:fn7', 'coordinator');
SELECT count(*) AS decisions FROM twopc.decisions;

-- Session state: settings beyond the transaction, roles, advisory locks, prepared statements.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss1', 'c1', 'ss1', 'twopc_cli',
  ARRAY['SET search_path = evil'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss2', 'c1', 'ss2', 'twopc_cli',
  ARRAY['RESET ALL'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss3', 'c1', 'ss3', 'twopc_cli',
  ARRAY['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss4', 'c1', 'ss4', 'twopc_cli',
  ARRAY['SELECT set_config($1, $2, false)'], ARRAY[2], ARRAY['statement_timeout', '0']);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss5', 'c1', 'ss5', 'twopc_cli',
  ARRAY[$$SELECT public.sets_session('evil')$$], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss6', 'c1', 'ss6', 'twopc_cli',
  ARRAY[U&'SET default\0074ransaction_read_only = on'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss7', 'c1', 'ss7', 'twopc_cli',
  ARRAY['RESET ROLE'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss8', 'c1', 'ss8', 'twopc_cli',
  ARRAY['SET LOCAL ROLE twopc_part'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
-- A session-level advisory lock is released when the client's statements end; a
-- transaction-level one goes with the prepared transaction.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss9', 'c1', 'ss9', 'twopc_cli',
  ARRAY['SELECT pg_advisory_lock(42)', 'SELECT pg_advisory_xact_lock(43)',
        'SELECT pg_try_advisory_lock_shared(44)'], ARRAY[0, 0, 0], ARRAY[]::text[]);
SELECT l.objid, l.pid IS NULL AS held_by_the_prepared_transaction
  FROM pg_locks l WHERE l.locktype = 'advisory' ORDER BY 1;
SELECT twopc.rollback_prepared('twopc:c1:ss9', 'coordinator');
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss10', 'c1', 'ss10', 'twopc_cli',
  ARRAY['DEALLOCATE ALL'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss11', 'c1', 'ss11', 'twopc_cli',
  ARRAY['PREPARE p AS SELECT 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss12', 'c1', 'ss12', 'twopc_cli',
  ARRAY['DISCARD PLANS'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ss13', 'c1', 'ss13', 'twopc_cli',
  ARRAY['LISTEN x'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
SHOW search_path;
SHOW statement_timeout;
SHOW default_transaction_read_only;
SELECT current_user, session_user;
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory';
SELECT count(*) AS prepared FROM pg_prepared_xacts;

-- Client-side mistakes are statement errors, before anything is prepared.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce1', 'c1', 'ce1', 'twopc_cli',
  ARRAY['SELECT $1, $2'], ARRAY[1], ARRAY['1']);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce2', 'c1', 'ce2', 'twopc_cli',
  ARRAY['COPY acct TO STDOUT'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce3', 'c1', 'ce3', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 1; UPDATE acct SET bal = 2'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce4', 'c1', 'ce4', 'twopc_cli',
  ARRAY['SELECT $1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce5', 'c1', 'ce5', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal - $1 WHERE id = 1'], ARRAY[1], ARRAY['1000']);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce6', 'c1', 'ce6', 'twopc_cli',
  ARRAY['INSERT INTO owed VALUES (1, 99)'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce7', 'c1', 'ce7', 'twopc_cli',
  ARRAY['SELECT 1', NULL], ARRAY[0, 0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce8', 'c1', 'ce8', 'twopc_cli',
  ARRAY['SELECT $1'], ARRAY[2], ARRAY['1']);
ROLLBACK;
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT id, bal FROM acct ORDER BY id;
-- A rolled-back attempt is remembered: a late repeat of it is not run.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:ce5', 'c1', 'ce5', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal - 1 WHERE id = 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;

-- The client role must be a role of its own, one the participant may act as.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:r1', 'c1', 'r1', 'postgres',
  ARRAY['SELECT 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:r2', 'c1', 'r2', 'twopc_part',
  ARRAY['SELECT 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:r3', 'c1', 'r3', 'twopc_stranger',
  ARRAY['SELECT 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:r4', 'c1', 'r4', 'nobody',
  ARRAY['SELECT 1'], ARRAY[0], ARRAY[]::text[]);
ROLLBACK;
-- Never in autocommit.
SELECT twopc.run_and_prepare('twopc:c1:r5', 'c1', 'r5', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[]);
SELECT id, bal FROM acct ORDER BY id;

-- Who submitted it (the coordinator's API client): recorded with the transaction, shown by
-- the history whether it commits or rolls back; a name that is no name is refused.
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:n1', 'c1', 'n1', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal + 1 WHERE id = 1'], ARRAY[0], ARRAY[]::text[], 'payments');
SELECT twopc.commit_prepared('twopc:c1:n1', 'coordinator');
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:n2', 'c1', 'n2', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = bal + 1 WHERE id = 2'], ARRAY[0], ARRAY[]::text[], 'batch.eu-1');
SELECT twopc.rollback_prepared('twopc:c1:n2', 'coordinator');
SELECT global_id, decision, via, submitted_by FROM twopc.history
 WHERE global_id IN ('n1', 'n2') ORDER BY global_id;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:n3', 'c1', 'n3', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[], '');
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:n4', 'c1', 'n4', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[], E'evil\nname');
ROLLBACK;
BEGIN;
SELECT twopc.run_and_prepare('twopc:c1:n5', 'c1', 'n5', 'twopc_cli',
  ARRAY['UPDATE acct SET bal = 0'], ARRAY[0], ARRAY[]::text[], repeat('x', 129));
ROLLBACK;
SELECT id, bal FROM acct ORDER BY id;

\c - postgres
SELECT count(*) AS prepared FROM pg_prepared_xacts;
DROP TABLE owed, acct;
DROP PROCEDURE commits();
DROP FUNCTION sets_session(text), calls_prepare();
DROP EXTENSION pg_twopc_ext;
DROP ROLE twopc_part, twopc_cli, twopc_stranger;
