//! The extension's tables: their definitions in the extension script and, right here beside
//! them, the column numbers the code below SQL reads and writes by, so that a column is added
//! or moved in one file. Also the per-backend cache of their oids.

use crate::error::{Result, TwopcError};
use pgrx::pg_sys;
use pgrx::{extension_sql, pg_guard};
use std::ffi::{CStr, CString};

extension_sql!(
    r#"
-- Written inside the transaction that twopc.prepare() prepares: invisible while in doubt,
-- visible iff committed (see src/tracking.rs). The finished_* columns are stamped in place by
-- twopc.commit_prepared(): fixed-width, so the row keeps its size ('-infinity' / 0 / '-' until
-- then; the twopc.history view shows them). Roles are stored as oids (4 bytes; the views show
-- names): this row is WAL-logged on every prepare and again by the stamp, and an oid, unlike a
-- regrole, restores from a dump into a cluster that lacks the role.
CREATE TABLE twopc.tracking (
    xid          xid8        NOT NULL,
    gid          text        NOT NULL,
    global_id    text,
    coordinator  text,
    prepared_at  timestamptz NOT NULL,
    prepared_by  oid         NOT NULL,
    finished_at  timestamptz NOT NULL,
    finished_by  oid         NOT NULL,
    finished_via "char"      NOT NULL
);
-- Unique: at most one live or in-progress row per gid. prepare() inserts with a non-waiting
-- check (UNIQUE_CHECK_PARTIAL) and only looks closer when it flags a possible conflict.
CREATE UNIQUE INDEX tracking_gid_idx ON twopc.tracking (gid);
COMMENT ON TABLE twopc.tracking IS
  'One row per transaction prepared by twopc.prepare(), written inside it: visible iff committed';

-- Append-only finish records that a tracking row cannot carry: rollbacks (their tracking row
-- dies with the transaction) and gids prepared without twopc.prepare(). Written asynchronously
-- (src/twophase.rs). Read through the twopc.history view.
CREATE TABLE twopc.finish_log (
    gid         text        NOT NULL,
    global_id   text,
    coordinator text,
    decision    text        NOT NULL CHECK (decision IN ('commit', 'abort')),
    finished_at timestamptz NOT NULL,
    finished_by text        NOT NULL,
    via         text        NOT NULL CHECK (via IN ('coordinator', 'manual', 'resolver', 'native')),
    submitted_by text
);
CREATE INDEX finish_log_gid_idx ON twopc.finish_log (gid);
COMMENT ON TABLE twopc.finish_log IS
  'Rollbacks, and commits of untracked gids, finished through the twopc functions (see twopc.history)';

-- Who asked for a transaction: the coordinator's API client (its configured name), given to
-- twopc.run_and_prepare() by the Postgres participant. Written inside the prepared
-- transaction like its tracking row (same xid), so it is visible iff that commits; a rollback
-- copies it into its finish_log row first. A table of its own, not a tracking column: adding
-- a column to twopc.tracking would wait for every transaction in doubt (they hold its lock).
CREATE TABLE twopc.submitters (
    xid          xid8        NOT NULL,
    gid          text        NOT NULL,
    submitted_by text        NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX submitters_gid_idx ON twopc.submitters (gid);
COMMENT ON TABLE twopc.submitters IS
  'The API client that submitted a transaction prepared by the Postgres participant (see twopc.history)';

-- The coordinator's decision, recorded by the Postgres participant before it finishes.
CREATE TABLE twopc.decisions (
    gid         text        PRIMARY KEY,
    decision    text        NOT NULL CHECK (decision IN ('commit', 'abort')),
    recorded_at timestamptz NOT NULL,
    recorded_by text        NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('twopc.tracking', '');
SELECT pg_catalog.pg_extension_config_dump('twopc.finish_log', '');
SELECT pg_catalog.pg_extension_config_dump('twopc.decisions', '');
SELECT pg_catalog.pg_extension_config_dump('twopc.submitters', '');
"#,
    name = "tables",
    bootstrap
);

/// Schema of every object of the extension.
pub const SCHEMA: &CStr = c"twopc";

/// `twopc.tracking` column numbers (1-based, as in `pg_attribute`).
pub(super) mod tracking_col {
    pub const XID: usize = 1;
    pub const GID: usize = 2;
    pub const GLOBAL_ID: usize = 3;
    pub const COORDINATOR: usize = 4;
    pub const PREPARED_AT: usize = 5;
    pub const PREPARED_BY: usize = 6;
    pub const FINISHED_AT: usize = 7;
    pub const FINISHED_BY: usize = 8;
    pub const FINISHED_VIA: usize = 9;
    pub const COUNT: usize = 9;
}

/// `twopc.finish_log` column numbers (1-based).
pub(super) mod finish_log_col {
    pub const GID: usize = 1;
    pub const DECISION: usize = 4;
    pub const FINISHED_AT: usize = 5;
    /// Added in 0.3.0: a 0.2.0 schema (the library upgraded, `ALTER EXTENSION ... UPDATE`
    /// not run yet) has the columns before it only.
    pub const SUBMITTED_BY: usize = 8;
    pub const COUNT: usize = 8;
}

/// `twopc.submitters` column numbers (1-based).
pub(super) mod submitters_col {
    pub const GID: usize = 2;
    pub const SUBMITTED_BY: usize = 3;
    pub const COUNT: usize = 4;
}

/// The `twopc.tracking` columns [`super::stamp_commit`] overwrites in place.
pub(super) const STAMP_COLUMNS: [usize; 3] = [
    tracking_col::FINISHED_AT,
    tracking_col::FINISHED_BY,
    tracking_col::FINISHED_VIA,
];

/// `twopc.tracking.finished_via` of a row not stamped (yet): still in doubt, rolled back (the
/// row is dead then), or committed without `twopc.commit_prepared()`.
pub(super) const NOT_FINISHED: u8 = b'-';

/// `-infinity`: the `finished_at` placeholder of a row not stamped yet.
pub(super) const TIMESTAMP_NOBEGIN: i64 = i64::MIN;

thread_local! {
    /// Bumped by every relcache invalidation this backend sees (see [`relid`]).
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Changes whenever a relation may have been dropped, recreated or altered (an `ALTER
/// EXTENSION ... UPDATE` alters the extension's tables): what a backend caches about the
/// installed schema is valid while this stays the same.
pub fn schema_generation() -> u64 {
    GENERATION.with(std::cell::Cell::get)
}

/// The relation oid of `twopc.<name>`, from a per-backend cache.
///
/// Two syscache lookups (schema, then relation) per call added up on the per-transaction
/// path, which opens three or four of these relations. The cache is emptied by a relcache
/// invalidation callback, which fires for every relation that is dropped, renamed or
/// recreated (DROP/CREATE EXTENSION included), so a stale oid is never used.
pub fn relid(name: &'static str) -> Result<pg_sys::Oid> {
    use std::cell::RefCell;
    thread_local! {
        // (name, oid) pairs: at most six entries, a linear search beats hashing.
        static CACHE: RefCell<Vec<(&'static str, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    #[pg_guard]
    unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
        CACHE.with(|c| c.borrow_mut().clear());
        GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    }
    if let Some(oid) = CACHE.with(|c| c.borrow().iter().find(|(n, _)| *n == name).map(|e| e.1)) {
        return Ok(oid);
    }
    if !REGISTERED.with(std::cell::Cell::get) {
        // SAFETY: registers a backend-lifetime callback (PostgreSQL keeps a fixed-size array of
        // them; this is done once per backend).
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0)) };
        REGISTERED.with(|r| r.set(true));
    }
    let oid = lookup_relid(name)?;
    CACHE.with(|c| c.borrow_mut().push((name, oid)));
    Ok(oid)
}

/// The uncached lookup behind [`relid`].
fn lookup_relid(name: &str) -> Result<pg_sys::Oid> {
    let missing = || TwopcError::MissingObject {
        name: format!("twopc.{name}"),
    };
    let cname = CString::new(name).map_err(|_| missing())?;
    // SAFETY: both are plain syscache lookups with NUL-terminated strings; missing_ok = true.
    let oid = unsafe {
        let nsp = pg_sys::get_namespace_oid(SCHEMA.as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return Err(missing());
        }
        pg_sys::get_relname_relid(cname.as_ptr(), nsp)
    };
    if oid == pg_sys::InvalidOid {
        Err(missing())
    } else {
        Ok(oid)
    }
}
