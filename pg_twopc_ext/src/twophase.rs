//! Preparing and finishing transactions from SQL functions.
//!
//! # Why functions at all
//!
//! `PREPARE TRANSACTION` / `COMMIT PREPARED` are statements, not functions: SPI refuses them,
//! and they leave no trace of who prepared what for whom. The functions here wrap the same
//! core routines (`PrepareTransactionBlock`, `FinishPreparedTransaction`) and add the tracking
//! described in [`crate::tracking`].
//!
//! # Prepare
//!
//! `twopc.prepare()` checks everything PREPARE TRANSACTION would refuse later — and some
//! things it would *not* refuse but get wrong (outside a transaction block PostgreSQL only
//! warns and then commits) — up front, so each misuse is one clean `ERROR` with the
//! transaction untouched. Then it writes the tracking row, marks the block for PREPARE and
//! arms the [`crate::guard`]. The prepare itself happens when the calling top-level statement
//! ends.
//!
//! # Finish, and where the history goes
//!
//! `twopc.commit_prepared()` / `twopc.rollback_prepared()` run the checks COMMIT PREPARED gets
//! (`PreventInTransactionBlock`), then `FinishPreparedTransaction()`, which writes and
//! *flushes* the COMMIT PREPARED / ROLLBACK PREPARED record itself, whatever
//! `synchronous_commit` says. What they record of the finish depends on what there is to
//! record it on:
//!
//! * a **commit** of a transaction prepared by `twopc.prepare()`: its tracking row just became
//!   visible, and who finished it, when and how is stamped onto that row in place
//!   ([`crate::tracking::stamp_commit`]): no transaction id, no commit record, no new row or
//!   index entry, one small WAL record. This is the hot path (every coordinator commit);
//! * a **rollback** (the tracking row dies with the transaction), or a commit of a gid prepared
//!   natively: a `twopc.finish_log` row, appended in the surrounding (implicit) transaction
//!   with `synchronous_commit = off` for that transaction only, so committing it does not wait
//!   for a second WAL flush.
//!
//! The `twopc.history` view shows both. Losing a stamp or a log row in a crash loses no
//! information that matters:
//!
//! * committed: the tracking row written inside the prepared transaction is now visible, and it
//!   was flushed by PREPARE;
//! * aborted: the tracking tuple is dead with an aborted xmin (or, after vacuum, gone), and an
//!   unknown gid is presumed aborted.
//!
//! Only *who* finished it and *how* (`finished_by`, `via`) can be lost, for the last few
//! hundred milliseconds before a crash. So the function path needs one WAL flush per phase, as
//! native PREPARE TRANSACTION / COMMIT PREPARED do (what it still costs more, in WAL volume and
//! CPU, is measured and explained in `bench/RESULTS.md`). When the surrounding
//! transaction has already written something else (the function called from a DO block that
//! also modified data), the caller's `synchronous_commit` is left alone.
//!
//! Permission checks stay PostgreSQL's: the functions are SECURITY INVOKER, so
//! `FinishPreparedTransaction` checks the caller (owner of the prepared transaction or
//! superuser) exactly as COMMIT PREPARED does.

use crate::boundary;
use crate::error::{Result, TwopcError};
use crate::guard;
use crate::tracking::{self, XminStatus};
use crate::validate::{self, Decision, Via};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, CStr, CString};

unsafe extern "C-unwind" {
    /// twophase.h: finishes (commits or rolls back) the prepared transaction `gid`.
    fn FinishPreparedTransaction(gid: *const c_char, is_commit: bool);
    /// twophase.h: is `gid` prepared with this replication origin LSN and timestamp?
    fn LookupGXact(gid: *const c_char, prepare_end_lsn: u64, origin_prepare_timestamp: i64)
        -> bool;
}

unsafe extern "C" {
    /// twophase.h: the `max_prepared_transactions` GUC.
    static max_prepared_xacts: c_int;
}

/// Whether a transaction prepared on this server (any database) holds `gid`.
///
/// `LookupGXact` (twophase.h, used by logical replication) scans the shared prepared
/// transaction array under a shared lock and, for a matching gid, compares the replication
/// origin LSN and timestamp recorded at PREPARE; both are 0 for a transaction prepared
/// locally. This is a few microseconds, against tens for an SPI query over
/// `pg_prepared_xacts`, which mattered in the pgbench comparison. A gid held by a transaction
/// that a logical-replication apply worker prepared is not found here; PREPARE itself still
/// refuses it at the end of the statement ("transaction identifier ... is already in use"),
/// which is an equally clean ERROR.
fn gid_prepared_here(gid: &CStr) -> bool {
    // SAFETY: a plain lookup under TwoPhaseStateLock; the gid is NUL-terminated.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| LookupGXact(gid.as_ptr(), 0, 0)) }
}

/// `twopc.prepare()`: see the module docs.
///
/// Like `PREPARE TRANSACTION`, it ends the transaction: once the call is accepted (inside a
/// transaction block, not inside a plpgsql `EXCEPTION` block, not twice), the block is marked
/// for PREPARE whatever else happens. The tracking row is written now; a refusal of ours (a
/// gid in use or already used by a committed transaction, a contradicting identity) is raised
/// when PREPARE runs, where it rolls the transaction back and leaves the session idle, exactly
/// as PostgreSQL's own refusals then do (temporary objects, too long a gid, prepared
/// transactions disabled, a failed deferred constraint) — never an aborted block. Open
/// savepoints are subcommitted, as PREPARE TRANSACTION does.
pub fn prepare(
    gid: Option<&str>,
    coordinator: Option<&str>,
    global_id: Option<&str>,
) -> Result<String> {
    boundary::refuse_in_client_mode("twopc.prepare()")?;
    check_preparable_block(Savepoints::Accepted)?;
    // The tracking row is a write (PREPARE TRANSACTION itself is allowed read-only).
    prevent_writes(c"twopc.prepare()");
    let gid = gid.unwrap_or("");
    let refusal = track_prepare(gid, coordinator, global_id).err();
    mark_for_prepare(gid, refusal.map(guard::AtPrepare::Refuse))?;
    Ok(gid.to_owned())
}

/// Writes the tracking row of a transaction about to be prepared under `gid`, for
/// `twopc.prepare()` and for a native PREPARE TRANSACTION (then from the
/// `XACT_EVENT_PRE_PREPARE` callback, with no identity given: a twopc-format gid says it).
pub fn track_prepare(gid: &str, coordinator: Option<&str>, global_id: Option<&str>) -> Result<()> {
    if gid.len() > twopc_protocol::gid::PG_MAX_GID_LEN {
        // PREPARE refuses it itself, in its own words; there will be nothing to track.
        return Ok(());
    }
    validate::check_gid(gid)?;
    let (coordinator, global_id) = validate::reconcile_identity(gid, coordinator, global_id)?;
    // No look at the prepared transactions first: a tracked gid in use is refused by the
    // unique index (its row is in progress, see track), and an untracked one by PREPARE
    // itself a moment later, in the same words, so a lookup here would only repeat one of
    // the two on every prepare.
    track(gid, coordinator.as_deref(), global_id.as_deref())
}

/// What `twopc.run_and_prepare()` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The statements ran and the transaction will be prepared when the call's statement ends.
    Prepared,
    /// The gid was prepared before (a repeated request): nothing ran.
    AlreadyPrepared,
    /// The gid committed before: nothing ran.
    AlreadyCommitted,
    /// The gid was rolled back before: nothing ran.
    AlreadyAborted,
}

impl RunOutcome {
    /// SQL-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Prepared => "prepared",
            RunOutcome::AlreadyPrepared => "already_prepared",
            RunOutcome::AlreadyCommitted => "already_committed",
            RunOutcome::AlreadyAborted => "already_aborted",
        }
    }
}

/// `twopc.run_and_prepare()`: the participant's whole phase 1 in one call. Unless the gid was
/// seen before ([`gid_state`]), writes the tracking row, runs the client's statements as
/// `client_role` behind the trust boundary ([`crate::boundary`], [`crate::client`]) and marks
/// the transaction for PREPARE. The statements run only after every check passed, and the
/// prepare is marked only after every statement succeeded: any failure is one ERROR, which
/// rolls the whole transaction back. `submitted_by` (the coordinator's API client) is recorded
/// in `twopc.submitters`, inside the transaction like the tracking row.
pub fn run_and_prepare(
    gid: Option<&str>,
    coordinator: Option<&str>,
    global_id: Option<&str>,
    client_role: Option<&str>,
    submitted_by: Option<&str>,
    stmts: &[crate::client::Statement<'_>],
) -> Result<RunOutcome> {
    boundary::refuse_in_client_mode("twopc.run_and_prepare()")?;
    let gid = check_preparable(gid, c"twopc.run_and_prepare()")?;
    match gid_state(Some(gid))? {
        Some(GidState::Prepared) => return Ok(RunOutcome::AlreadyPrepared),
        Some(GidState::Committed) => return Ok(RunOutcome::AlreadyCommitted),
        Some(GidState::Aborted) => return Ok(RunOutcome::AlreadyAborted),
        None => {}
    }
    let (coordinator, global_id) = validate::reconcile_identity(gid, coordinator, global_id)?;
    let role = client_role_oid(client_role.unwrap_or(""))?;
    if let Some(name) = submitted_by {
        validate::check_submitter(name)?;
    }
    // First, so that a transaction that fails from here on leaves a dead tracking row:
    // gid_state() then answers "aborted" to a late repeat of the same Prepare. (gid_state()
    // has just looked the gid up among the prepared transactions.)
    track(gid, coordinator.as_deref(), global_id.as_deref())?;
    if let Some(name) = submitted_by {
        tracking::insert_submitter(gid, name)?;
    }
    crate::client::run(role, stmts)?;
    check_no_temp_objects()?;
    mark_for_prepare(gid, None)?;
    Ok(RunOutcome::Prepared)
}

/// The role client statements may run as: an existing role that is neither a superuser nor
/// the calling role itself, and one the caller could `SET ROLE` to.
fn client_role_oid(name: &str) -> Result<pg_sys::Oid> {
    if name.is_empty() {
        return Err(TwopcError::ClientRole {
            detail: "no role given".into(),
        });
    }
    let cname = CString::new(name).map_err(|_| TwopcError::ClientRole {
        detail: "the name contains a NUL byte".into(),
    })?;
    // SAFETY: catalog lookups through the syscache on the main thread.
    unsafe {
        let role = pg_sys::get_role_oid(cname.as_ptr(), true);
        let me = pg_sys::GetUserId();
        let refusal = if role == pg_sys::InvalidOid {
            Some(format!("role \"{name}\" does not exist"))
        } else if pg_sys::superuser_arg(role) {
            Some(format!("role \"{name}\" is a superuser"))
        } else if role == me {
            Some(format!(
                "role \"{name}\" is the participant's own role; client statements need a role of their own"
            ))
        } else if !pg_sys::is_member_of_role(me, role) {
            Some(format!(
                "the participant's role is not a member of \"{name}\" (GRANT \"{name}\" TO the participant's role)"
            ))
        } else {
            None
        };
        match refusal {
            Some(detail) => Err(TwopcError::ClientRole { detail }),
            None => Ok(role),
        }
    }
}

/// Whether a prepare may be called inside a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoints {
    /// `twopc.prepare()`: open savepoints are subcommitted, as PREPARE TRANSACTION does.
    Accepted,
    /// `twopc.run_and_prepare()`: the participant's transactions never have any.
    Refused,
}

/// The transaction-block checks every prepare runs before it changes anything: each is one
/// clean `ERROR` with the transaction untouched (there is no block to end, or ending it from
/// here would be unsafe).
fn check_preparable_block(savepoints: Savepoints) -> Result<()> {
    // SAFETY: plain reads of backend state.
    let (in_block, in_sub) = unsafe { (pg_sys::IsTransactionBlock(), pg_sys::IsSubTransaction()) };
    if !in_block {
        return Err(TwopcError::NotInTransactionBlock);
    }
    if in_sub && (savepoints == Savepoints::Refused || in_internal_subtransaction()) {
        return Err(TwopcError::InSubtransaction);
    }
    if let Some(gid) = guard::pending_gid() {
        return Err(TwopcError::AlreadyPreparing { gid });
    }
    Ok(())
}

/// Whether the current subtransaction was started by the running statement itself (a plpgsql
/// `EXCEPTION` block) rather than by the client's `SAVEPOINT`s before it. Marking the block
/// for PREPARE turns every open subtransaction into "to be subcommitted", which the
/// statement's own subtransaction does not survive (plpgsql's release of it then fails); the
/// client's savepoints are simply subcommitted when the statement ends, as for PREPARE
/// TRANSACTION. The portal running the client's statement was created in the client's
/// innermost savepoint, and subtransaction ids only grow, so a current id past the portal's
/// is one the statement started. Without a portal (nothing runs a statement), any
/// subtransaction is refused.
fn in_internal_subtransaction() -> bool {
    // SAFETY: reads of backend globals; ActivePortal is either null or the running portal.
    unsafe {
        let portal = pg_sys::ActivePortal;
        portal.is_null() || (*portal).createSubid != pg_sys::GetCurrentSubTransactionId()
    }
}

/// The checks `twopc.run_and_prepare()` runs before it changes anything, so each misuse is
/// one clean `ERROR` with the transaction untouched (the participant then rolls it back);
/// returns the (valid) gid.
fn check_preparable<'a>(gid: Option<&'a str>, what: &CStr) -> Result<&'a str> {
    check_preparable_block(Savepoints::Refused)?;
    // SAFETY: a plain read of a backend global.
    if unsafe { max_prepared_xacts } == 0 {
        return Err(TwopcError::PreparedTransactionsDisabled);
    }
    // The tracking row is written below the executor, which would otherwise be the one to
    // refuse writes in a read-only transaction or on a standby.
    prevent_writes(what);
    let gid = gid.unwrap_or("");
    validate::check_gid(gid)?;
    Ok(gid)
}

/// PREPARE refuses a transaction that used temporary objects only when the statement ends;
/// refused here it is a clean error of ours.
fn check_no_temp_objects() -> Result<()> {
    // SAFETY: a plain read of backend state.
    let xact_flags = unsafe { pg_sys::MyXactFlags };
    if xact_flags as u32 & pg_sys::XACT_FLAGS_ACCESSEDTEMPNAMESPACE != 0 {
        return Err(TwopcError::TouchedTemporaryObjects);
    }
    Ok(())
}

/// Writes the tracking row of `gid` into the current transaction, refusing a gid that is in
/// use by a tracked transaction or already committed. The caller has reconciled the identity
/// with the gid.
fn track(gid: &str, coordinator: Option<&str>, global_id: Option<&str>) -> Result<()> {
    // The unique gid index flags another live or in-progress tracking row without waiting for
    // it (a committed earlier use of the gid, a session preparing the same gid right now, or a
    // prepared transaction, whose row stays in progress until it is finished); only then are
    // the rows read to say which refusal applies. Dead rows (rolled back, or deleted by a
    // committed twopc.forget()) never conflict.
    if !tracking::insert_tracking(gid, global_id, coordinator)? {
        check_gid_reuse(gid)?;
    }
    Ok(())
}

/// Marks the transaction block for PREPARE under `gid` and arms the guard, with what it is to
/// do when PREPARE runs.
fn mark_for_prepare(gid: &str, at_prepare: Option<guard::AtPrepare>) -> Result<()> {
    let cgid = CString::new(gid).map_err(|_| TwopcError::EmptyGid)?;
    // SAFETY: we are in a transaction block, at most in the client's own savepoints (checked
    // by check_preparable_block), which PREPARE subcommits;
    // PostgreSQL copies the gid into TopTransactionContext.
    let marked = unsafe { pg_sys::PrepareTransactionBlock(cgid.as_ptr()) };
    if !marked {
        return Err(TwopcError::PrepareRefused { gid: gid.into() });
    }
    guard::set_pending(gid, at_prepare);
    Ok(())
}

/// Why a tracking row with this gid blocks a new one, if it does: one that committed (and was
/// not forgotten) makes the gid ambiguous for `twopc.outcome()`; one that is prepared, or
/// being prepared by another session, holds it.
fn check_gid_reuse(gid: &str) -> Result<()> {
    for t in tracking::scan(Some(gid), |_, st| st != XminStatus::Aborted)? {
        match t.status {
            XminStatus::Committed if !t.deleted => {
                return Err(TwopcError::GidAlreadyCommitted { gid: gid.into() })
            }
            XminStatus::InProgress => return Err(TwopcError::GidInUse { gid: gid.into() }),
            // Ours (just inserted), or deleted by twopc.forget().
            _ => {}
        }
    }
    Ok(())
}

/// `twopc.commit_prepared()` / `twopc.rollback_prepared()`: see the module docs.
pub fn finish(gid: Option<&str>, decision: Decision, via: Option<&str>) -> Result<()> {
    boundary::refuse_in_client_mode(match decision {
        Decision::Commit => "twopc.commit_prepared()",
        Decision::Abort => "twopc.rollback_prepared()",
    })?;
    let via = Via::parse(via.unwrap_or("manual"))?;
    let stmt: &std::ffi::CStr = match decision {
        Decision::Commit => c"twopc.commit_prepared()",
        Decision::Abort => c"twopc.rollback_prepared()",
    };
    // SAFETY: raises a normal ERROR inside a transaction block, subtransaction or pipeline,
    // exactly as for COMMIT PREPARED.
    unsafe { pg_sys::PreventInTransactionBlock(true, stmt.as_ptr()) };
    // The stamp or finish_log row is a write (COMMIT PREPARED itself is allowed in a read-only
    // session).
    prevent_writes(stmt);
    let gid = gid.unwrap_or("");
    validate::check_gid(gid)?;
    let cgid = CString::new(gid).map_err(|_| TwopcError::EmptyGid)?;
    let record = FinishRecord::before(gid, decision)?;
    // SAFETY: FinishPreparedTransaction raises ordinary ERRORs (unknown gid, permission
    // denied, another database, busy); the boundary turns them into Rust unwinding and back.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            FinishPreparedTransaction(cgid.as_ptr(), decision == Decision::Commit)
        });
    }
    record.after(decision, via)
}

/// What finishing a prepared transaction records about it: read before the finish (while its
/// tracking row is still the prepared transaction's), written after it. Shared by the
/// functions and the native COMMIT PREPARED / ROLLBACK PREPARED ([`crate::native`]).
pub struct FinishRecord {
    gid: String,
    /// Whether this transaction wrote anything before, which decides about
    /// synchronous_commit for a finish_log row ([`log_finish`]).
    wrote_before: bool,
    /// The gid's tracking row(s) in progress: a commit stamps it (a row left visible by an
    /// earlier use of the gid is never the one), a rollback kills it, so who it was prepared
    /// for is read now.
    rows: Vec<tracking::PreparedRow>,
    /// A rollback's: its `twopc.submitters` row's name, read now for the same reason. (A
    /// commit makes that row visible, and the history reads it there: commits, the hot path,
    /// skip the probe.)
    submitted_by: Option<String>,
}

impl FinishRecord {
    /// Reads what [`FinishRecord::after`] needs for `decision`; call right before the finish.
    pub fn before(gid: &str, decision: Decision) -> Result<FinishRecord> {
        // SAFETY: a plain read of backend state.
        let wrote_before =
            unsafe { pg_sys::GetTopTransactionIdIfAny() != pg_sys::InvalidTransactionId };
        let submitted_by = match decision {
            Decision::Abort => tracking::submitter_in_progress(gid)?,
            Decision::Commit => None,
        };
        Ok(FinishRecord {
            gid: gid.to_owned(),
            wrote_before,
            rows: tracking::prepared_rows(gid)?,
            submitted_by,
        })
    }

    /// Records the finish that just succeeded: the stamp on a committed tracking row, or a
    /// finish_log row.
    pub fn after(self, decision: Decision, via: Via) -> Result<()> {
        let gid = self.gid.as_str();
        // A commit's tracking row is visible now; the stamp on it is the history entry.
        if decision == Decision::Commit && tracking::stamp_commit(&self.rows, via.code())? {
            return Ok(());
        }
        // A rollback, or a gid prepared without tracking: a finish_log row. A twopc-format
        // gid says whom it was prepared for itself, and prepare() refuses tracking values that
        // contradict it; other gids: the tracking row, if any.
        let (coordinator, global_id) = match gid_identity(gid) {
            (None, None) => self
                .rows
                .into_iter()
                .next()
                .map_or((None, None), |r| (r.coordinator, r.global_id)),
            known => known,
        };
        log_finish(
            gid,
            (coordinator, global_id, self.submitted_by),
            decision,
            via,
            self.wrote_before,
        )
    }
}

/// (coordinator, global id) that a twopc-format gid encodes; (None, None) for other gids.
fn gid_identity(gid: &str) -> (Option<String>, Option<String>) {
    match twopc_protocol::gid::parse_gid(gid) {
        Some((c, t)) => (Some(c.as_str().to_owned()), Some(t.as_str().to_owned())),
        None => (None, None),
    }
}

/// Appends the `twopc.finish_log` row of a finish, committed asynchronously unless the
/// surrounding transaction had written something of its own before (see the module docs).
fn log_finish(
    gid: &str,
    (coordinator, global_id, submitted_by): (Option<String>, Option<String>, Option<String>),
    decision: Decision,
    via: Via,
    wrote_before: bool,
) -> Result<()> {
    if !wrote_before {
        // SAFETY: a transaction-local GUC change, reverted at transaction end.
        unsafe {
            pg_sys::set_config_option(
                c"synchronous_commit".as_ptr(),
                c"off".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
                true,
                pgrx::PgLogLevel::ERROR as c_int,
                false,
            );
        }
    }
    tracking::insert_finish_log(
        gid,
        global_id.as_deref(),
        coordinator.as_deref(),
        decision.as_str(),
        via.as_str(),
        submitted_by.as_deref(),
    )
}

/// Raises PostgreSQL's own errors for a write in a read-only transaction or during recovery.
fn prevent_writes(what: &CStr) {
    // SAFETY: both only read backend state and raise an ordinary ERROR.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(what.as_ptr());
        pg_sys::PreventCommandDuringRecovery(what.as_ptr());
    }
}

/// `twopc.record_decision()`: remembers the coordinator's decision for a gid (idempotent).
pub fn record_decision(gid: Option<&str>, decision: Option<&str>) -> Result<()> {
    boundary::refuse_in_client_mode("twopc.record_decision()")?;
    prevent_writes(c"twopc.record_decision()");
    let gid = gid.unwrap_or("");
    validate::check_gid(gid)?;
    let decision = Decision::parse(decision.unwrap_or(""))?;
    let recorded = Spi::get_one_with_args::<String>(
        "SELECT (SELECT decision FROM twopc.decisions WHERE gid OPERATOR(pg_catalog.=) $1)",
        &[gid.into()],
    )
    .map_err(|e| TwopcError::Spi {
        detail: e.to_string(),
    })?;
    match recorded {
        Some(r) if r == decision.as_str() => Ok(()),
        Some(r) => Err(TwopcError::ConflictingDecision {
            gid: gid.into(),
            recorded: r,
            given: decision.as_str().into(),
        }),
        None => tracking::insert_decision(gid, decision.as_str()),
    }
}

/// What this server knows about `gid` right now: `twopc.gid_state()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GidState {
    /// Prepared on this server (any database) and not finished.
    Prepared,
    /// Prepared through `twopc.prepare()` and committed (its tracking row is visible), or
    /// recorded as committed in `twopc.finish_log`.
    Committed,
    /// Its tracking row died with an aborted transaction, or `twopc.finish_log` says abort.
    Aborted,
}

impl GidState {
    /// SQL-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            GidState::Prepared => "prepared",
            GidState::Committed => "committed",
            GidState::Aborted => "aborted",
        }
    }
}

/// `twopc.gid_state(gid)`: the "was this gid seen here before?" check a participant runs before
/// it executes a (possibly repeated) Prepare, so that a duplicate never runs the statements a
/// second time and a late one after an abort is refused. Shared-memory lookup first, then an
/// index probe of the tracking rows, then of the history (the evidence `twopc.outcome()` uses,
/// [`crate::outcome::settled`]); `None` when nothing is known (never prepared here, forgotten,
/// or a transaction still on its way to PREPARE).
///
/// Unlike [`crate::outcome::outcome`] this is built for the hot path: no SPI, no view over
/// `pg_prepared_xacts` (which materialises every prepared transaction of the cluster).
pub fn gid_state(gid: Option<&str>) -> Result<Option<GidState>> {
    let gid = gid.unwrap_or("");
    validate::check_gid(gid)?;
    let cgid = CString::new(gid).map_err(|_| TwopcError::EmptyGid)?;
    if gid_prepared_here(&cgid) {
        return Ok(Some(GidState::Prepared));
    }
    Ok(crate::outcome::settled(gid)?.map(|d| match d {
        Decision::Commit => GidState::Committed,
        Decision::Abort => GidState::Aborted,
    }))
}
