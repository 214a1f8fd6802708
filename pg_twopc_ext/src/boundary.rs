//! The trust boundary between a client's statements and the participant's own transaction
//! control.
//!
//! # Why
//!
//! The Postgres participant runs SQL that a coordinator's *clients* wrote, inside a transaction
//! that only the coordinator may end. Anything that lets that SQL end, split or prepare the
//! transaction, call the extension's writing functions, act on another transaction, or leave
//! state behind in the pooled session breaks the one promise of two-phase commit (both stores
//! or neither). A filter over the statement text cannot close that: PostgreSQL's lexer nests
//! comments, ends line comments at `\r`, and a function can do through `set_config()` what a
//! `SET` does. So the boundary is drawn where PostgreSQL itself decides what a statement may
//! do: in its executor, its function manager, its utility dispatcher and its user identity.
//!
//! # How
//!
//! [`crate::client`] runs the client's statements *nested* inside one call of
//! `twopc.run_and_prepare()`, through SPI, in **client mode** ([`ClientMode::enter`]):
//!
//! * **Transaction control is impossible.** SPI refuses `COMMIT`, `ROLLBACK`, `SAVEPOINT`,
//!   `PREPARE TRANSACTION`, `COPY ... STDIN/STDOUT` (`SPI_ERROR_TRANSACTION`, `SPI_ERROR_COPY`),
//!   and a procedure or DO block called from there runs in an atomic context, where `COMMIT`
//!   is "invalid transaction termination". The utility hook refuses `TransactionStmt` in client
//!   mode as well, at any nesting depth.
//! * **Another identity, which cannot be undone.** The statements run as `twopc.client_role`
//!   (a role that should hold the application's table privileges and no `EXECUTE` on the
//!   writing `twopc.*` functions) with `SECURITY_LOCAL_USERID_CHANGE`, the mark PostgreSQL
//!   itself puts on a security-definer function's body: `SET ROLE`, `RESET ROLE` and
//!   `SET SESSION AUTHORIZATION` are refused there. Signalling the participant's own backends
//!   needs the participant's role, which the client role is not a member of.
//!   (`SECURITY_RESTRICTED_OPERATION`, the stricter sandbox of maintenance commands, would
//!   also refuse a deferred constraint's trigger, which applications rely on; the statements
//!   it refuses that would outlive the transaction are refused by our utility hook instead.)
//! * **The capability is the position, not a secret.** The extension's writing functions
//!   (`prepare`, `run_and_prepare`, `commit_prepared`, `rollback_prepared`, `record_decision`,
//!   `forget`) refuse to run in client mode whatever the caller's privileges
//!   ([`refuse_in_client_mode`]); the participant's own calls are the top-level statements
//!   around the client's, which client SQL can never become.
//! * **Session state cannot leak.** Settings are changed inside a GUC nest level of their own:
//!   a change that would outlive the transaction (`SET` without `LOCAL`, `RESET`,
//!   `set_config(..., false)`, `SET SESSION CHARACTERISTICS`) is an error
//!   ([`ClientMode::leave`]), and every transaction-local change is undone before the
//!   participant's own prepare runs. Session-level advisory locks, which outlive even a
//!   rolled-back transaction, are released when the client's statements end (transaction-level
//!   ones stay with the transaction): the function manager never consults its hook for
//!   built-in functions, so they cannot be refused at the call, and PostgreSQL keeps no
//!   record of them that an extension could inspect. The utility hook refuses
//!   what is not transactional in a session: `PREPARE`, `EXECUTE` and `DEALLOCATE` (the
//!   participant's own protocol-level statements live in the same namespace, and
//!   `DEALLOCATE ALL` took effect even when its transaction rolled back), `DISCARD`, `LOAD`,
//!   `LISTEN`, `UNLISTEN` and `NOTIFY`. What PREPARE TRANSACTION refuses by itself (temporary
//!   objects, cursors `WITH HOLD`) ends in a NO vote and a rollback that leaves nothing.
//! * **Nothing of theirs runs after them.** Deferred constraint triggers are fired while still
//!   in client mode (`SET CONSTRAINTS ALL IMMEDIATE` as the last client statement), so no
//!   client-controlled code runs at `PREPARE` time with the participant's identity.
//!
//! Leaving client mode on an error needs no code path of its own: the error aborts the
//! transaction, which restores the user id and security context and unwinds the GUC nest
//! level, and the transaction callback clears the flag.

use crate::error::TwopcError;
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
    /// True while a client's statements run (see the module docs).
    static CLIENT_MODE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a client's statements are running in this backend right now.
pub fn in_client_mode() -> bool {
    CLIENT_MODE.with(Cell::get)
}

/// Refuses `what` (a writing function of the extension) while client statements run.
pub fn refuse_in_client_mode(what: &'static str) -> crate::error::Result<()> {
    if in_client_mode() {
        return Err(TwopcError::ClientMode { what: what.into() });
    }
    Ok(())
}

/// Clears client mode at transaction end (abort included); called by the transaction callback.
pub fn clear() {
    CLIENT_MODE.with(|c| c.set(false));
}

/// An active client mode: the saved identity and the GUC nest level of the client's settings.
pub struct ClientMode {
    saved_user: pg_sys::Oid,
    saved_context: i32,
    guc_level: i32,
}

impl ClientMode {
    /// Switches to `role` in the sandbox described in the module docs.
    pub fn enter(role: pg_sys::Oid) -> ClientMode {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: plain reads and writes of backend globals on the main thread; the
        // transaction's abort path restores the identity and unwinds the nest level if an
        // error escapes before `leave`.
        let guc_level = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                role,
                saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
            pg_sys::NewGUCNestLevel()
        };
        CLIENT_MODE.with(|c| c.set(true));
        ClientMode {
            saved_user,
            saved_context,
            guc_level,
        }
    }

    /// Leaves client mode after the client's statements succeeded: refuses settings changed
    /// beyond the transaction, undoes every other setting they changed, releases session-level
    /// advisory locks, and restores the participant's identity.
    pub fn leave(self) -> crate::error::Result<()> {
        let leaked = session_level_change(self.guc_level);
        // SAFETY: unwinds exactly the nest level `enter` opened; releases only the session-held
        // part of advisory locks (owner NULL), never a lock of the transaction; identity
        // restore as above.
        unsafe {
            pg_sys::AtEOXact_GUC(false, self.guc_level);
            pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as pg_sys::LOCKMETHODID);
            pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context);
        }
        CLIENT_MODE.with(|c| c.set(false));
        match leaked {
            Some(name) => Err(TwopcError::SessionSetting { name }),
            None => Ok(()),
        }
    }
}

/// The name of a setting changed at nest level `level` or deeper by something that would keep
/// it after the transaction (a `GUC_SET` entry on its stack), if any.
fn session_level_change(level: i32) -> Option<String> {
    // SAFETY: the GUC array and its stacks are backend-local and only read here, on the main
    // thread; entries are never freed while the backend runs.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        let n = pg_sys::GetNumConfigOptions();
        for i in 0..n as usize {
            let var = *vars.add(i);
            if var.is_null() {
                continue;
            }
            let mut entry = (*var).stack;
            while !entry.is_null() && (*entry).nest_level >= level {
                if matches!(
                    (*entry).state,
                    pg_sys::GucStackState::GUC_SET | pg_sys::GucStackState::GUC_SET_LOCAL
                ) {
                    return Some(CStr::from_ptr((*var).name).to_string_lossy().into_owned());
                }
                entry = (*entry).prev;
            }
        }
    }
    None
}

static mut PREV_NEEDS_FMGR: pg_sys::needs_fmgr_hook_type = None;
static mut PREV_FMGR: pg_sys::fmgr_hook_type = None;

/// Installs the function-manager hooks. Called once per backend from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend before any function lookup of ours; this is the
    // documented chaining protocol for the hooks.
    unsafe {
        PREV_NEEDS_FMGR = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs_fmgr);
        PREV_FMGR = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(fmgr);
    }
}

/// Refuses a writing function of the extension in client mode.
fn check_function(fn_oid: pg_sys::Oid) {
    if in_client_mode() {
        // SAFETY: syscache lookups on the main thread, only in client mode.
        if let Some(name) = unsafe { writing_twopc_function(fn_oid) } {
            TwopcError::ClientMode {
                what: format!("twopc.{name}()"),
            }
            .raise();
        }
    }
}

/// Called by the function manager when it looks up a function (`fmgr_info`) that is not built
/// into the server and has no `SET` clause and is not security definer, nested calls, dynamic
/// SQL and triggers included. Functions with either are routed through
/// `fmgr_security_definer` without asking, which calls [`fmgr`] on every entry: between the
/// two hooks, every call of an extension's or user's function passes one of them.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn needs_fmgr(fn_oid: pg_sys::Oid) -> bool {
    check_function(fn_oid);
    // SAFETY: the previous hook, if any, has the same contract.
    unsafe {
        match PREV_NEEDS_FMGR {
            Some(prev) => prev(fn_oid),
            None => false,
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn fmgr(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    private: *mut pg_sys::Datum,
) {
    if event == pg_sys::FmgrHookEventType::FHET_START && !flinfo.is_null() {
        // SAFETY: PostgreSQL passes the FmgrInfo of the function being entered.
        check_function(unsafe { (*flinfo).fn_oid });
    }
    // SAFETY: the previous hook, if any, has the same contract.
    unsafe {
        if let Some(prev) = PREV_FMGR {
            prev(event, flinfo, private);
        }
    }
}

/// Functions of the extension's schema that client statements may call: the ones that only
/// read. Every other function there (the writing ones, and any added later) is refused in
/// client mode whatever privileges the client role holds.
const READ_ONLY_TWOPC_FUNCTIONS: &[&str] = &[
    "protocol_version",
    "outcome",
    "gid_state",
    "gid_coordinator",
    "gid_global_id",
    "stats",
    "tracking_in_doubt",
    "tracking_tuples",
];

/// The name of `fn_oid` when it is a function of the `twopc` schema that may write.
///
/// # Safety
/// Main thread, inside a transaction (syscache lookups).
unsafe fn writing_twopc_function(fn_oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: see the function's contract; get_func_name returns a palloc'd copy or NULL.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"twopc".as_ptr(), true);
        if schema == pg_sys::InvalidOid || pg_sys::get_func_namespace(fn_oid) != schema {
            return None;
        }
        let name = pg_sys::get_func_name(fn_oid);
        if name.is_null() {
            return None;
        }
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        (!READ_ONLY_TWOPC_FUNCTIONS.contains(&name.as_str())).then_some(name)
    }
}

/// Refuses, in client mode, the utility statements that would end or split the transaction
/// or leave state behind in the session (see the module docs). Called by
/// the utility hook for every utility statement, at any nesting depth.
///
/// # Safety
/// `stmt` must be a valid parse node (the `utilityStmt` of a `PlannedStmt`).
pub unsafe fn check_utility(stmt: *mut pg_sys::Node) {
    if !in_client_mode() || stmt.is_null() {
        return;
    }
    // SAFETY: the caller passes a valid node; each cast follows its tag.
    let refused: Option<&'static str> = unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_TransactionStmt => Some("transaction control"),
            pg_sys::NodeTag::T_PrepareStmt => Some("PREPARE of a statement"),
            pg_sys::NodeTag::T_ExecuteStmt => Some("EXECUTE of a prepared statement"),
            pg_sys::NodeTag::T_DeallocateStmt => Some("DEALLOCATE"),
            pg_sys::NodeTag::T_DiscardStmt => Some("DISCARD"),
            pg_sys::NodeTag::T_LoadStmt => Some("LOAD"),
            pg_sys::NodeTag::T_ListenStmt => Some("LISTEN"),
            pg_sys::NodeTag::T_UnlistenStmt => Some("UNLISTEN"),
            pg_sys::NodeTag::T_NotifyStmt => Some("NOTIFY"),
            pg_sys::NodeTag::T_VariableSetStmt => {
                let set = stmt as *mut pg_sys::VariableSetStmt;
                // SET TRANSACTION ... and SET TRANSACTION SNAPSHOT only concern this
                // transaction (PostgreSQL refuses them once a query has run).
                let transaction_scoped = (*set).kind == pg_sys::VariableSetKind::VAR_SET_MULTI
                    && !(*set).name.is_null()
                    && CStr::from_ptr((*set).name)
                        .to_bytes()
                        .starts_with(b"TRANSACTION");
                (!(*set).is_local && !transaction_scoped).then_some(
                    "SET, RESET or SET SESSION CHARACTERISTICS at session level (use SET LOCAL)",
                )
            }
            _ => None,
        }
    };
    if let Some(what) = refused {
        TwopcError::ClientStatement { what: what.into() }.raise();
    }
}
