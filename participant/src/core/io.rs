//! What goes into the participant core and what comes out: the vocabulary between the pure
//! rules ([`super::Participant`]) and the server that carries them out.

use crate::resource::{Blocked, OnePhaseOutcome, PrepareOutcome, Wait};
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, Frame, Operations, ParticipantKind, ParticipantName,
    PreparedTx, Priority, TxId,
};

/// Names one coordinator connection (the server numbers them).
pub type ConnId = u64;
/// Names one call to the resource, from [`Output::Call`] to [`Input::Completed`].
pub type CallId = u64;

/// The two clocks the rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// A monotonic clock, for timers and backoff.
    pub monotonic_ms: u64,
    /// Milliseconds since the Unix epoch, to compare with [`PreparedTx::prepared_at_ms`].
    pub unix_ms: u64,
}

/// What the rules need to know about this participant.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Reported in every in-doubt report.
    pub name: ParticipantName,
    /// Reported in every in-doubt report.
    pub kind: ParticipantKind,
    /// Permits per connection (see the module docs).
    pub max_in_flight: usize,
    /// How long a transaction stays prepared before the participant asks for the decision.
    pub decision_timeout_ms: u64,
    /// Wait after the first DecisionRequest for a transaction; doubles per attempt.
    pub decision_retry_initial_ms: u64,
    /// The longest wait between two DecisionRequests for a transaction.
    pub decision_retry_max_ms: u64,
    /// The lock-wait bound: a prepare that has waited this long for locks votes NO
    /// (`conflict`). Well under the coordinator's prepare timeout.
    pub lock_wait_ms: u64,
    /// How long a transaction waits for an *older* one before it gives way (votes NO,
    /// `conflict`): the bound on how long a cross-store deadlock can last.
    pub give_way_ms: u64,
    /// The resource waits inside its calls ([`Resource::waits_inside`](crate::Resource)): list
    /// its waits this often while a prepare has been running at least as long.
    pub wait_check_ms: Option<u64>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A coordinator connected and authenticated; nothing has been sent to it yet.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// A decoded frame arrived on `conn`.
    Received {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// The connection is gone; nothing more can be sent on it.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// A call to the resource ended.
    Completed {
        /// The [`Output::Call`] it answers.
        call: CallId,
        /// What the resource answered.
        result: Result<Answer, ResourceFailed>,
    },
    /// A frame could not be queued on its connection; what the [`Output::Send`] asked for.
    Undelivered(IfUndelivered),
    /// The termination timer fired.
    Tick,
    /// The time [`Participant::next_wake_ms`](super::Participant::next_wake_ms) asked for
    /// has come (a lock wait's bound, a wait check).
    Wake,
}

/// A call to the [`Resource`](crate::Resource), one per method that does work.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// [`Resource::prepare`](crate::Resource::prepare).
    Prepare {
        /// The transaction's coordinator.
        coordinator: CoordinatorId,
        /// The transaction.
        txid: TxId,
        /// What to stage.
        ops: Operations,
        /// What is left of the coordinator's prepare timeout.
        timeout_ms: Option<u64>,
        /// The transaction's age (who may wait for whom on a lock).
        priority: Option<Priority>,
        /// The API client that submitted it, for the resource's records.
        submitted_by: Option<String>,
    },
    /// [`Resource::commit`](crate::Resource::commit) or
    /// [`Resource::abort`](crate::Resource::abort): apply the coordinator's decision.
    Settle {
        /// The transaction.
        txid: TxId,
        /// Commit or abort.
        decision: Decision,
        /// Whose transaction it is, when the message said (or the participant asked about
        /// it as that coordinator's).
        coordinator: Option<CoordinatorId>,
    },
    /// [`Resource::commit_one_phase`](crate::Resource::commit_one_phase).
    CommitOnePhase {
        /// The transaction's coordinator.
        coordinator: CoordinatorId,
        /// The transaction.
        txid: TxId,
        /// What to do.
        ops: Operations,
        /// The transaction's age.
        priority: Option<Priority>,
        /// The API client that submitted it, for the resource's records.
        submitted_by: Option<String>,
        /// A held lock may be answered [`Answer::OnePhaseBlocked`] (every run but the last
        /// try after a lock wait ran out; see the `waits` module).
        may_wait: bool,
    },
    /// [`Resource::list_prepared`](crate::Resource::list_prepared).
    ListPrepared,
    /// [`Resource::waits`](crate::Resource::waits).
    ListWaits,
}

impl Call {
    /// The transaction the call works on; calls for one txid are serialized.
    pub fn txid(&self) -> Option<&TxId> {
        match self {
            Call::Prepare { txid, .. }
            | Call::Settle { txid, .. }
            | Call::CommitOnePhase { txid, .. } => Some(txid),
            Call::ListPrepared | Call::ListWaits => None,
        }
    }
}

/// What the resource answered to a [`Call`] (the variant matches the call).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// To [`Call::Prepare`].
    Voted(PrepareOutcome),
    /// To [`Call::Settle`].
    Settled(AckResult),
    /// To [`Call::CommitOnePhase`].
    OnePhase(OnePhaseOutcome),
    /// To [`Call::CommitOnePhase`] with `may_wait`: a lock is held, nothing was done.
    OnePhaseBlocked(Blocked),
    /// To [`Call::ListPrepared`].
    Listed(Vec<PreparedTx>),
    /// To [`Call::ListWaits`].
    Waits(Vec<Wait>),
}

/// A call to the resource failed; the text goes to the peer in an `internal` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFailed(pub String);

/// What the core wants when a frame it sent cannot be queued (the connection closed, or its
/// queue is full).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfUndelivered {
    /// Nothing: the coordinator re-sends its request.
    Drop,
    /// A YES the coordinator never heard: ask for the decision at once elsewhere.
    AskForDecision {
        /// The transaction.
        txid: TxId,
        /// Its coordinator (to choose a connection).
        coordinator: CoordinatorId,
    },
    /// A DecisionRequest that did not go out does not count as an attempt.
    AskAgain {
        /// The transaction.
        txid: TxId,
    },
}

/// Why the core closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// The in-doubt report could not be read, so the connection cannot start.
    CannotListPrepared,
}

/// Something the server must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `frame` on `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Frame,
        /// What to report back as [`Input::Undelivered`] when it cannot be queued.
        if_undelivered: IfUndelivered,
    },
    /// Call the resource; report the result as [`Input::Completed`] with the same `call`.
    Call {
        /// Names the call.
        call: CallId,
        /// What to call.
        op: Call,
    },
    /// Stop `txid`'s running prepare ([`Resource::cancel`](crate::Resource::cancel)): it must
    /// give way to an older transaction. Its call still completes as usual.
    Cancel {
        /// The transaction.
        txid: TxId,
    },
    /// Close `conn` (it is then reported [`Input::Disconnected`]).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: CloseWhy,
    },
}
