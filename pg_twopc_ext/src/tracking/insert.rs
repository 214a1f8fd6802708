//! Writing the extension's rows below SQL: one heap + index insert ([`insert_row`]) shared by
//! the tracking row, the finish log and the decisions.

use super::tables::{relid, NOT_FINISHED, STAMP_COLUMNS, TIMESTAMP_NOBEGIN};
use crate::error::{Result, TwopcError};
use pgrx::pg_sys;
use pgrx::IntoDatum;
use std::ffi::CStr;

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
pub(super) fn current_user_oid_datum() -> pg_sys::Datum {
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

/// Where [`insert_row`] put a row, and whether a unique index flagged it.
struct Inserted {
    /// `false` when a unique index flagged a possible conflict under [`UniqueCheck::Flag`].
    clean: bool,
    /// The heap tuple's position.
    tid: pg_sys::ItemPointerData,
    /// The inserting (sub)transaction: the tuple's xmin.
    xmin: pg_sys::TransactionId,
}

/// Inserts one row (heap + indexes, WAL-logged) into `twopc.<table>`.
///
/// What `CatalogTupleInsert` does, minus two things it cannot be told: a unique check that
/// neither waits nor raises, and building every index's `IndexInfo` through the executor's
/// index-opening code. Indexes are maintained for plain columns only; an expression or
/// partial index someone added to an extension table is refused with a clean error instead of
/// being left stale, and so is an index on one of the `rewritten` columns (1-based), which
/// [`super::stamp_commit`] overwrites in place without touching indexes.
fn insert_row(
    table: &'static str,
    values: &[Option<pg_sys::Datum>],
    unique: UniqueCheck,
    rewritten: &[usize],
) -> Result<Inserted> {
    let oid = relid(table)?;
    let flagged = match unique {
        UniqueCheck::Flag { index } => relid(index)?,
        UniqueCheck::Enforce => pg_sys::InvalidOid,
    };
    let mut clean = true;
    // SAFETY: the relation is opened here with RowExclusiveLock, kept until the end of the
    // transaction (NoLock at close), and its indexes with RowExclusiveLock released after the
    // insert, like any INSERT; the tuple is formed from exactly `natts` datums, which we check
    // against the descriptor first; index key columns are attribute numbers of that same
    // descriptor (checked before use).
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        // A schema one version behind the library (ALTER EXTENSION ... UPDATE not run yet)
        // lacks the columns added since, which are always nullable and at the end: drop them
        // from the row when they are NULL anyway.
        let natts = (*desc).natts as usize;
        let values = match values.split_at_checked(natts) {
            Some((kept, added)) if added.iter().all(Option::is_none) => kept,
            _ => values,
        };
        if natts != values.len() {
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
        // heap_insert stamped the header of `tuple` itself and set its t_self.
        let tid = (*tuple).t_self;
        let xmin = (*(*tuple).t_data).t_choice.t_heap.t_xmin;

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
                pg_sys::index_close(index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
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
                pg_sys::index_close(index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
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
            // Released at once, as the executor's ExecCloseIndices does: the table's lock,
            // kept, is what holds off DROP INDEX and REINDEX (they lock the table first), and a
            // prepared transaction that kept the index's lock too would carry one lock more
            // into the shared lock table, its state file and COMMIT PREPARED's release.
            pg_sys::index_close(index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        }
        pg_sys::list_free(indexes);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        Ok(Inserted { clean, tid, xmin })
    }
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
    let inserted = insert_row(
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
    )?;
    if inserted.clean {
        super::recent::remember(gid, inserted.xmin, inserted.tid);
    }
    Ok(inserted.clean)
}

/// Appends a row to `twopc.finish_log` (who finished which gid, how, and when): rollbacks, and
/// commits that [`super::stamp_commit`] could not record.
pub fn insert_finish_log(
    gid: &str,
    global_id: Option<&str>,
    coordinator: Option<&str>,
    decision: &str,
    via: &str,
    submitted_by: Option<&str>,
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
            text_datum(submitted_by),
        ],
        UniqueCheck::Enforce,
        &[],
    )
    .map(|_| ())
}

/// Records who submitted the current (top-level) transaction, about to be prepared under
/// `gid`, in `twopc.submitters`: part of the transaction, like its tracking row.
pub fn insert_submitter(gid: &str, submitted_by: &str) -> Result<()> {
    // SAFETY: as in insert_tracking (the xid is assigned by then anyway).
    let (fxid, now) = unsafe {
        (
            pg_sys::GetTopFullTransactionId(),
            pg_sys::GetCurrentTimestamp(),
        )
    };
    insert_row(
        "submitters",
        &[
            Some(pg_sys::Datum::from(fxid.value)),
            text_datum(Some(gid)),
            text_datum(Some(submitted_by)),
            Some(pg_sys::Datum::from(now)),
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
