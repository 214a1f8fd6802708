-- pg_twopc_ext 0.2.0 -> 0.3.0 (ALTER EXTENSION pg_twopc_ext UPDATE TO '0.3.0').
--
-- Tracked and in-doubt transactions are untouched: no table is rewritten, no row moves, and
-- nothing here takes a lock that a transaction in doubt holds (twopc.tracking is not altered).
-- What changes:
-- * who submitted a transaction (the coordinator's API client) is recorded: a new table
--   twopc.submitters, written inside the prepared transaction by the new eight-argument
--   twopc.run_and_prepare(..., submitted_by), and a finish_log column for rollbacks;
-- * twopc.history shows it (submitted_by); purge(), forget() and stats() cover the new table.
\echo Use "ALTER EXTENSION pg_twopc_ext UPDATE TO '0.3.0'" to load this file. \quit

CREATE TABLE twopc.submitters (
    xid          xid8        NOT NULL,
    gid          text        NOT NULL,
    submitted_by text        NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX submitters_gid_idx ON twopc.submitters (gid);
COMMENT ON TABLE twopc.submitters IS
  'The API client that submitted a transaction prepared by the Postgres participant (see twopc.history)';
SELECT pg_catalog.pg_extension_config_dump('twopc.submitters', '');
GRANT SELECT ON twopc.submitters TO PUBLIC;

-- A nullable column without a default: a catalog change only, no rewrite. Its lock (ACCESS
-- EXCLUSIVE on twopc.finish_log) is held by nobody in doubt: only finishes write that table.
ALTER TABLE twopc.finish_log ADD COLUMN submitted_by text;

-- A column added at the end, so the view can be replaced in place.
CREATE OR REPLACE VIEW twopc.history AS
SELECT l.gid, l.global_id, l.coordinator, l.decision, l.finished_at, l.finished_by, l.via,
       l.submitted_by
  FROM twopc.finish_log l
UNION ALL
SELECT t.gid, t.global_id, t.coordinator, 'commit'::text,
       CASE WHEN t.finished_via OPERATOR(pg_catalog.<>) '-' THEN t.finished_at END,
       CASE WHEN t.finished_via OPERATOR(pg_catalog.<>) '-'
            THEN pg_catalog.pg_get_userbyid(t.finished_by)::text END,
       CASE t.finished_via WHEN 'c' THEN 'coordinator'::text WHEN 'm' THEN 'manual'::text
                           WHEN 'r' THEN 'resolver'::text WHEN 'n' THEN 'native'::text END,
       s.submitted_by
  FROM twopc.tracking t
  LEFT JOIN twopc.submitters s ON s.gid OPERATOR(pg_catalog.=) t.gid
                              AND s.xid OPERATOR(pg_catalog.=) t.xid;
COMMENT ON VIEW twopc.history IS
  'Finished transactions: gid, global_id, decision, finished_at, finished_by, via, submitted_by';

CREATE OR REPLACE FUNCTION twopc.stats(
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
           + pg_total_relation_size('twopc.decisions')
           + pg_total_relation_size('twopc.submitters'),
         (SELECT min(at) FROM (SELECT min(prepared_at) FROM twopc.tracking
                               UNION ALL SELECT min(finished_at) FROM twopc.finish_log
                               UNION ALL SELECT min(recorded_at) FROM twopc.decisions
                               UNION ALL SELECT min(recorded_at) FROM twopc.submitters) m(at))
    FROM n
$$;

CREATE OR REPLACE FUNCTION twopc.purge(older_than interval, batch_size integer DEFAULT 1000)
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
  -- A submitter goes with its tracking row (deleted above, or earlier); only committed ones
  -- are visible to delete.
  DELETE FROM twopc.submitters WHERE ctid = ANY (ARRAY(
    SELECT s.ctid FROM twopc.submitters s WHERE s.recorded_at < cutoff
       AND NOT EXISTS (SELECT 1 FROM twopc.tracking t WHERE t.gid = s.gid AND t.xid = s.xid)
     LIMIT batch_size));
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  RETURN total;
END
$$;

CREATE OR REPLACE FUNCTION twopc.forget(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  total bigint := 0;
  n bigint;
BEGIN
  IF older_than IS NULL OR older_than < interval '0' THEN
    RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = '22023';
  END IF;
  DELETE FROM twopc.finish_log WHERE finished_at < now() - older_than;
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  -- Only visible (committed) tracking rows can be deleted; in-doubt ones are untouched.
  DELETE FROM twopc.tracking WHERE prepared_at < now() - older_than;
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  DELETE FROM twopc.decisions dd WHERE recorded_at < now() - older_than
     AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p WHERE p.gid = dd.gid);
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  DELETE FROM twopc.submitters s WHERE recorded_at < now() - older_than
     AND NOT EXISTS (SELECT 1 FROM twopc.tracking t WHERE t.gid = s.gid AND t.xid = s.xid);
  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
  RETURN total;
END
$$;

CREATE FUNCTION twopc.run_and_prepare(
    "gid" TEXT, "coordinator" TEXT, "global_id" TEXT, "client_role" TEXT, "queries" TEXT[],
    "param_counts" INT[], "params" TEXT[], "submitted_by" TEXT)
RETURNS TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'run_and_prepare_submitted_wrapper';
REVOKE EXECUTE ON FUNCTION
  twopc.run_and_prepare(text, text, text, text, text[], integer[], text[], text) FROM PUBLIC;
