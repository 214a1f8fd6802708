//! One transaction's state while the core works on it.

use super::query::answer;
use super::RequestId;
use std::collections::{BTreeMap, BTreeSet};
use twopc_protocol::api::{HeuristicReport, PhaseTimings, TransactionResponse};
use twopc_protocol::message::{Decision, Message, NoClass, Vote};
use twopc_protocol::{CoordinatorId, Operations, ParticipantName, Priority, TxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Waiting for votes.
    Preparing,
    /// All YES; waiting for the COMMIT record to become durable.
    Deciding,
    /// Decided; delivering the decision until every ack.
    Delivering(Decision),
    /// One participant, CommitOnePhase sent; waiting for its outcome.
    OnePhase,
}

#[derive(Debug, Clone)]
pub(super) struct PartState {
    pub(super) ops: Option<Operations>,
    pub(super) vote: Option<Vote>,
    /// In phase 2: must this participant still ack?
    pub(super) owes_ack: bool,
    pub(super) attempts: u32,
    pub(super) next_send_ms: u64,
    /// Its Prepare (or CommitOnePhase) went out.
    pub(super) asked: bool,
}

impl PartState {
    /// Its first message ([`first_message`] over its operations), marking it asked.
    pub(super) fn ask(
        &mut self,
        (coordinator, epoch): (&CoordinatorId, Option<u64>),
        txid: &TxId,
        one_phase: bool,
        timeout_ms: u64,
        (priority, submitted_by): (Priority, Option<&str>),
    ) -> Message {
        self.asked = true;
        let ops = self.ops.clone().unwrap_or(Operations::Sql(Vec::new()));
        first_message(
            (coordinator, epoch),
            txid,
            ops,
            one_phase,
            timeout_ms,
            (Some(priority), submitted_by),
        )
    }

    /// Counts one more attempt and returns the exponential-backoff wait before the next one.
    pub(super) fn next_backoff(&mut self, base_ms: u64, max_ms: u64) -> u64 {
        let backoff = base_ms
            .saturating_mul(1u64 << self.attempts.min(16))
            .min(max_ms);
        self.attempts += 1;
        backoff
    }

    /// Schedules this participant's next re-send `delay_ms` from now.
    pub(super) fn schedule(
        &mut self,
        timers: &mut BTreeSet<(u64, TxId)>,
        txid: &TxId,
        now_ms: u64,
        delay_ms: u64,
    ) {
        self.next_send_ms = now_ms + delay_ms;
        timers.insert((self.next_send_ms, txid.clone()));
    }
}

#[derive(Debug, Clone)]
pub(super) struct Tx {
    /// The client's txid (the key of this attempt, its wire txid, unless `attempt` > 1).
    pub(super) client: TxId,
    /// Which attempt of the client's transaction this is, from 1.
    pub(super) attempt: u32,
    /// Aborted and retried: another attempt answers the client, so this one only delivers
    /// its abort, and neither answers nor is remembered under the client's txid.
    pub(super) superseded: bool,
    pub(super) body_hash: u64,
    pub(super) stage: Stage,
    pub(super) parts: BTreeMap<ParticipantName, PartState>,
    pub(super) waiters: Vec<RequestId>,
    pub(super) reason: Option<String>,
    /// The class of the NO that aborted it (`None`: aborted for another reason).
    pub(super) abort_class: Option<NoClass>,
    /// When the client's transaction was first submitted (attempt 1's start), µs: the timings
    /// and the retry deadline count from here.
    pub(super) started_us: u64,
    /// Its age (sent with every Prepare; decides who waits for whom on a lock).
    pub(super) priority: Priority,
    /// The API client that submitted it (sent with every Prepare, told in every answer).
    pub(super) submitted_by: Option<String>,
    /// When every vote was in, µs.
    pub(super) prepared_us: Option<u64>,
    /// When the decision was taken, µs.
    pub(super) decided_us: Option<u64>,
    pub(super) prepare_deadline_ms: u64,
    /// Client already answered (committed but acks still outstanding).
    pub(super) replied: bool,
    /// Decided ABORT as the client's outcome, its record asked for ([`super::Output::ForceAbort`])
    /// and not yet durable: nobody may hear "aborted" until it is (a lost record would let a
    /// resubmission of the id run again and commit), and the transaction is not retired.
    pub(super) abort_unlogged: bool,
    /// Not a client's transaction: a txid of this coordinator that a participant reported
    /// prepared and neither the log nor memory knows (a restart lost it before any decision),
    /// kept while its presumed Abort is delivered so that a resubmission of the id attaches
    /// to it instead of running again beside the stale prepared state. Never answered as such
    /// and never remembered.
    pub(super) presumed: bool,
    /// Acknowledgements that did not match the decision (heuristic hazards).
    pub(super) heuristics: Vec<HeuristicReport>,
}

impl PartState {
    /// A participant of a new transaction, before its first message goes out.
    pub(super) fn new(ops: Operations) -> Self {
        PartState {
            ops: Some(ops),
            vote: None,
            owes_ack: false,
            attempts: 1,
            next_send_ms: 0,
            asked: false,
        }
    }

    /// A participant of a COMMIT read back from the log: it voted YES and owes an ack; the
    /// first re-send is due at once.
    pub(super) fn recovered(now_ms: u64) -> Self {
        PartState {
            ops: None,
            vote: Some(Vote::Yes),
            owes_ack: true,
            attempts: 0,
            next_send_ms: now_ms,
            asked: true,
        }
    }
}

impl Tx {
    /// Held behind a lone attempt prepared all at once: preparing, and nobody asked yet.
    pub(super) fn held(&self) -> bool {
        self.stage == Stage::Preparing && !self.parts.values().any(|p| p.asked)
    }

    /// An attempt just started: Preparing (or OnePhase with a single participant).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: TxId,
        attempt: u32,
        first_us: u64,
        body_hash: u64,
        parts: BTreeMap<ParticipantName, PartState>,
        waiters: Vec<RequestId>,
        now_ms: u64,
        prepare_timeout_ms: u64,
        priority: Priority,
        submitted_by: Option<String>,
    ) -> Self {
        Tx {
            submitted_by,
            client,
            attempt,
            superseded: false,
            body_hash,
            stage: if parts.len() == 1 {
                Stage::OnePhase
            } else {
                Stage::Preparing
            },
            parts,
            waiters,
            reason: None,
            abort_class: None,
            started_us: first_us,
            priority,
            prepared_us: None,
            decided_us: None,
            prepare_deadline_ms: now_ms + prepare_timeout_ms,
            replied: false,
            abort_unlogged: false,
            presumed: false,
            heuristics: Vec::new(),
        }
    }

    /// A presumed abort to deliver to `participant`, which reported `txid` prepared although
    /// nothing here knows it.
    pub(super) fn presumed_abort(
        txid: &TxId,
        participant: &ParticipantName,
        reason: String,
        now_ms: u64,
    ) -> Self {
        let attempt = twopc_protocol::attempt::attempt_number(txid);
        let parts = BTreeMap::from([(participant.clone(), PartState::recovered(now_ms))]);
        Tx {
            stage: Stage::Delivering(Decision::Abort),
            reason: Some(reason),
            presumed: true,
            ..Tx::recovered(txid.clone(), attempt, 0, parts, now_ms)
        }
    }

    /// A COMMIT without END read back from the log: delivering, its client long gone.
    pub(super) fn recovered(
        client: TxId,
        attempt: u32,
        body_hash: u64,
        parts: BTreeMap<ParticipantName, PartState>,
        now_ms: u64,
    ) -> Self {
        Tx {
            client,
            attempt,
            superseded: false,
            body_hash,
            stage: Stage::Delivering(Decision::Commit),
            parts,
            waiters: Vec::new(),
            reason: None,
            abort_class: None,
            started_us: now_ms * 1000,
            // Delivering a decision takes no locks, so its age plays no part any more.
            priority: Priority(u64::MAX),
            submitted_by: None,
            prepared_us: Some(now_ms * 1000),
            decided_us: Some(now_ms * 1000),
            prepare_deadline_ms: now_ms,
            replied: true,
            abort_unlogged: false,
            presumed: false,
            heuristics: Vec::new(),
        }
    }

    /// What a client is told about this transaction now (under the client's txid).
    pub(super) fn response(&self, now_us: u64) -> TransactionResponse {
        // An ABORT is the client's answer only once its record is durable.
        let decision = match self.stage {
            Stage::Delivering(Decision::Abort) if self.abort_unlogged => None,
            Stage::Delivering(d) => Some(d),
            _ => None,
        };
        // Nor its reason, which would say as much.
        let reason = self.reason.clone().filter(|_| !self.abort_unlogged);
        let mut r = answer(
            &self.client,
            decision,
            reason,
            self.abort_class,
            self.timings(now_us),
            self.heuristics.clone(),
        );
        r.attempts = self.attempt;
        r.submitted_by = self.submitted_by.clone();
        r
    }

    /// Where its time went until `now_us`: milliseconds with the microseconds kept.
    pub(super) fn timings(&self, now_us: u64) -> PhaseTimings {
        let prep_end = self.prepared_us.unwrap_or(now_us);
        let dec_end = self.decided_us.unwrap_or(prep_end);
        PhaseTimings {
            prepare_ms: ms(prep_end.saturating_sub(self.started_us)),
            decide_ms: ms(dec_end.saturating_sub(prep_end)),
            commit_ms: ms(now_us.saturating_sub(dec_end)),
            total_ms: ms(now_us.saturating_sub(self.started_us)),
        }
    }
}

/// Microseconds as (fractional) milliseconds, the unit of the wire's timings.
pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The first message a participant gets for a transaction: Prepare, or CommitOnePhase when it
/// is the only participant. The API encodes the same message to check its size before
/// accepting the transaction, so this is the one place that builds it.
pub fn first_message(
    (coordinator, epoch): (&CoordinatorId, Option<u64>),
    txid: &TxId,
    ops: Operations,
    one_phase: bool,
    prepare_timeout_ms: u64,
    (priority, submitted_by): (Option<Priority>, Option<&str>),
) -> Message {
    let submitted_by = submitted_by.map(str::to_owned);
    if one_phase {
        Message::CommitOnePhase {
            txid: txid.clone(),
            coordinator: coordinator.clone(),
            ops,
            priority,
            epoch,
            submitted_by,
        }
    } else {
        Message::Prepare {
            txid: txid.clone(),
            coordinator: coordinator.clone(),
            ops,
            timeout_ms: Some(prepare_timeout_ms),
            priority,
            epoch,
            submitted_by,
        }
    }
}
