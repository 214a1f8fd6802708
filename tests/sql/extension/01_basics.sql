-- pg_twopc_ext: the whole SQL surface on the happy paths.
-- (Volatile values - timestamps, ages, xids - are never selected.)
CREATE EXTENSION pg_twopc_ext;
\dx pg_twopc_ext
CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 5) g;

-- 1. A twopc-format gid: coordinator and global id are filled from the gid.
BEGIN;
UPDATE acct SET bal = bal - 10 WHERE id = 1;
SELECT twopc.prepare('twopc:c1:tx-1');
-- The session is idle again; the transaction is in doubt.
SELECT gid, global_id, coordinator, database, owner, decision, prepared_by, tracked,
       prepared_at IS NOT NULL AS has_prepared_at, age >= interval '0' AS has_age
  FROM twopc.in_doubt;
SELECT twopc.outcome('twopc:c1:tx-1');
-- The tracking row is invisible to MVCC while in doubt ...
SELECT count(*) AS visible_tracking_rows FROM twopc.tracking;
-- ... but found by the SnapshotAny scan.
SELECT gid, global_id, coordinator, prepared_by FROM twopc.tracking_in_doubt();

-- 2. The coordinator records its decision, then the participant finishes from another session.
SELECT twopc.record_decision('twopc:c1:tx-1', 'commit');
SELECT gid, decision FROM twopc.in_doubt;
\c
SELECT twopc.commit_prepared('twopc:c1:tx-1', via => 'coordinator');
SELECT twopc.outcome('twopc:c1:tx-1');
SELECT bal FROM acct WHERE id = 1;
SELECT gid, global_id, coordinator, pg_get_userbyid(prepared_by) AS prepared_by FROM twopc.tracking;
SELECT gid, global_id, coordinator, decision, finished_by, via FROM twopc.history ORDER BY gid;
SELECT count(*) AS in_doubt FROM twopc.in_doubt;

-- 3. Any gid, with explicit coordinator / global id; rolled back by a resolver.
BEGIN;
UPDATE acct SET bal = bal - 20 WHERE id = 2;
SELECT twopc.prepare('order-42', coordinator => 'c9', global_id => 'order/42');
SELECT gid, global_id, coordinator, tracked FROM twopc.in_doubt;
SELECT twopc.rollback_prepared('order-42', 'resolver');
SELECT twopc.outcome('order-42');
SELECT bal FROM acct WHERE id = 2;
SELECT gid, global_id, coordinator, decision, via FROM twopc.history WHERE gid = 'order-42';

-- 4. Native PREPARE TRANSACTION shows up too: tracking columns NULL, except what a
--    twopc-format gid encodes.
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 3;
PREPARE TRANSACTION 'twopc:c2:native';
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 4;
PREPARE TRANSACTION 'native-plain';
SELECT gid, global_id, coordinator, prepared_by, tracked FROM twopc.in_doubt ORDER BY gid;
SELECT twopc.outcome('twopc:c2:native'), twopc.outcome('native-plain');
-- Finished through the functions: history knows the outcome.
SELECT twopc.commit_prepared('twopc:c2:native');
SELECT twopc.rollback_prepared('native-plain');
SELECT twopc.outcome('twopc:c2:native'), twopc.outcome('native-plain');
SELECT gid, global_id, coordinator, decision, via FROM twopc.history
 WHERE gid IN ('twopc:c2:native', 'native-plain') ORDER BY gid;

-- 5. Prepared through the function, finished natively: the tracking row alone tells.
BEGIN;
UPDATE acct SET bal = bal + 5 WHERE id = 5;
SELECT twopc.prepare('twopc:c1:tx-native-commit');
COMMIT PREPARED 'twopc:c1:tx-native-commit';
BEGIN;
UPDATE acct SET bal = bal + 5 WHERE id = 5;
SELECT twopc.prepare('twopc:c1:tx-native-abort');
ROLLBACK PREPARED 'twopc:c1:tx-native-abort';
SELECT twopc.outcome('twopc:c1:tx-native-commit') AS native_commit,
       twopc.outcome('twopc:c1:tx-native-abort') AS native_abort,
       twopc.outcome('never-prepared') AS never;
-- The aborted transaction's tracking tuple is dead: presumed abort, made visible.
SELECT gid, status, deleted FROM twopc.tracking_tuples() ORDER BY gid;
-- history lists the native commit too (its tracking row is visible), with nobody recorded as
-- having finished it; the native rollback left nothing to list.
SELECT gid, decision, finished_at IS NULL AS no_finished_at, finished_by, via
  FROM twopc.history WHERE gid LIKE 'twopc:c1:tx-native-%';
-- gid_state(): the participant's cheap "seen before?" check (shared memory, two index probes).
SELECT twopc.gid_state('twopc:c1:tx-native-commit') AS committed_by_marker,
       twopc.gid_state('twopc:c1:tx-native-abort') AS aborted_tuple,
       twopc.gid_state('native-plain') AS aborted_by_history,
       twopc.gid_state('never-prepared') AS never;

-- 6. The commit stamp is not part of the calling transaction: COMMIT PREPARED cannot be
--    undone, so who did it stays recorded when the calling statement fails afterwards.
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 2;
SELECT twopc.prepare('twopc:c1:then-fail');
SELECT twopc.commit_prepared('twopc:c1:then-fail', 'resolver'), 1 / (random() * 0)::int;
SELECT twopc.outcome('twopc:c1:then-fail');
SELECT gid, decision, finished_at IS NOT NULL AS has_finished_at, finished_by, via
  FROM twopc.history WHERE gid = 'twopc:c1:then-fail';
-- The stamp lives on the tracking row (fixed-width columns, written in place).
SELECT gid, finished_at > prepared_at AS stamped_later, finished_by = 'postgres'::regrole AS by_me,
       finished_via FROM twopc.tracking WHERE gid = 'twopc:c1:then-fail';
-- PostgreSQL lets a gid be used again once finished (twopc.prepare() does not, see 02_misuse).
-- A native prepare under the gid of a tracked transaction that was committed natively: the
-- old, unstamped tracking row is not this transaction's, so the commit is logged instead.
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 3;
PREPARE TRANSACTION 'twopc:c1:tx-native-commit';
SELECT twopc.commit_prepared('twopc:c1:tx-native-commit');
SELECT gid, decision, finished_at IS NULL AS no_finished_at, finished_by, via
  FROM twopc.history WHERE gid = 'twopc:c1:tx-native-commit' ORDER BY via NULLS FIRST;

-- 7. Helpers, stats, forget.
SELECT twopc.gid_coordinator('twopc:c1:tx-1'), twopc.gid_global_id('twopc:c1:tx-1'),
       twopc.gid_global_id('not-a-twopc-gid');
SELECT prepared, committed, aborted, in_doubt, oldest_in_doubt FROM twopc.stats();
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 1;
SELECT twopc.prepare('twopc:c1:pending');
SELECT twopc.gid_state('twopc:c1:pending');
SELECT prepared, committed, aborted, in_doubt, oldest_in_doubt IS NOT NULL AS has_oldest
  FROM twopc.stats();
-- forget() never touches in-doubt work.
SELECT twopc.forget(interval '0') > 0 AS forgot_something;
SELECT count(*) AS history_rows FROM twopc.history;
SELECT count(*) AS visible_tracking_rows FROM twopc.tracking;
SELECT gid, tracked FROM twopc.in_doubt;
SELECT twopc.commit_prepared('twopc:c1:pending');
SELECT twopc.outcome('twopc:c1:pending');
SELECT twopc.protocol_version() > 0 AS has_protocol_version;

-- 8. The extension caches its tables' oids per session: dropping and recreating it in the same
--    session must not leave the cache pointing at the dropped tables.
SELECT twopc.gid_state('twopc:c1:tx-1');
DROP EXTENSION pg_twopc_ext;
CREATE EXTENSION pg_twopc_ext;
SELECT twopc.gid_state('twopc:c1:tx-1');
BEGIN;
UPDATE acct SET bal = bal + 1 WHERE id = 1;
SELECT twopc.prepare('twopc:c1:after-recreate');
SELECT twopc.commit_prepared('twopc:c1:after-recreate');
SELECT twopc.outcome('twopc:c1:after-recreate'), twopc.gid_state('twopc:c1:after-recreate');
SELECT gid, decision FROM twopc.history;
