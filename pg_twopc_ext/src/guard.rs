//! The "prepare pending" guard: `twopc.prepare()` must be the last statement of its
//! transaction.
//!
//! # Why
//!
//! `PrepareTransactionBlock()` only marks the transaction block (`TBLOCK_PREPARE`); the real
//! `PrepareTransaction()` runs when the current top-level statement finishes: at the end of
//! the query string in the simple protocol, at Sync in the extended one. Until then the
//! backend sits in a state that ordinary SQL never produces, and a further top-level statement
//! in the same string or pipeline either silently joins the prepared transaction or, for
//! `COMMIT` / `BEGIN` / a second prepare, kills the backend with
//! `FATAL: EndTransactionBlock: unexpected state PREPARE`.
//!
//! # How
//!
//! * `twopc.prepare()` sets a backend-local *pending* flag holding the gid and the identity
//!   of the top-level statement that called it.
//! * An `ExecutorStart_hook` and a `ProcessUtility_hook` (chained to whatever was installed
//!   before) raise a plain `ERROR` for any *other* top-level statement while the flag is set.
//!   An `ERROR` in `TBLOCK_PREPARE` takes PostgreSQL's normal abort path, which rolls the whole
//!   transaction back and returns the session to idle (`TBLOCK_DEFAULT`): nothing is prepared,
//!   nothing is half-done, the session stays usable.
//! * A transaction callback clears the flag at PREPARE, COMMIT and ABORT. At
//!   `XACT_EVENT_PRE_PREPARE` it first does what the flag still owes the prepare
//!   ([`AtPrepare`]): the tracking row of a native PREPARE TRANSACTION, or the refusal
//!   `twopc.prepare()` found. Raised there, an error is PREPARE's own, which rolls the
//!   transaction back and ends the block, so a refused `twopc.prepare()` leaves the session
//!   idle exactly as a refused PREPARE TRANSACTION does.
//!
//! A statement is *top-level* when its source text is the very string the backend is executing
//! for the client (`debug_query_string`, pointer equality) — for utility statements, when
//! PostgreSQL says so (`PROCESS_UTILITY_TOPLEVEL`). Statements of the same query string share
//! the pointer and differ in `stmt_location`. Everything nested — SQL run by plpgsql, SQL
//! functions, triggers, the deferred foreign-key checks that run while the transaction is being
//! prepared — has its own source text and is left alone. So inside a DO block or a function,
//! SQL after `twopc.prepare()` still runs and becomes part of the prepared transaction; the
//! README documents this.

use crate::error::TwopcError;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// Identity of a top-level statement: its source text pointer and its offset in that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StmtId {
    text: usize,
    location: i32,
}

/// What the guard does when the marked PREPARE runs (the `XACT_EVENT_PRE_PREPARE` callback,
/// after deferred triggers, with open savepoints subcommitted). An error raised there rolls
/// the transaction back and leaves the session idle, as PREPARE TRANSACTION's own refusals do.
#[derive(Debug)]
pub enum AtPrepare {
    /// Write the tracking row (a native PREPARE TRANSACTION; see [`crate::native`]).
    Track,
    /// Refuse the prepare with this error (`twopc.prepare()` found it when it was called, and
    /// raising it then would have left the session in an aborted block).
    Refuse(TwopcError),
}

/// A prepare marked in this transaction and not yet done.
struct Pending {
    gid: String,
    /// The top-level statement that marked it (`None` for a native PREPARE TRANSACTION,
    /// which is a utility statement and needs no exemption).
    by: Option<StmtId>,
    /// What is still to do when PREPARE runs.
    at_prepare: Option<AtPrepare>,
}

thread_local! {
    /// The most recent top-level statement seen by the hooks.
    static CURRENT_STMT: Cell<Option<StmtId>> = const { Cell::new(None) };
    /// Set by `twopc.prepare()` (or a tracked native PREPARE TRANSACTION) until the
    /// transaction ends.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hooks and the transaction callback. Called once per backend from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend on the main thread before any of our hooks can
    // fire; saving and replacing the hook pointers is the documented chaining protocol.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
    }
}

/// The gid of a prepare pending in this transaction, if any.
pub fn pending_gid() -> Option<String> {
    PENDING.with(|p| p.borrow().as_ref().map(|p| p.gid.clone()))
}

/// Marks the transaction as being prepared under `gid` by the current top-level statement,
/// with what is to be done when PREPARE runs.
pub fn set_pending(gid: &str, at_prepare: Option<AtPrepare>) {
    let by = CURRENT_STMT.with(Cell::get);
    PENDING.with(|p| {
        *p.borrow_mut() = Some(Pending {
            gid: gid.to_owned(),
            by,
            at_prepare,
        })
    });
}

fn clear_pending() {
    PENDING.with(|p| *p.borrow_mut() = None);
}

/// Records a top-level statement and refuses it when a prepare is pending from another one.
fn on_top_level(stmt: StmtId, always_new: bool) {
    let refuse = PENDING.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|p| always_new || p.by != Some(stmt))
            .map(|p| p.gid.clone())
    });
    if let Some(gid) = refuse {
        TwopcError::StatementAfterPrepare { gid }.raise();
    }
    CURRENT_STMT.with(|c| c.set(Some(stmt)));
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: PostgreSQL passes a valid QueryDesc; debug_query_string is a backend global.
    unsafe {
        let text = (*query_desc).sourceText;
        if !text.is_null() && text == pg_sys::debug_query_string {
            let pstmt = (*query_desc).plannedstmt;
            let location = if pstmt.is_null() {
                -1
            } else {
                (*pstmt).stmt_location
            };
            on_top_level(
                StmtId {
                    text: text as usize,
                    location,
                },
                false,
            );
        }
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: arguments come straight from PostgreSQL and are passed on unchanged.
    unsafe {
        if !pstmt.is_null() {
            // Client statements run nested (SPI), so this applies at every depth.
            crate::boundary::check_utility((*pstmt).utilityStmt);
        }
        let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
        if top_level {
            let location = if pstmt.is_null() {
                -1
            } else {
                (*pstmt).stmt_location
            };
            // A top-level utility statement cannot be the one that called twopc.prepare(): the
            // hook runs before the statement does.
            on_top_level(
                StmtId {
                    text: query_string as usize,
                    location,
                },
                true,
            );
        }
        // Native two-phase commit statements are tracked around PostgreSQL's own handling.
        let native = if top_level && !pstmt.is_null() {
            crate::native::before_utility((*pstmt).utilityStmt)
        } else {
            None
        };
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
        if let Some(native) = native {
            native.after();
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_PREPARE => {
            let due = PENDING.with(|p| {
                p.borrow_mut()
                    .as_mut()
                    .and_then(|p| p.at_prepare.take().map(|a| (p.gid.clone(), a)))
            });
            let failed = match due {
                None => None,
                Some((gid, AtPrepare::Track)) => {
                    crate::twophase::track_prepare(&gid, None, None).err()
                }
                Some((_, AtPrepare::Refuse(e))) => Some(e),
            };
            if let Some(e) = failed {
                e.raise();
            }
        }
        XACT_EVENT_COMMIT
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PARALLEL_ABORT
        | XACT_EVENT_PREPARE => {
            clear_pending();
            crate::boundary::clear();
        }
        _ => {}
    }
}
