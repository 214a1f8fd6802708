//! The extension's own tables, written and read below SQL.
//!
//! # Why a row inside the prepared transaction
//!
//! `twopc.prepare()` inserts one row into `twopc.tracking` *inside the transaction it is about
//! to prepare*. That row costs no extra disk flush: it is WAL-logged with the transaction's
//! other changes and made durable by the flush PREPARE TRANSACTION does anyway. It then
//! behaves exactly like the transaction:
//!
//! * while the transaction is prepared (in doubt) the row exists on disk but is invisible to
//!   every MVCC snapshot; it survives `pg_ctl stop -m immediate` because it is all WAL;
//! * when the transaction commits, the row becomes visible: a visible tracking row *is* the
//!   commit marker (the technique Citus uses for `pg_dist_transaction`);
//! * when it aborts, the row is dead: an aborted xmin, found by a non-MVCC scan, is positive
//!   evidence of the abort, and no row at all is read as abort (presumed abort).
//!
//! When `twopc.commit_prepared()` commits it, the row also gets the finish stamp (who, when,
//! via which path) in place, which is what `twopc.history` shows for it ([`stamp_commit`]).
//!
//! # Why below SQL
//!
//! Reading in-doubt rows needs a scan with `SnapshotAny` and a look at each tuple's raw xmin,
//! which SQL cannot express. Writing is a heap insert plus index maintenance ([`insert_row`])
//! rather than SPI: there is no parse/plan per call on the hot path, and the
//! bookkeeping does not depend on the caller holding INSERT privileges on the twopc tables,
//! so `EXECUTE` on the functions is the only capability a role needs (see the README's
//! security section). All SQL-visible reads (views, `outcome`) use normal privileges.
//!
//! Both scans use `systable_beginscan` with `SnapshotAny`: with an index (`tracking_gid_idx`)
//! to look up one gid, without one for the full scan behind `twopc.tracking_in_doubt()`.
//! With a non-MVCC snapshot the heap scan runs tuple at a time and returns every tuple that has
//! not been pruned away, whatever its visibility.

use crate::error::{Result, TwopcError};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::{pg_guard, FromDatum, IntoDatum};
use std::ffi::{CStr, CString};

/// Schema of every object of the extension.
pub const SCHEMA: &CStr = c"twopc";

/// `twopc.tracking` column numbers (1-based, as in `pg_attribute`).
mod tracking_col {
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

/// The `twopc.tracking` columns [`stamp_commit`] overwrites in place.
const STAMP_COLUMNS: [usize; 3] = [
    tracking_col::FINISHED_AT,
    tracking_col::FINISHED_BY,
    tracking_col::FINISHED_VIA,
];

/// `twopc.tracking.finished_via` of a row not stamped (yet): still in doubt, rolled back (the
/// row is dead then), or committed without `twopc.commit_prepared()`.
const NOT_FINISHED: u8 = b'-';

/// `-infinity`: the `finished_at` placeholder of a row not stamped yet.
const TIMESTAMP_NOBEGIN: i64 = i64::MIN;

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

/// A datum for a `text` column.
fn text_datum(s: Option<&str>) -> Option<pg_sys::Datum> {
    s.and_then(|s| s.into_datum())
}

/// The name of the current user (`current_user`).
fn current_user() -> &'static CStr {
    // SAFETY: GetUserId is always valid inside a transaction; noerr = false raises a normal
    // ERROR for a dropped role (cannot happen for the session's own user). The string is
    // palloc'd in the current memory context, which outlives our use of it.
    unsafe { CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }
}

/// The current user's oid as a datum (`twopc.tracking.prepared_by` / `finished_by`).
fn current_user_oid_datum() -> pg_sys::Datum {
    // SAFETY: GetUserId only reads backend state.
    pg_sys::Datum::from(unsafe { pg_sys::GetUserId() })
}

/// `current_user` as a `text` datum (finish_log and decisions: `text` keeps those rows 60
/// bytes smaller than a fixed-width `name`).
fn current_user_text_datum() -> Option<pg_sys::Datum> {
    text_datum(current_user().to_str().ok())
}

/// How [`insert_row`] treats a unique index of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueCheck {
    /// Raise a unique violation (waiting for an in-progress conflicting inserter first), as an
    /// `INSERT` does.
    Enforce,
    /// For the named unique index: never wait and never raise; insert the entry and report a
    /// *possible* conflict (a live or in-progress row with the same key) by returning `false`
    /// (`UNIQUE_CHECK_PARTIAL`, the mode deferred constraints use). For the tracking row: the
    /// conflicting inserter may be a prepared transaction, and waiting for it could take
    /// forever; the caller looks closer only when told to. Any other unique index (one an
    /// administrator added) is enforced as by [`UniqueCheck::Enforce`].
    Flag {
        /// The index whose conflicts are only flagged.
        index: &'static str,
    },
}

/// Inserts one row (heap + indexes, WAL-logged) into `twopc.<table>`; `false` when a unique
/// index flagged a possible conflict under [`UniqueCheck::Flag`].
///
/// What `CatalogTupleInsert` does, minus two things it cannot be told: a unique check that
/// neither waits nor raises, and building every index's `IndexInfo` through the executor's
/// index-opening code. Indexes are maintained for plain columns only; an expression or
/// partial index someone added to an extension table is refused with a clean error instead of
/// being left stale, and so is an index on one of the `rewritten` columns (1-based), which
/// [`stamp_commit`] overwrites in place without touching indexes.
fn insert_row(
    table: &'static str,
    values: &[Option<pg_sys::Datum>],
    unique: UniqueCheck,
    rewritten: &[usize],
) -> Result<bool> {
    let oid = relid(table)?;
    let flagged = match unique {
        UniqueCheck::Flag { index } => relid(index)?,
        UniqueCheck::Enforce => pg_sys::InvalidOid,
    };
    let mut clean = true;
    // SAFETY: the relation and its indexes are opened here with RowExclusiveLock, kept until
    // the end of the transaction (NoLock at close), like any INSERT; the tuple is formed from
    // exactly `natts` datums, which we check against the descriptor first; index key columns
    // are attribute numbers of that same descriptor (checked before use).
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        if (*desc).natts as usize != values.len() {
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            return Err(TwopcError::MissingObject {
                name: format!("twopc.{table} with {} columns", values.len()),
            });
        }
        let mut datums: Vec<pg_sys::Datum> = values
            .iter()
            .map(|v| v.unwrap_or(pg_sys::Datum::from(0usize)))
            .collect();
        let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
        let tuple = pg_sys::heap_form_tuple(desc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(rel, tuple);

        let indexes = pg_sys::RelationGetIndexList(rel);
        let count = if indexes.is_null() {
            0
        } else {
            (*indexes).length as usize
        };
        for i in 0..count {
            let index_oid = (*(*indexes).elements.add(i)).oid_value;
            let index = pg_sys::index_open(index_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let info = pg_sys::BuildIndexInfo(index);
            if !(*info).ii_ReadyForInserts {
                // Being built concurrently: CREATE INDEX CONCURRENTLY picks the row up itself.
                pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
                continue;
            }
            let keys = (*info).ii_NumIndexAttrs as usize;
            let plain = (*info).ii_Expressions.is_null()
                && (*info).ii_Predicate.is_null()
                && (0..keys).all(|k| {
                    let att = (*info).ii_IndexAttrNumbers[k];
                    att > 0 && att as usize <= values.len() && !rewritten.contains(&(att as usize))
                });
            if !plain {
                let name = CStr::from_ptr(pg_sys::get_rel_name(index_oid))
                    .to_string_lossy()
                    .into_owned();
                pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
                pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
                return Err(TwopcError::UnsupportedIndex {
                    table: format!("twopc.{table}"),
                    index: name,
                });
            }
            let mut key_values = [pg_sys::Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
            let mut key_nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
            for k in 0..keys {
                let att = (*info).ii_IndexAttrNumbers[k] as usize - 1;
                key_values[k] = datums[att];
                key_nulls[k] = nulls[att];
            }
            let is_unique = (*(*index).rd_index).indisunique;
            let check = if !is_unique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            } else if index_oid == flagged {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_PARTIAL
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            };
            let no_conflict = pg_sys::index_insert(
                index,
                key_values.as_mut_ptr(),
                key_nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                rel,
                check,
                false,
                info,
            );
            if check == pg_sys::IndexUniqueCheck::UNIQUE_CHECK_PARTIAL && !no_conflict {
                clean = false;
            }
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::list_free(indexes);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    Ok(clean)
}

/// Writes the tracking row of the current (top-level) transaction. Called by `twopc.prepare()`
/// right before the transaction is marked for PREPARE, so the row is part of it. `false` when
/// the unique gid index saw another live or in-progress row with this gid (possibly: the
/// caller checks, see [`UniqueCheck::Flag`]).
pub fn insert_tracking(
    gid: &str,
    global_id: Option<&str>,
    coordinator: Option<&str>,
) -> Result<bool> {
    // SAFETY: plain accessors of the current transaction; assigning the xid here is what the
    // insert below would do anyway.
    let (fxid, now) = unsafe {
        (
            pg_sys::GetTopFullTransactionId(),
            pg_sys::GetCurrentTimestamp(),
        )
    };
    insert_row(
        "tracking",
        &[
            Some(pg_sys::Datum::from(fxid.value)),
            text_datum(Some(gid)),
            text_datum(global_id),
            text_datum(coordinator),
            Some(pg_sys::Datum::from(now)),
            Some(current_user_oid_datum()),
            // Placeholders of the same width as the stamp (see stamp_commit).
            Some(pg_sys::Datum::from(TIMESTAMP_NOBEGIN)),
            Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
            Some(pg_sys::Datum::from(NOT_FINISHED as i8)),
        ],
        UniqueCheck::Flag {
            index: "tracking_gid_idx",
        },
        &STAMP_COLUMNS,
    )
}

/// A tracking row whose transaction was in progress when [`prepared_rows`] looked.
pub struct PreparedRow {
    /// A copy of the tuple (palloc'd in the current memory context), for [`stamp_commit`].
    tuple: pg_sys::HeapTuple,
    /// Column `coordinator`.
    pub coordinator: Option<String>,
    /// Column `global_id`.
    pub global_id: Option<String>,
}

/// The tracking row(s) of `gid` whose transaction is in progress — the one prepared under it,
/// and, for a moment, one another session is trying to prepare under the same gid (it will be
/// refused) — read by `twopc.commit_prepared()` / `rollback_prepared()` before they finish the
/// transaction: a commit stamps one of them ([`stamp_commit`]), a rollback (which kills the
/// row) and a commit that cannot be stamped log the identity they carry.
///
/// Takes RowExclusiveLock on `twopc.tracking` (kept until the end of the transaction, as the
/// stamp needs it anyway) before looking, so that nothing that moves rows (VACUUM FULL,
/// CLUSTER, TRUNCATE) can run between this probe and the stamp that writes at the row's
/// position.
pub fn prepared_rows(gid: &str) -> Result<Vec<PreparedRow>> {
    let oid = relid("tracking")?;
    // SAFETY: a lock taken and kept (NoLock at close) like an INSERT's.
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    let mut rows = Vec::new();
    // SAFETY: the closure copies what it keeps (a palloc'd tuple, Rust Strings) before the
    // scan moves on.
    unsafe {
        each_tracking_tuple(Some(gid), |tuple, desc| {
            if classify(tuple).1 != XminStatus::InProgress {
                return;
            }
            let mut values = [pg_sys::Datum::from(0usize); tracking_col::COUNT];
            let mut nulls = [true; tracking_col::COUNT];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let text = |col: usize| text_of(values[col - 1], nulls[col - 1]);
            rows.push(PreparedRow {
                tuple: pg_sys::heap_copytuple(tuple),
                coordinator: text(tracking_col::COORDINATOR),
                global_id: text(tracking_col::GLOBAL_ID),
            });
        })?;
    }
    Ok(rows)
}

/// Stamps who committed, when and how onto the tracking row that the `COMMIT PREPARED` just
/// made visible — the one of `rows` ([`prepared_rows`], read before it) whose transaction
/// committed — in place: `true` when done, `false` when there is none (a gid prepared without
/// `twopc.prepare()`) or the row cannot be stamped, and the caller writes a
/// `twopc.finish_log` row instead.
///
/// Why in place and not a history row: an inplace update needs no transaction id, no commit
/// record and no index entry — it is one small WAL record (`XLOG_HEAP_INPLACE`), flushed with
/// the next WAL flush. A new row needed all of that, plus a commit of its own, and the
/// bookkeeping together was measured at a fifth of pgbench throughput (`bench/RESULTS.md`).
/// The stamp is exactly as durable as the asynchronously committed row was: a crash in the
/// next few hundred milliseconds can lose who and how, never the outcome (the row itself is the
/// commit marker). Unlike a row in the surrounding transaction, the stamp also stays when the
/// calling statement fails afterwards: it describes something that already happened.
///
/// The row keeps its exact size (fixed-width columns, same NULLs), which an inplace update
/// requires, and no index covers the stamped columns ([`insert_row`] refuses such an index;
/// one created since is checked here). PostgreSQL 15's `heap_inplace_update` overwrites the
/// data part under an exclusive buffer lock and WAL-logs it; it takes no tuple lock. That is
/// enough here: the row position is pinned by the lock [`prepared_rows`] took, nothing else
/// ever rewrites a tracking row (`twopc.forget()` only deletes, which touches the header, not
/// the data), and only one COMMIT PREPARED of a gid can succeed. The newer
/// `systable_inplace_update_begin` (which also takes a tuple lock, against concurrent
/// `UPDATE`s of catalog rows) cost twice as much per commit, measured with `perf`; a port to
/// PostgreSQL 18, which no longer has `heap_inplace_update`, would use it.
pub fn stamp_commit(rows: &[PreparedRow], via: u8) -> Result<bool> {
    // SAFETY: reading the xmin of our own palloc'd copies; a clog lookup.
    let committed = rows.iter().map(|r| r.tuple).find(|&t| unsafe {
        pg_sys::TransactionIdDidCommit((*(*t).t_data).t_choice.t_heap.t_xmin)
    });
    let Some(committed) = committed else {
        return Ok(false);
    };
    let oid = relid("tracking")?;
    // SAFETY: the relation is already locked RowExclusive by prepared_rows (opened again here,
    // closed with NoLock); `committed` is a copy of a tuple of this relation, checked against
    // the descriptor's width before it is deformed and re-formed; the lengths are compared
    // before the in-place write, which refuses a tuple of another size itself too.
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        let indexed = pg_sys::RelationGetIndexAttrBitmap(
            rel,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_ALL,
        );
        let offset = pg_sys::FirstLowInvalidHeapAttributeNumber;
        let stamp_indexed = STAMP_COLUMNS
            .iter()
            .any(|&c| pg_sys::bms_is_member(c as i32 - offset, indexed));
        if (*desc).natts as usize != tracking_col::COUNT || stamp_indexed {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Ok(false);
        }
        let mut values = [pg_sys::Datum::from(0usize); tracking_col::COUNT];
        let mut nulls = [true; tracking_col::COUNT];
        pg_sys::heap_deform_tuple(committed, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let via_col = tracking_col::FINISHED_VIA - 1;
        if nulls[via_col] || values[via_col].value() as u8 != NOT_FINISHED {
            // A row of another origin (written by hand): left alone.
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Ok(false);
        }
        values[tracking_col::FINISHED_AT - 1] = pg_sys::Datum::from(pg_sys::GetCurrentTimestamp());
        values[tracking_col::FINISHED_BY - 1] = current_user_oid_datum();
        values[via_col] = pg_sys::Datum::from(via as i8);
        let stamped = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let same_shape = (*stamped).t_len == (*committed).t_len
            && (*(*stamped).t_data).t_hoff == (*(*committed).t_data).t_hoff;
        if same_shape {
            (*stamped).t_self = (*committed).t_self;
            pg_sys::heap_inplace_update(rel, stamped);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        // A row of another shape cannot come from prepare() (fixed-width stamp, same NULLs);
        // it is left alone and the caller logs the finish instead.
        Ok(same_shape)
    }
}

/// Appends a row to `twopc.finish_log` (who finished which gid, how, and when): rollbacks, and
/// commits that [`stamp_commit`] could not record.
pub fn insert_finish_log(
    gid: &str,
    global_id: Option<&str>,
    coordinator: Option<&str>,
    decision: &str,
    via: &str,
) -> Result<()> {
    // SAFETY: GetCurrentTimestamp has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    insert_row(
        "finish_log",
        &[
            text_datum(Some(gid)),
            text_datum(global_id),
            text_datum(coordinator),
            text_datum(Some(decision)),
            Some(pg_sys::Datum::from(now)),
            current_user_text_datum(),
            text_datum(Some(via)),
        ],
        UniqueCheck::Enforce,
        &[],
    )
    .map(|_| ())
}

/// Records the coordinator's decision for a gid in `twopc.decisions`.
pub fn insert_decision(gid: &str, decision: &str) -> Result<()> {
    // SAFETY: GetCurrentTimestamp has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    insert_row(
        "decisions",
        &[
            text_datum(Some(gid)),
            text_datum(Some(decision)),
            Some(pg_sys::Datum::from(now)),
            current_user_text_datum(),
        ],
        UniqueCheck::Enforce,
        &[],
    )
    .map(|_| ())
}

/// What the inserting transaction of a tracking tuple did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XminStatus {
    /// Inserted by the current transaction.
    Current,
    /// Still running, or prepared and in doubt.
    InProgress,
    /// Committed: the tuple is (or was) visible.
    Committed,
    /// Aborted, or crashed before committing (never to commit).
    Aborted,
}

impl XminStatus {
    /// SQL-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            XminStatus::Current => "current",
            XminStatus::InProgress => "in_progress",
            XminStatus::Committed => "committed",
            XminStatus::Aborted => "aborted",
        }
    }
}

/// One tracking tuple as found by a `SnapshotAny` scan.
#[derive(Debug, Clone)]
pub struct TrackedTuple {
    /// Raw xmin: the xid of the transaction that was prepared.
    pub xmin: pg_sys::TransactionId,
    /// What became of that transaction.
    pub status: XminStatus,
    /// The tuple was deleted (by `twopc.forget()`) by a transaction that committed.
    pub deleted: bool,
    /// Column `gid`.
    pub gid: String,
    /// Column `global_id`.
    pub global_id: Option<String>,
    /// Column `coordinator`.
    pub coordinator: Option<String>,
    /// Column `prepared_at`.
    pub prepared_at: Option<TimestampWithTimeZone>,
    /// Column `prepared_by`.
    pub prepared_by: Option<String>,
}

/// Classifies a tuple's xmin. Hint bits first: they are set once the outcome is known and,
/// unlike the clog, never go away (the clog is truncated for frozen history).
///
/// # Safety
/// `tuple` must point to a valid, pinned heap tuple.
unsafe fn classify(tuple: pg_sys::HeapTuple) -> (pg_sys::TransactionId, XminStatus, bool) {
    unsafe {
        let hdr = (*tuple).t_data;
        let xmin = (*hdr).t_choice.t_heap.t_xmin;
        let xmax = (*hdr).t_choice.t_heap.t_xmax;
        let infomask = u32::from((*hdr).t_infomask);
        // Deleted for good: by a committed transaction, and not a mere row lock. A deletion
        // still running (or one that will roll back) leaves the row live, so that prepare()'s
        // reuse check never lets a second live row in beside it.
        let deleted = xmax != pg_sys::InvalidTransactionId
            && infomask & pg_sys::HEAP_XMAX_INVALID == 0
            && infomask & pg_sys::HEAP_XMAX_LOCK_ONLY == 0
            && infomask & pg_sys::HEAP_XMAX_IS_MULTI == 0
            && infomask & pg_sys::HEAP_LOCK_MASK != pg_sys::HEAP_XMAX_EXCL_LOCK
            && (infomask & pg_sys::HEAP_XMAX_COMMITTED != 0
                || pg_sys::TransactionIdDidCommit(xmax));
        let status = if infomask & pg_sys::HEAP_XMIN_COMMITTED != 0 {
            // Includes HEAP_XMIN_FROZEN (both bits).
            XminStatus::Committed
        } else if infomask & pg_sys::HEAP_XMIN_INVALID != 0 {
            XminStatus::Aborted
        } else if pg_sys::TransactionIdIsCurrentTransactionId(xmin) {
            XminStatus::Current
        } else if pg_sys::TransactionIdIsInProgress(xmin) {
            XminStatus::InProgress
        } else if pg_sys::TransactionIdDidCommit(xmin) {
            XminStatus::Committed
        } else {
            // Aborted, or was running when the server crashed: it will never commit.
            XminStatus::Aborted
        };
        (xmin, status, deleted)
    }
}

/// Reads a `text` datum (possibly NULL) into a `String`.
///
/// # Safety
/// `d` must be a valid text datum when `null` is false.
unsafe fn text_of(d: pg_sys::Datum, null: bool) -> Option<String> {
    unsafe { String::from_datum(d, null) }
}

/// A lookup by gid for [`each_tuple`]: the index to use and the gid column it covers.
struct GidKey<'a> {
    index: &'static str,
    column: usize,
    gid: &'a str,
}

/// Runs a `systable` scan over `twopc.<table>` — by gid through the key's index when a key is
/// given, the whole table otherwise — and hands every tuple it returns to `each` with the
/// table's descriptor. The one place that opens, scans and closes the extension's tables below
/// SQL; `natts` guards against a table of another shape (an older or damaged install).
///
/// # Safety
/// `snapshot` must stay valid for the scan (a static such as `SnapshotAnyData`, or null for a
/// fresh catalog snapshot). `each` gets a tuple that is pinned only until it returns: it must
/// copy out what it keeps.
unsafe fn each_tuple(
    table: &'static str,
    natts: usize,
    key: Option<GidKey<'_>>,
    snapshot: pg_sys::Snapshot,
    mut each: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) -> Result<()> {
    let table_oid = relid(table)?;
    let index_oid = match &key {
        Some(k) => relid(k.index)?,
        None => pg_sys::InvalidOid,
    };
    // SAFETY: standard systable scan protocol: the relation is locked AccessShare for the
    // scan, the scan key lives until endscan, and every returned tuple stays pinned until the
    // next getnext (the caller's contract on `each`).
    unsafe {
        let rel = pg_sys::table_open(table_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        if (*desc).natts as usize != natts {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            return Err(TwopcError::MissingObject {
                name: format!("twopc.{table} with {natts} columns"),
            });
        }
        let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
        if let Some(k) = &key {
            pg_sys::ScanKeyInit(
                &mut scan_key,
                k.column as pg_sys::AttrNumber,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::Oid::from(pg_sys::F_TEXTEQ),
                k.gid.into_datum().expect("text datum"),
            );
            // ScanKeyInit assumes the C collation, right for the catalogs' name columns; the
            // btree descends by the index's own ordering, which for our text columns is the
            // database's collation. Under a collation that does not sort like C (en-US, say,
            // which ignores punctuation at first) a C-ordered descent can miss the entry.
            let att = (*desc).attrs.as_ptr().add(k.column - 1);
            scan_key.sk_collation = (*att).attcollation;
        }
        let scan = pg_sys::systable_beginscan(
            rel,
            index_oid,
            key.is_some(),
            snapshot,
            i32::from(key.is_some()),
            &mut scan_key,
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            each(tuple, desc);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    Ok(())
}

/// Scans `twopc.tracking` with `SnapshotAny`, by gid through `tracking_gid_idx` when `gid` is
/// given, all of it otherwise, keeping the tuples `keep` accepts (judged on xmin and status
/// before the tuple is decoded, so a full scan decodes only what it returns).
pub fn scan(
    gid: Option<&str>,
    mut keep: impl FnMut(pg_sys::TransactionId, XminStatus) -> bool,
) -> Result<Vec<TrackedTuple>> {
    let mut out = Vec::new();
    // SAFETY: the closure copies what it keeps (Rust Strings) before the next tuple.
    unsafe {
        each_tracking_tuple(gid, |tuple, desc| {
            let (xmin, status, deleted) = classify(tuple);
            if !keep(xmin, status) {
                return;
            }
            let mut values = [pg_sys::Datum::from(0usize); tracking_col::COUNT];
            let mut nulls = [true; tracking_col::COUNT];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let v = |col: usize| (values[col - 1], nulls[col - 1]);
            let (d, n) = v(tracking_col::GID);
            let Some(found_gid) = text_of(d, n) else {
                return;
            };
            // An index scan with a lossy key cannot happen for text equality, but a heap
            // scan with a key filter is not what we do either: compare anyway.
            if gid.is_some_and(|g| g != found_gid) {
                return;
            }
            let (d, n) = v(tracking_col::GLOBAL_ID);
            let global_id = text_of(d, n);
            let (d, n) = v(tracking_col::COORDINATOR);
            let coordinator = text_of(d, n);
            let (d, n) = v(tracking_col::PREPARED_AT);
            let prepared_at = TimestampWithTimeZone::from_datum(d, n);
            let (d, n) = v(tracking_col::PREPARED_BY);
            let prepared_by = if n {
                None
            } else {
                // A role dropped since shows as NULL (noerr = true).
                let role = pg_sys::Oid::from(d.value() as u32);
                let name = pg_sys::GetUserNameFromId(role, true);
                (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
            };
            let _ = tracking_col::XID;
            out.push(TrackedTuple {
                xmin,
                status,
                deleted,
                gid: found_gid,
                global_id,
                coordinator,
                prepared_at,
                prepared_by,
            });
        })?;
    }
    Ok(out)
}

/// [`each_tuple`] over `twopc.tracking` with `SnapshotAny` (every tuple not yet pruned away,
/// whatever its visibility): by gid through `tracking_gid_idx` when `gid` is given, all of it
/// otherwise. The scan behind [`scan`] and [`prepared_rows`].
///
/// # Safety
/// As for [`each_tuple`]: `each` must copy out what it keeps.
unsafe fn each_tracking_tuple(
    gid: Option<&str>,
    each: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) -> Result<()> {
    let key = gid.map(|gid| GidKey {
        index: "tracking_gid_idx",
        column: tracking_col::GID,
        gid,
    });
    // SAFETY: SnapshotAnyData is a static, never modified by scans; the caller's contract on
    // `each` is each_tuple's.
    unsafe {
        each_tuple(
            "tracking",
            tracking_col::COUNT,
            key,
            &raw mut pg_sys::SnapshotAnyData,
            each,
        )
    }
}

/// The decision of the latest `twopc.finish_log` row for `gid` (MVCC, through
/// `finish_log_gid_idx`), if any. Below SQL for the same reason as [`scan`]: it runs on the
/// Postgres participant's per-transaction path ([`crate::twophase::gid_state`]), where a parsed and planned query
/// would cost more than the probe itself.
pub fn history_decision(gid: &str) -> Result<Option<String>> {
    // Column numbers of twopc.finish_log (1-based).
    const GID: usize = 1;
    const DECISION: usize = 4;
    const FINISHED_AT: usize = 5;
    const COUNT: usize = 7;
    let key = GidKey {
        index: "finish_log_gid_idx",
        column: GID,
        gid,
    };
    let mut latest: Option<(i64, String)> = None;
    // SAFETY: a null snapshot makes systable_beginscan take a fresh catalog (MVCC) snapshot,
    // which sees exactly the committed finish_log rows; the closure copies what it keeps.
    unsafe {
        each_tuple(
            "finish_log",
            COUNT,
            Some(key),
            std::ptr::null_mut(),
            |tuple, desc| {
                let mut values = [pg_sys::Datum::from(0usize); COUNT];
                let mut nulls = [true; COUNT];
                pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                let (Some(found), Some(decision)) = (
                    text_of(values[GID - 1], nulls[GID - 1]),
                    text_of(values[DECISION - 1], nulls[DECISION - 1]),
                ) else {
                    return;
                };
                if found != gid {
                    return;
                }
                // timestamptz is an int64 datum; later rows win, as in ORDER BY finished_at DESC.
                let at = values[FINISHED_AT - 1].value() as i64;
                if latest.as_ref().is_none_or(|(t, _)| at >= *t) {
                    latest = Some((at, decision));
                }
            },
        )?;
    }
    Ok(latest.map(|(_, d)| d))
}
