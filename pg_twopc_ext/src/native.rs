//! Native two-phase commit, tracked: `PREPARE TRANSACTION`, `COMMIT PREPARED` and
//! `ROLLBACK PREPARED` sent as statements (JDBC XA, psycopg's `tpc_*`, Narayana, Atomikos)
//! get the same tracking row, `twopc.outcome()` answer and `twopc.history` entry as the
//! functions.
//!
//! # How
//!
//! The statement guard's `ProcessUtility` hook hands every top-level `TransactionStmt` here
//! first ([`before_utility`]), then runs it as PostgreSQL would, then calls back
//! ([`Native::after`]):
//!
//! * `PREPARE TRANSACTION 'gid'` arms the guard with the gid; the tracking row is written by
//!   the `XACT_EVENT_PRE_PREPARE` callback ([`crate::twophase::track_prepare`]), so it is
//!   part of the prepared transaction, exactly as for `twopc.prepare()`. A PREPARE that
//!   PostgreSQL turns into a ROLLBACK (the block had failed) or a warning (no block) never
//!   reaches PRE_PREPARE and writes nothing.
//! * `COMMIT PREPARED` / `ROLLBACK PREPARED` read the gid's tracking row before PostgreSQL
//!   finishes the transaction and stamp it, or append a finish-log row, after
//!   ([`crate::twophase::FinishRecord`]), with `via = 'native'`.
//!
//! The statements themselves are PostgreSQL's: every check, error message and SQLSTATE is
//! native. Only with the library in `shared_preload_libraries` (a library loaded later by a
//! function call would track a backend's statements from some arbitrary point on), only in a
//! database where the extension is installed, and only while `twopc.track_native` is on
//! (superuser-only, default on).

use crate::guard::{self, AtPrepare};
use crate::tracking;
use crate::twophase::FinishRecord;
use crate::validate::{Decision, Via};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::FromDatum;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

static TRACK_NATIVE: GucSetting<bool> = GucSetting::<bool>::new(true);
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Defines `twopc.track_native`; called from `_PG_init` while preloading only.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"twopc.track_native",
        c"Track native PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED like the twopc functions",
        c"Needs shared_preload_libraries = 'pg_twopc_ext' and the extension in the database.",
        &TRACK_NATIVE,
        GucContext::Suset,
        GucFlags::default(),
    );
    PRELOADED.store(true, Ordering::Relaxed);
}

/// What is still to do after PostgreSQL ran a tracked native statement.
pub enum Native {
    /// Nothing: the prepare is armed in the guard.
    Prepare,
    /// Record the finish.
    Finish(FinishRecord, Decision),
}

/// Looks at a top-level utility statement before PostgreSQL runs it; `Some` when it is native
/// two-phase commit to track.
///
/// # Safety
/// `stmt` is a utility statement node of the running top-level statement, or null.
pub unsafe fn before_utility(stmt: *mut pg_sys::Node) -> Option<Native> {
    if stmt.is_null() || !PRELOADED.load(Ordering::Relaxed) || !TRACK_NATIVE.get() {
        return None;
    }
    // SAFETY: a node pointer from PostgreSQL; its tag says which struct it is.
    let (kind, gid) = unsafe {
        if (*stmt).type_ != pg_sys::NodeTag::T_TransactionStmt {
            return None;
        }
        let t = stmt.cast::<pg_sys::TransactionStmt>();
        if (*t).gid.is_null() {
            return None;
        }
        (
            (*t).kind,
            CStr::from_ptr((*t).gid).to_string_lossy().into_owned(),
        )
    };
    use pg_sys::TransactionStmtKind::*;
    let decision = match kind {
        TRANS_STMT_PREPARE => None,
        TRANS_STMT_COMMIT_PREPARED => Some(Decision::Commit),
        TRANS_STMT_ROLLBACK_PREPARED => Some(Decision::Abort),
        _ => return None,
    };
    if !extension_installed() {
        return None;
    }
    match decision {
        None => {
            guard::set_pending(&gid, Some(AtPrepare::Track));
            Some(Native::Prepare)
        }
        Some(d) => match FinishRecord::before(&gid, d) {
            Ok(r) => Some(Native::Finish(r, d)),
            Err(e) => e.raise(),
        },
    }
}

impl Native {
    /// Called after PostgreSQL ran the statement without an error.
    pub fn after(self) {
        if let Native::Finish(record, decision) = self {
            if let Err(e) = record.after(decision, Via::Native) {
                e.raise();
            }
        }
    }
}

/// The first schema version that records `via = 'native'` (older ones refuse it in
/// `twopc.finish_log`'s check): until `ALTER EXTENSION pg_twopc_ext UPDATE`, native
/// statements are left untracked rather than failing.
const NATIVE_SINCE: (u32, u32, u32) = (0, 2, 0);

/// Whether this database has the extension, at a version that tracks native statements (and
/// a transaction to look that up in, which a failed block does not have: a PREPARE there is a
/// ROLLBACK, nothing to track). The version is read once per backend and schema generation.
fn extension_installed() -> bool {
    use std::cell::Cell;
    thread_local! {
        static READY: Cell<Option<(u64, bool)>> = const { Cell::new(None) };
    }
    // SAFETY: a plain read of backend state.
    if !unsafe { pg_sys::IsTransactionState() } || tracking::relid("tracking").is_err() {
        return false;
    }
    let generation = tracking::schema_generation();
    if let Some((g, ready)) = READY.with(Cell::get) {
        if g == generation {
            return ready;
        }
    }
    let ready = installed_version().as_deref().and_then(parse_version) >= Some(NATIVE_SINCE);
    READY.with(|r| r.set(Some((generation, ready))));
    ready
}

/// `pg_extension.extversion` of pg_twopc_ext in this database, read the way PostgreSQL's own
/// `get_extension_oid()` reads the catalog: through its name index, with the catalog's lock
/// released at once. An SQL query would keep `AccessShareLock` on `pg_extension` and its index
/// until the transaction ends, and the first tracked PREPARE of every backend would carry
/// those locks for as long as it stays in doubt (holding off `VACUUM FULL pg_extension`, say).
fn installed_version() -> Option<String> {
    // SAFETY: the catalog is opened and closed here under AccessShareLock; the scan key
    // compares the `name` column with a NUL-terminated string as get_extension_oid() does;
    // the tuple is deformed with the catalog's own descriptor, and the version is copied into
    // a Rust String before the scan ends.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, lock);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_NAMEEQ),
            pg_sys::Datum::from(c"pg_twopc_ext".as_ptr()),
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::Oid::from(pg_sys::ExtensionNameIndexId),
            true,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let version = if tuple.is_null() {
            None
        } else {
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let at = pg_sys::Anum_pg_extension_extversion as usize - 1;
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![true; natts];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            (at < natts)
                .then(|| String::from_datum(values[at], nulls[at]))
                .flatten()
        };
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, lock);
        version
    }
}

/// `major.minor.patch` of an extension version string.
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}
