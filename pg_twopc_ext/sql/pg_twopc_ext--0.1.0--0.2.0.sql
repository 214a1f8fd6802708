-- pg_twopc_ext 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_twopc_ext UPDATE TO '0.2.0').
--
-- Tracked and in-doubt transactions are untouched: no table is rewritten and no row moves.
-- What changes:
-- * native COMMIT PREPARED / ROLLBACK PREPARED are tracked (via = 'native' in the history);
-- * twopc.stats() also reports the size of the extension's tables and their oldest row;
-- * twopc.purge() deletes finished history in batches (the retention worker calls it).
\echo Use "ALTER EXTENSION pg_twopc_ext UPDATE TO '0.2.0'" to load this file. \quit

-- NOT VALID, then VALIDATE: the check of the existing rows takes SHARE UPDATE EXCLUSIVE, so
-- commits that append finish-log rows go on while it scans.
ALTER TABLE twopc.finish_log DROP CONSTRAINT finish_log_via_check;
ALTER TABLE twopc.finish_log ADD CONSTRAINT finish_log_via_check
  CHECK (via IN ('coordinator', 'manual', 'resolver', 'native')) NOT VALID;
ALTER TABLE twopc.finish_log VALIDATE CONSTRAINT finish_log_via_check;

CREATE OR REPLACE VIEW twopc.history AS
SELECT l.gid, l.global_id, l.coordinator, l.decision, l.finished_at, l.finished_by, l.via
  FROM twopc.finish_log l
UNION ALL
SELECT t.gid, t.global_id, t.coordinator, 'commit'::text,
       CASE WHEN t.finished_via OPERATOR(pg_catalog.<>) '-' THEN t.finished_at END,
       CASE WHEN t.finished_via OPERATOR(pg_catalog.<>) '-'
            THEN pg_catalog.pg_get_userbyid(t.finished_by)::text END,
       CASE t.finished_via WHEN 'c' THEN 'coordinator'::text WHEN 'm' THEN 'manual'::text
                           WHEN 'r' THEN 'resolver'::text WHEN 'n' THEN 'native'::text END
  FROM twopc.tracking t;
COMMENT ON VIEW twopc.history IS
  'Finished transactions: gid, global_id, decision, finished_at, finished_by, via';

-- New OUT columns: a function's result type cannot change in place.
DROP FUNCTION twopc.stats();
CREATE FUNCTION twopc.stats(
    OUT prepared bigint, OUT committed bigint, OUT aborted bigint, OUT in_doubt bigint,
    OUT oldest_in_doubt interval,
    OUT tracking_rows bigint, OUT finish_log_rows bigint, OUT decision_rows bigint,
    OUT total_bytes bigint, OUT oldest_row timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH t AS (SELECT gid, status FROM twopc.tracking_tuples()),
       d AS (SELECT gid, prepared FROM pg_prepared_xacts WHERE database = current_database()),
       c AS (SELECT gid FROM t WHERE status = 'committed'
             UNION SELECT gid FROM twopc.history WHERE decision = 'commit'),
       a AS (SELECT gid FROM t WHERE status = 'aborted'
             UNION SELECT gid FROM twopc.history WHERE decision = 'abort'),
       n AS (SELECT (SELECT count(*) FROM c) AS committed,
                    (SELECT count(*) FROM a) AS aborted,
                    (SELECT count(*) FROM d) AS in_doubt,
                    (SELECT now() - min(prepared) FROM d) AS oldest)
  SELECT committed + aborted + in_doubt, committed, aborted, in_doubt, oldest,
         (SELECT count(*) FROM twopc.tracking),
         (SELECT count(*) FROM twopc.finish_log),
         (SELECT count(*) FROM twopc.decisions),
         pg_total_relation_size('twopc.tracking') + pg_total_relation_size('twopc.finish_log')
           + pg_total_relation_size('twopc.decisions'),
         (SELECT min(at) FROM (SELECT min(prepared_at) FROM twopc.tracking
                               UNION ALL SELECT min(finished_at) FROM twopc.finish_log
                               UNION ALL SELECT min(recorded_at) FROM twopc.decisions) m(at))
    FROM n
$$;
COMMENT ON FUNCTION twopc.stats() IS
  'Counts of gids prepared / committed / aborted / in doubt in this database, the oldest in-doubt age, and the size of the extension''s tables (rows, bytes, oldest row)';

CREATE FUNCTION twopc.purge(older_than interval, batch_size integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  cutoff timestamptz;
  total bigint := 0;
  n bigint;
BEGIN
  IF older_than IS NULL OR older_than < interval '0' THEN
    RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = '22023';
  END IF;
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be positive' USING ERRCODE = '22023';
  END IF;
  cutoff := now() - older_than;
  DELETE FROM twopc.finish_log WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM twopc.finish_log WHERE finished_at < cutoff LIMIT batch_size));
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  -- finished_at is '-infinity' until stamped; a row committed without a stamp counts from
  -- its prepare.
  DELETE FROM twopc.tracking WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM twopc.tracking WHERE GREATEST(prepared_at, finished_at) < cutoff
     LIMIT batch_size));
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  DELETE FROM twopc.decisions WHERE ctid = ANY (ARRAY(
    SELECT dd.ctid FROM twopc.decisions dd WHERE dd.recorded_at < cutoff
       AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p WHERE p.gid = dd.gid)
     LIMIT batch_size));
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  RETURN total;
END
$$;
COMMENT ON FUNCTION twopc.purge(interval, integer) IS
  'Deletes at most batch_size finished tracking, history and decision rows of each table older than the interval; returns how many';
REVOKE EXECUTE ON FUNCTION twopc.purge(interval, integer) FROM PUBLIC;
