//! The local resource a participant server drives: the only thing a concrete participant
//! (Redis, Postgres) has to implement.

use crate::ParticipantError;
use std::future::Future;
use std::time::Duration;
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, NoClass, Operations, ParticipantKind, PreparedTx, TxId,
};

/// The answer of [`Resource::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// Prepared, and the prepared state is durable: it survives a crash of this process and
    /// of the resource, and a later `commit` will succeed.
    Yes,
    /// Cannot commit; nothing is held. `reason` goes back to the coordinator verbatim
    /// (bounded to 1 KiB), with `class`.
    No {
        /// Why (a failed guard, a lock held by another transaction, a type error, ...).
        reason: String,
        /// Whether another attempt could succeed.
        class: NoClass,
    },
    /// Nothing to write; nothing is held and the participant takes no part in phase 2.
    ReadOnly,
    /// Not a vote: a lock it needs is held by another transaction, and nothing was done or
    /// recorded. The participant core decides whether to wait (and call `prepare` again
    /// when the holder settles) or to vote NO (see its "Lock waits" rules).
    Blocked(Blocked),
}

/// A lock a prepare found held by another transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The transaction holding it.
    pub holder: TxId,
    /// What is locked, for the reason of a NO (e.g. `key "balance:1"`).
    pub what: String,
}

/// One lock wait inside the resource: `waiter`'s prepare, still running, waits for a lock
/// `holder` has (see [`Resource::waits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// The waiting transaction (its prepare is running).
    pub waiter: TxId,
    /// The transaction holding the lock (running, or prepared).
    pub holder: TxId,
    /// How long it has waited so far.
    pub waited_ms: u64,
}

/// What [`Resource::commit_one_phase`] is told besides the operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnePhaseContext<'a> {
    /// As in [`PrepareContext`].
    pub submitted_by: Option<&'a str>,
    /// A lock held by another transaction may be answered [`OnePhaseAnswer::Blocked`],
    /// changing and recording nothing, for the participant core to wait (`true`); or it
    /// aborts the transaction, durably, like any other reason it cannot commit (`false`: the
    /// core's last try once the wait has run out). A resource that waits inside its own calls
    /// (PostgreSQL) never answers `Blocked` and may ignore it.
    pub may_wait: bool,
}

/// The answer of [`Resource::commit_one_phase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnePhaseAnswer {
    /// Committed or aborted.
    Decided(OnePhaseOutcome),
    /// Not an outcome: a lock it needs is held by another transaction, and nothing was done
    /// or recorded (only when [`OnePhaseContext::may_wait`]).
    Blocked(Blocked),
}

/// The outcome of a one-phase commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnePhaseOutcome {
    /// What happened: committed, or aborted (then `reason` says why).
    pub decision: Decision,
    /// `Applied` the first time; `AlreadyApplied` for a repeated request.
    pub result: AckResult,
    /// Why it aborted.
    pub reason: Option<String>,
}

/// A participant's local resource. The server calls these methods from tokio tasks, never
/// two at a time for the same txid (it serializes work per txid), but concurrently for
/// different txids.
///
/// Every method must be idempotent by (txid, method): a repeated call answers the same and
/// changes nothing twice. An `Err` means "the resource failed": the server answers the peer
/// with an `internal` error and the coordinator retries; it is never turned into a vote.
///
/// What a Prepare says about its transaction besides the operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareContext<'a> {
    /// How long the coordinator still waits for the vote.
    pub timeout: Option<Duration>,
    /// The API client that submitted the transaction (its name in the coordinator's
    /// configuration), for the resource's own records (the extension's history).
    pub submitted_by: Option<&'a str>,
}

/// The methods return `impl Future + Send` so that implementors can simply write `async fn`.
pub trait Resource: Send + Sync + 'static {
    /// What kind of participant this is (reported in the in-doubt report).
    fn kind(&self) -> ParticipantKind;

    /// Phase 1: check and stage `ops` under `txid` and make the prepared state durable
    /// before answering [`PrepareOutcome::Yes`]. A repeated Prepare of a transaction that is
    /// already prepared answers `Yes` again. `cx.timeout` is how long the coordinator still
    /// waits for the vote: work that outlives it should be cancelled (the coordinator aborts
    /// then) rather than waited for, and must then end either prepared (`Yes`) or not at all.
    fn prepare(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        cx: PrepareContext<'_>,
    ) -> impl Future<Output = Result<PrepareOutcome, ParticipantError>> + Send;

    /// Phase 2, COMMIT: apply what `txid` prepared. `NotPrepared` when there is no record of
    /// preparing it (never invent success), `AlreadyApplied` when it was committed before,
    /// `Conflict` when it was aborted before. With `coordinator` given, only what was
    /// prepared for that coordinator counts: another coordinator's transaction of the same
    /// txid is not this one (`NotPrepared`), and is left alone.
    fn commit(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> impl Future<Output = Result<AckResult, ParticipantError>> + Send;

    /// Phase 2, ABORT: discard what `txid` prepared. `NotPrepared` when there is nothing
    /// (the normal presumed-abort case), `AlreadyApplied` when it was aborted before,
    /// `Conflict` when it was committed before. `coordinator` as for [`Resource::commit`].
    fn abort(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> impl Future<Output = Result<AckResult, ParticipantError>> + Send;

    /// The only participant of a transaction: do `ops` and commit in one step, or, told it
    /// [`OnePhaseContext::may_wait`], answer that a lock is held. An abort is remembered (a
    /// repeated call answers it again), since the participant decides alone.
    fn commit_one_phase(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        cx: OnePhaseContext<'_>,
    ) -> impl Future<Output = Result<OnePhaseAnswer, ParticipantError>> + Send;

    /// Every transaction currently held prepared, whatever coordinator it belongs to, read
    /// from durable state (so it is complete after a restart).
    fn list_prepared(
        &self,
    ) -> impl Future<Output = Result<Vec<PreparedTx>, ParticipantError>> + Send;

    /// Whether `prepare` itself waits for locks (PostgreSQL's lock manager does) instead of
    /// answering [`PrepareOutcome::Blocked`]: then the core asks for [`Resource::waits`] while
    /// prepares run, and [`Resource::cancel`]s the ones that must give way.
    fn waits_inside(&self) -> bool {
        false
    }

    /// The lock waits of prepares running now, between transactions this resource can name
    /// (a lock held by a session outside twopc is not listed).
    fn waits(&self) -> impl Future<Output = Result<Vec<Wait>, ParticipantError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// Stops `txid`'s running prepare if it still waits: it then ends as a NO, never
    /// prepared and holding nothing. Best effort; a prepare that has already finished keeps
    /// its outcome.
    fn cancel(&self, txid: &TxId) -> impl Future<Output = ()> + Send {
        let _ = txid;
        std::future::ready(())
    }
}
