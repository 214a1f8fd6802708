//! The finish stamp: who committed a tracked transaction, when and how, written in place on
//! the tracking row its COMMIT PREPARED made visible.

use super::insert::current_user_oid_datum;
use super::scan::{classify, each_tracking_tuple, text_of, XminStatus};
use super::tables::{relid, tracking_col, NOT_FINISHED, STAMP_COLUMNS};
use crate::error::Result;
use pgrx::pg_sys;

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
/// row) and a commit that cannot be stamped log the identity they carry. When this backend
/// prepared the gid itself, the row it remembers ([`super::recent`]) is the answer, read by its
/// position; otherwise, or when that row is not what it was, the gid index is scanned.
///
/// Takes RowExclusiveLock on `twopc.tracking` (kept until the end of the transaction, as the
/// stamp needs it anyway) before looking, so that nothing that moves rows (VACUUM FULL,
/// CLUSTER, TRUNCATE) can run between this probe and the stamp that writes at the row's
/// position.
pub fn prepared_rows(gid: &str) -> Result<Vec<PreparedRow>> {
    let oid = relid("tracking")?;
    // SAFETY: a lock taken and kept (NoLock at close) like an INSERT's; the remembered
    // position is checked by remembered_row before its tuple is used.
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let remembered =
            super::recent::take(gid).and_then(|(xmin, tid)| remembered_row(rel, gid, xmin, tid));
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        if let Some(row) = remembered {
            return Ok(vec![row]);
        }
    }
    let mut rows = Vec::new();
    // SAFETY: the closure copies what it keeps (a palloc'd tuple, Rust Strings) before the
    // scan moves on.
    unsafe {
        each_tracking_tuple(Some(gid), |tuple, desc| {
            if classify(tuple).1 != XminStatus::InProgress {
                return;
            }
            rows.push(prepared_row(tuple, desc).0);
        })?;
    }
    Ok(rows)
}

/// A [`PreparedRow`] copied from a pinned tracking tuple, and its gid.
///
/// # Safety
/// `tuple` is a pinned tuple of `twopc.tracking`, `desc` that table's descriptor with
/// [`tracking_col::COUNT`] columns.
unsafe fn prepared_row(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
) -> (PreparedRow, Option<String>) {
    let mut values = [pg_sys::Datum::from(0usize); tracking_col::COUNT];
    let mut nulls = [true; tracking_col::COUNT];
    // SAFETY: the caller's contract; text_of copies the strings out.
    unsafe {
        pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let text = |col: usize| text_of(values[col - 1], nulls[col - 1]);
        let row = PreparedRow {
            tuple: pg_sys::heap_copytuple(tuple),
            coordinator: text(tracking_col::COORDINATOR),
            global_id: text(tracking_col::GLOBAL_ID),
        };
        (row, text(tracking_col::GID))
    }
}

/// The tracking row this backend inserted for `gid` in transaction `xmin` at `tid`
/// ([`super::recent`]), if it is still there and still in progress; `None` sends the caller to
/// the index scan.
///
/// # Safety
/// `rel` is `twopc.tracking`, open and locked.
unsafe fn remembered_row(
    rel: pg_sys::Relation,
    gid: &str,
    xmin: pg_sys::TransactionId,
    tid: pg_sys::ItemPointerData,
) -> Option<PreparedRow> {
    // SAFETY: the block is checked against the relation's size before it is read (a vacuum
    // may have truncated the table since); heap_fetch pins the buffer it returns the tuple in
    // and checks the offset itself; the tuple is copied out before the buffer is released.
    unsafe {
        let desc = (*rel).rd_att;
        if (*desc).natts as usize != tracking_col::COUNT {
            return None;
        }
        let block = pgrx::itemptr::item_pointer_get_block_number_no_check(tid);
        let blocks = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        if block >= blocks {
            return None;
        }
        let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
        tuple.t_self = tid;
        let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
        if !pg_sys::heap_fetch(
            rel,
            &raw mut pg_sys::SnapshotAnyData,
            &mut tuple,
            &mut buffer,
            false,
        ) {
            return None;
        }
        let (found_xmin, status, _) = classify(&mut tuple);
        let row = (found_xmin == xmin && status == XminStatus::InProgress)
            .then(|| prepared_row(&mut tuple, desc))
            .filter(|(_, found_gid)| found_gid.as_deref() == Some(gid))
            .map(|(row, _)| row);
        pg_sys::ReleaseBuffer(buffer);
        row
    }
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
/// requires, and no index covers the stamped columns ([`super::insert::insert_row`] refuses such an index;
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
