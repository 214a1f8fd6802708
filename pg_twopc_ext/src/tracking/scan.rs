//! Reading the extension's tables below SQL: `SnapshotAny` scans of `twopc.tracking` (in-doubt
//! and dead rows included, each classified by its xmin), the MVCC probe of the finish log, and
//! the in-progress submitter of a prepared transaction.

use super::tables::{finish_log_col, relid, submitters_col, tracking_col};
use crate::error::{Result, TwopcError};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum};
use std::ffi::CStr;

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
pub(super) unsafe fn classify(
    tuple: pg_sys::HeapTuple,
) -> (pg_sys::TransactionId, XminStatus, bool) {
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
pub(super) unsafe fn text_of(d: pg_sys::Datum, null: bool) -> Option<String> {
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
/// SQL; `natts` (the columns the caller's arrays hold, and the fewest it can work with) guards
/// against a table of another shape (an older or damaged install).
///
/// # Safety
/// `snapshot` must stay valid for the scan (a static such as `SnapshotAnyData`, or null for a
/// fresh catalog snapshot). `each` gets a tuple that is pinned only until it returns: it must
/// copy out what it keeps.
unsafe fn each_tuple(
    table: &'static str,
    natts: std::ops::RangeInclusive<usize>,
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
        if !natts.contains(&((*desc).natts as usize)) {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            return Err(TwopcError::MissingObject {
                name: format!("twopc.{table} with {} columns", natts.end()),
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
/// otherwise. The scan behind [`scan`] and [`super::prepared_rows`].
///
/// # Safety
/// As for [`each_tuple`]: `each` must copy out what it keeps.
pub(super) unsafe fn each_tracking_tuple(
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
            tracking_col::COUNT..=tracking_col::COUNT,
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
    use finish_log_col::{COUNT, DECISION, FINISHED_AT, GID, SUBMITTED_BY};
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
            // A 0.2.0 schema lacks submitted_by; the arrays below hold every column.
            SUBMITTED_BY - 1..=COUNT,
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

/// Who submitted the transaction prepared under `gid` (its `twopc.submitters` row, written
/// inside it and still in progress: read with `SnapshotAny` by a rollback before it kills the
/// row). `None` for a transaction without one, or on a schema without the table (0.2.0).
pub fn submitter_in_progress(gid: &str) -> Result<Option<String>> {
    use submitters_col::{COUNT, GID, SUBMITTED_BY};
    if relid("submitters").is_err() {
        return Ok(None);
    }
    let key = GidKey {
        index: "submitters_gid_idx",
        column: GID,
        gid,
    };
    let mut found = None;
    // SAFETY: SnapshotAnyData is a static; the closure copies what it keeps before the scan
    // moves on.
    unsafe {
        each_tuple(
            "submitters",
            COUNT..=COUNT,
            Some(key),
            &raw mut pg_sys::SnapshotAnyData,
            |tuple, desc| {
                if classify(tuple).1 != XminStatus::InProgress {
                    return;
                }
                let mut values = [pg_sys::Datum::from(0usize); COUNT];
                let mut nulls = [true; COUNT];
                pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                if text_of(values[GID - 1], nulls[GID - 1]).as_deref() == Some(gid) {
                    found = text_of(values[SUBMITTED_BY - 1], nulls[SUBMITTED_BY - 1]);
                }
            },
        )?;
    }
    Ok(found)
}
