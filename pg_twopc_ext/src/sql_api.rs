//! The SQL surface (schema `twopc`): thin `#[pg_extern]` wrappers over the plain Rust modules,
//! plus the tables, views and SQL-language functions of the extension script.
//!
//! Every wrapper turns a [`crate::error::TwopcError`] into a PostgreSQL `ERROR` with its own
//! SQLSTATE; nothing else happens here.

use crate::error::TwopcError;
use crate::tracking::{self, XminStatus};
use crate::validate::{self, Decision};
use crate::{outcome, twophase};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;

extension_sql!(
    r#"
-- Every finished transaction: the finish log, plus each committed (visible) tracking row with
-- the stamp twopc.commit_prepared() put on it. A committed tracking row without a stamp was
-- finished by an untracked native COMMIT PREPARED (twopc.track_native off, or the library not
-- preloaded) or its stamp was lost in a crash: finished_at, finished_by and via are NULL there
-- (also for the microseconds between a COMMIT PREPARED and its stamp). Rows are only ever
-- added; retention (twopc.purge(), twopc.forget()) trims old ones. submitted_by: the
-- coordinator's API client, where the Postgres participant was told one.
CREATE VIEW twopc.history AS
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

CREATE VIEW twopc.in_doubt AS
SELECT p.gid,
       COALESCE(t.global_id, twopc.gid_global_id(p.gid))     AS global_id,
       COALESCE(t.coordinator, twopc.gid_coordinator(p.gid)) AS coordinator,
       p.prepared                                            AS prepared_at,
       pg_catalog.now() - p.prepared                         AS age,
       p.database,
       p.owner,
       d.decision,
       t.prepared_by,
       p.transaction                                         AS xid,
       t.gid IS NOT NULL                                     AS tracked
  FROM pg_catalog.pg_prepared_xacts p
  LEFT JOIN twopc.tracking_in_doubt() t ON t.xid = p.transaction AND t.gid = p.gid
  LEFT JOIN twopc.decisions d ON d.gid = p.gid;
COMMENT ON VIEW twopc.in_doubt IS
  'Prepared transactions of the cluster, with twopc tracking data where known';

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
           + pg_total_relation_size('twopc.decisions')
           + pg_total_relation_size('twopc.submitters'),
         (SELECT min(at) FROM (SELECT min(prepared_at) FROM twopc.tracking
                               UNION ALL SELECT min(finished_at) FROM twopc.finish_log
                               UNION ALL SELECT min(recorded_at) FROM twopc.decisions
                               UNION ALL SELECT min(recorded_at) FROM twopc.submitters) m(at))
    FROM n
$$;
COMMENT ON FUNCTION twopc.stats() IS
  'Counts of gids prepared / committed / aborted / in doubt in this database, the oldest in-doubt age, and the size of the extension''s tables (rows, bytes, oldest row)';

-- Retention (twopc.history_retention, run by the retention worker when preloaded; callable by
-- hand or from cron otherwise): deletes at most batch_size rows of each table, finished
-- before the cutoff, in the caller's transaction. Small batches keep each transaction short,
-- so its row locks and WAL never hold up commits; in-doubt work is never touched (a tracking
-- row is only visible, so deletable, once committed; a decision only once its gid is no
-- longer prepared).
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
COMMENT ON FUNCTION twopc.purge(interval, integer) IS
  'Deletes at most batch_size finished tracking, history and decision rows of each table older than the interval; returns how many';

CREATE FUNCTION twopc.forget(older_than interval) RETURNS bigint
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
COMMENT ON FUNCTION twopc.forget(interval) IS
  'Deletes tracking, history and decision rows older than the interval; returns how many';

-- Security model (README "Security"): reading is public like pg_prepared_xacts; changing
-- anything needs EXECUTE, granted explicitly by an administrator.
GRANT USAGE ON SCHEMA twopc TO PUBLIC;
GRANT SELECT ON twopc.tracking, twopc.finish_log, twopc.history, twopc.decisions, twopc.in_doubt,
  twopc.submitters TO PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.prepare(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.run_and_prepare(text, text, text, text, text[], integer[], text[])
  FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
  twopc.run_and_prepare(text, text, text, text, text[], integer[], text[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.commit_prepared(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.rollback_prepared(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.record_decision(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.forget(interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION twopc.purge(interval, integer) FROM PUBLIC;
"#,
    name = "views_and_grants",
    finalize
);

fn ok<T>(r: crate::error::Result<T>) -> T {
    r.unwrap_or_else(|e: TwopcError| e.raise())
}

/// The wire protocol version this build of the extension speaks.
#[pg_extern]
fn protocol_version() -> i32 {
    twopc_protocol::PROTOCOL_VERSION as i32
}

/// Records tracking data and prepares the current transaction under `gid` when the calling
/// statement ends. Must be the last statement of a transaction block. Returns the gid.
#[pg_extern(volatile, parallel_unsafe)]
fn prepare(
    gid: Option<&str>,
    coordinator: default!(Option<&str>, "NULL"),
    global_id: default!(Option<&str>, "NULL"),
) -> String {
    ok(twophase::prepare(gid, coordinator, global_id))
}

/// The Postgres participant's phase 1 in one call: unless `gid` was seen before, runs the
/// client's statements as `client_role` behind the trust boundary and marks the transaction
/// for PREPARE. `queries[i]` takes the next `param_counts[i]` values of `params` (text form,
/// NULL for SQL NULL). Returns `prepared`, or `already_prepared` / `already_committed` /
/// `already_aborted` when nothing ran. Must be the last statement of a transaction block.
#[pg_extern(volatile, parallel_unsafe)]
fn run_and_prepare(
    gid: Option<&str>,
    coordinator: Option<&str>,
    global_id: Option<&str>,
    client_role: Option<&str>,
    queries: Option<Vec<Option<String>>>,
    param_counts: Option<Vec<Option<i32>>>,
    params: Option<Vec<Option<String>>>,
) -> &'static str {
    run_and_prepare_submitted(
        gid,
        coordinator,
        global_id,
        client_role,
        queries,
        param_counts,
        params,
        None,
    )
}

/// `twopc.run_and_prepare()` that also records who submitted the transaction (the
/// coordinator's API client) in `twopc.submitters`, shown by `twopc.history.submitted_by`. An
/// overload rather than a new argument with a default: the seven-argument function and its
/// grants stay exactly as they were.
#[pg_extern(name = "run_and_prepare", volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn run_and_prepare_submitted(
    gid: Option<&str>,
    coordinator: Option<&str>,
    global_id: Option<&str>,
    client_role: Option<&str>,
    queries: Option<Vec<Option<String>>>,
    param_counts: Option<Vec<Option<i32>>>,
    params: Option<Vec<Option<String>>>,
    submitted_by: Option<&str>,
) -> &'static str {
    let (queries, counts, params) = (
        queries.unwrap_or_default(),
        param_counts.unwrap_or_default(),
        params.unwrap_or_default(),
    );
    let stmts = ok(crate::client::statements(&queries, &counts, &params));
    ok(twophase::run_and_prepare(
        gid,
        coordinator,
        global_id,
        client_role,
        submitted_by,
        &stmts,
    ))
    .as_str()
}

/// COMMIT PREPARED `gid`, recorded in `twopc.history` (a stamp on the tracking row). Not inside
/// a transaction block.
#[pg_extern(volatile, parallel_unsafe)]
fn commit_prepared(gid: Option<&str>, via: default!(Option<&str>, "'manual'")) {
    ok(twophase::finish(gid, Decision::Commit, via))
}

/// ROLLBACK PREPARED `gid`, recorded in `twopc.history`. Not inside a transaction block.
#[pg_extern(volatile, parallel_unsafe)]
fn rollback_prepared(gid: Option<&str>, via: default!(Option<&str>, "'manual'")) {
    ok(twophase::finish(gid, Decision::Abort, via))
}

/// Records the coordinator's decision (`commit` or `abort`) for `gid`; idempotent.
#[pg_extern(volatile, parallel_unsafe)]
fn record_decision(gid: Option<&str>, decision: Option<&str>) {
    ok(twophase::record_decision(gid, decision))
}

/// `in_doubt`, `committed`, `aborted` or `unknown`.
#[pg_extern(volatile)]
fn outcome(gid: Option<&str>) -> &'static str {
    ok(outcome::outcome(gid)).as_str()
}

/// `prepared`, `committed`, `aborted` or NULL: the cheap "seen this gid before?" check the
/// Postgres participant runs before every Prepare (see `twophase::gid_state`).
#[pg_extern(volatile)]
fn gid_state(gid: Option<&str>) -> Option<&'static str> {
    ok(twophase::gid_state(gid)).map(twophase::GidState::as_str)
}

/// The coordinator id encoded in a twopc-format gid, NULL for other gids.
#[pg_extern(immutable, parallel_safe)]
fn gid_coordinator(gid: &str) -> Option<String> {
    validate::gid_coordinator(gid)
}

/// The global transaction id encoded in a twopc-format gid, NULL for other gids.
#[pg_extern(immutable, parallel_safe)]
fn gid_global_id(gid: &str) -> Option<String> {
    validate::gid_global_id(gid)
}

/// (xid, gid) of the transactions currently prepared (all databases).
fn prepared_xacts() -> Vec<(pg_sys::TransactionId, String)> {
    ok(Spi::connect(|client| {
        let rows = client.select(
            "SELECT transaction, gid FROM pg_catalog.pg_prepared_xacts",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            if let (Some(x), Some(g)) =
                (row.get::<pg_sys::TransactionId>(1)?, row.get::<String>(2)?)
            {
                out.push((x, g));
            }
        }
        Ok(out)
    })
    .map_err(|e: pgrx::spi::SpiError| TwopcError::Spi {
        detail: e.to_string(),
    }))
}

/// Tracking rows of transactions that are prepared right now: found with a non-MVCC scan,
/// since they are invisible until they commit. Basis of the `twopc.in_doubt` view.
///
/// One index probe per prepared transaction (there are at most `max_prepared_transactions`),
/// not a scan of the whole tracking table, which grows with every transaction until
/// `twopc.forget()` trims it.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out inline
fn tracking_in_doubt() -> TableIterator<
    'static,
    (
        name!(xid, pg_sys::TransactionId),
        name!(gid, String),
        name!(global_id, Option<String>),
        name!(coordinator, Option<String>),
        name!(prepared_at, Option<TimestampWithTimeZone>),
        name!(prepared_by, Option<String>),
    ),
> {
    let mut tuples = Vec::new();
    for (xid, gid) in prepared_xacts() {
        tuples.extend(ok(tracking::scan(Some(&gid), |xmin, st| {
            st == XminStatus::InProgress && xmin == xid
        })));
    }
    TableIterator::new(tuples.into_iter().map(|t| {
        (
            t.xmin,
            t.gid,
            t.global_id,
            t.coordinator,
            t.prepared_at,
            t.prepared_by,
        )
    }))
}

/// Every tuple of `twopc.tracking`, visible or not, with what became of the transaction that
/// wrote it (`in_progress`, `committed`, `aborted`, `current`) and whether `twopc.forget()`
/// deleted it. For diagnostics and `twopc.stats()`.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out inline
fn tracking_tuples() -> TableIterator<
    'static,
    (
        name!(xid, pg_sys::TransactionId),
        name!(gid, String),
        name!(global_id, Option<String>),
        name!(coordinator, Option<String>),
        name!(prepared_at, Option<TimestampWithTimeZone>),
        name!(prepared_by, Option<String>),
        name!(status, &'static str),
        name!(deleted, bool),
    ),
> {
    let tuples = ok(tracking::scan(None, |_, _| true));
    TableIterator::new(tuples.into_iter().map(|t| {
        (
            t.xmin,
            t.gid,
            t.global_id,
            t.coordinator,
            t.prepared_at,
            t.prepared_by,
            t.status.as_str(),
            t.deleted,
        )
    }))
}
