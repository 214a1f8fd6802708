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
}

/// The answer of [`Resource::commit_one_phase`].
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
/// The methods return `impl Future + Send` so that implementors can simply write `async fn`.
pub trait Resource: Send + Sync + 'static {
    /// What kind of participant this is (reported in the in-doubt report).
    fn kind(&self) -> ParticipantKind;

    /// Phase 1: check and stage `ops` under `txid` and make the prepared state durable
    /// before answering [`PrepareOutcome::Yes`]. A repeated Prepare of a transaction that is
    /// already prepared answers `Yes` again. `timeout` is how long the coordinator still waits
    /// for the vote: work that outlives it should be cancelled (the coordinator aborts then)
    /// rather than waited for, and must then end either prepared (`Yes`) or not at all.
    fn prepare(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<PrepareOutcome, ParticipantError>> + Send;

    /// Phase 2, COMMIT: apply what `txid` prepared. `NotPrepared` when there is no record of
    /// preparing it (never invent success), `AlreadyApplied` when it was committed before,
    /// `Conflict` when it was aborted before.
    fn commit(
        &self,
        txid: &TxId,
    ) -> impl Future<Output = Result<AckResult, ParticipantError>> + Send;

    /// Phase 2, ABORT: discard what `txid` prepared. `NotPrepared` when there is nothing
    /// (the normal presumed-abort case), `AlreadyApplied` when it was aborted before,
    /// `Conflict` when it was committed before.
    fn abort(
        &self,
        txid: &TxId,
    ) -> impl Future<Output = Result<AckResult, ParticipantError>> + Send;

    /// The only participant of a transaction: do `ops` and commit in one step.
    fn commit_one_phase(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
    ) -> impl Future<Output = Result<OnePhaseOutcome, ParticipantError>> + Send;

    /// Every transaction currently held prepared, whatever coordinator it belongs to, read
    /// from durable state (so it is complete after a restart).
    fn list_prepared(
        &self,
    ) -> impl Future<Output = Result<Vec<PreparedTx>, ParticipantError>> + Send;
}
