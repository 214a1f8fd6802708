-- pg_twopc_ext security: SECURITY INVOKER functions; EXECUTE on the changing functions is
-- revoked from PUBLIC and granted explicitly; PostgreSQL's own rule decides who may finish a
-- prepared transaction (its owner or a superuser).
CREATE EXTENSION pg_twopc_ext;
CREATE ROLE twopc_alice LOGIN;
CREATE ROLE twopc_bob LOGIN;
CREATE ROLE twopc_carol LOGIN;
CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 3) g;
GRANT SELECT, UPDATE ON acct TO twopc_alice, twopc_bob, twopc_carol;
GRANT EXECUTE ON FUNCTION twopc.prepare(text, text, text),
                          twopc.commit_prepared(text, text),
                          twopc.rollback_prepared(text, text)
   TO twopc_alice, twopc_bob;
SELECT p.proname, p.prosecdef AS security_definer
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'twopc' ORDER BY 1;

\c - twopc_alice
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 1;
SELECT twopc.prepare('twopc:c1:alice-1');
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 2;
SELECT twopc.prepare('twopc:c1:alice-2');
-- Reading is public.
SELECT gid, owner, prepared_by, tracked FROM twopc.in_doubt ORDER BY gid;
SELECT twopc.outcome('twopc:c1:alice-1');
-- Alice finishes her own transaction.
SELECT twopc.commit_prepared('twopc:c1:alice-1');
SELECT gid, decision, finished_by FROM twopc.history;
-- But cannot write the bookkeeping tables directly, nor purge them.
INSERT INTO twopc.finish_log VALUES ('fake', NULL, NULL, 'commit', now(), 'x', 'manual');
UPDATE twopc.tracking SET finished_via = 'r';
INSERT INTO twopc.history VALUES ('fake', NULL, NULL, 'commit', now(), 'x', 'manual');
SELECT twopc.forget(interval '0');
SELECT twopc.purge(interval '0');

\c - twopc_bob
-- Bob may use the functions, but not on Alice's transaction.
SELECT twopc.commit_prepared('twopc:c1:alice-2');
SELECT twopc.rollback_prepared('twopc:c1:alice-2');
SELECT twopc.outcome('twopc:c1:alice-2');

\c - twopc_carol
-- Carol was granted nothing.
BEGIN;
SELECT twopc.prepare('twopc:c1:carol');
ROLLBACK;
SELECT twopc.record_decision('twopc:c1:alice-2', 'commit');
SELECT gid FROM twopc.in_doubt;

\c - postgres
-- A superuser may finish anyone's.
SELECT twopc.rollback_prepared('twopc:c1:alice-2');
SELECT gid, decision, finished_by FROM twopc.history ORDER BY gid;
SELECT id, bal FROM acct ORDER BY id;
DROP TABLE acct;
DROP EXTENSION pg_twopc_ext;
DROP ROLE twopc_alice, twopc_bob, twopc_carol;
