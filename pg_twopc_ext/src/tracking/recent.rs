//! The tracking rows this backend wrote into the transactions it prepared, remembered by gid.
//!
//! Most clients finish a prepared transaction on the session that prepared it: pgbench,
//! psycopg's `tpc_commit()` after `tpc_prepare()`, an XA resource manager committing on its
//! own connection, the Postgres participant when the Commit lands on the pooled connection
//! that ran the Prepare. Their `COMMIT PREPARED` then reads the tracking row at the position
//! the insert returned (one buffer pin) instead of descending `tracking_gid_idx` with a
//! `SnapshotAny` scan, which was the larger part of what tracking added to a commit
//! (`bench/RESULTS.md`).
//!
//! # Why a remembered position is safe to use
//!
//! A position is only a hint. [`super::prepared_rows`] accepts the tuple found there only if
//! its xmin is the remembered inserting transaction, that transaction is still in progress
//! (prepared), and its `gid` column is the gid being finished; anything else (the prepare
//! failed, the row was vacuumed away and its slot reused, the table was rewritten) falls back
//! to the index scan. A tuple whose inserting transaction is prepared cannot move: the
//! prepared transaction holds RowExclusiveLock on `twopc.tracking`, which VACUUM FULL,
//! CLUSTER and TRUNCATE wait for, and plain VACUUM never moves a tuple. And a prepared
//! transaction that wrote a row saying gid `g` was prepared as `g` (the row is written at
//! PREPARE with the gid PREPARE is given), so it is the transaction the finish is about.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::VecDeque;

/// How many prepares a backend remembers: XA transaction managers may prepare a few on one
/// connection before they commit any; more than that are looked up through the index.
const KEEP: usize = 16;

/// One remembered tracking row.
struct Remembered {
    gid: String,
    xmin: pg_sys::TransactionId,
    tid: pg_sys::ItemPointerData,
}

thread_local! {
    static RECENT: RefCell<VecDeque<Remembered>> = const { RefCell::new(VecDeque::new()) };
}

/// Remembers the tracking row just inserted for `gid` (by `xmin`, at `tid`).
pub(super) fn remember(gid: &str, xmin: pg_sys::TransactionId, tid: pg_sys::ItemPointerData) {
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        r.retain(|e| e.gid != gid);
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(Remembered {
            gid: gid.to_owned(),
            xmin,
            tid,
        });
    });
}

/// Forgets and returns what was remembered for `gid`: (inserting xid, position).
pub(super) fn take(gid: &str) -> Option<(pg_sys::TransactionId, pg_sys::ItemPointerData)> {
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        let at = r.iter().position(|e| e.gid == gid)?;
        r.remove(at).map(|e| (e.xmin, e.tid))
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    fn tid(block: u16, offset: u16) -> pg_sys::ItemPointerData {
        pg_sys::ItemPointerData {
            ip_blkid: pg_sys::BlockIdData {
                bi_hi: 0,
                bi_lo: block,
            },
            ip_posid: offset,
        }
    }

    #[pg_test]
    fn remembers_the_latest_prepare_of_a_gid_and_forgets_it_when_taken() {
        remember("g", pg_sys::TransactionId::from(10u32), tid(1, 1));
        remember("g", pg_sys::TransactionId::from(11u32), tid(1, 2));
        let (xmin, at) = take("g").expect("remembered");
        assert_eq!(xmin, pg_sys::TransactionId::from(11u32));
        assert_eq!(at.ip_posid, 2);
        assert!(take("g").is_none());
    }

    #[pg_test]
    fn keeps_a_bounded_number_of_prepares() {
        for i in 0..(KEEP as u32 + 4) {
            remember(
                &format!("k{i}"),
                pg_sys::TransactionId::from(i + 100),
                tid(0, 1),
            );
        }
        assert!(take("k0").is_none(), "the oldest was dropped");
        assert!(take(&format!("k{}", KEEP + 3)).is_some());
        RECENT.with(|r| assert!(r.borrow().len() < KEEP));
    }
}
