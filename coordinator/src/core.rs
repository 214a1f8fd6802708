//! The protocol core: two-phase commit as a pure state machine.
//!
//! Everything the coordinator decides is decided here, and nothing here does I/O. The driver
//! ([`crate::driver`]) feeds [`Input`]s in — a client submitted a transaction, a participant's
//! message arrived, a connection came or went, the decision log made a COMMIT durable, time
//! passed — and carries out the [`Output`]s that come back: send a message, force a COMMIT
//! record, append a lazy record, answer a client, publish an event. Time enters only as the
//! `now_ms` argument of [`Core::step`], so the same inputs always give the same outputs: tests
//! replay scripted scenarios, and a model checker can explore every interleaving.
//!
//! # The protocol as implemented
//!
//! * **Phase 1.** Prepare goes to every named participant at once. A participant that is not
//!   connected when the transaction starts, disconnects before voting, votes NO, or does not
//!   vote within the prepare timeout makes the decision ABORT.
//! * **Decision.** All YES (read-only votes drop out of phase 2): the core asks the driver to
//!   force a COMMIT record ([`Output::ForceCommit`]) and sends nothing until the driver reports
//!   it durable ([`Input::CommitDurable`]). Only then does any Commit leave. All read-only:
//!   committed with no log write at all.
//! * **Presumed abort.** An ABORT decision is never forced: a lazy record is appended for the
//!   transaction history, but if it is lost in a crash, a participant that later asks (or
//!   reports the transaction as prepared on reconnect) hears "abort", because a transaction
//!   without a durable COMMIT record is aborted by definition.
//! * **Phase 2.** Commit/Abort is re-sent with exponential backoff until every participant that
//!   voted YES acknowledges, across reconnects (a reconnect re-sends at once) and coordinator
//!   restarts (the driver feeds logged COMMITs without END back in via [`Core::recover`]).
//!   Then an END record is appended lazily.
//! * **One-phase commit.** A transaction with a single participant needs no coordinator
//!   decision: the participant is sent `CommitOnePhase` and decides itself; the core retries
//!   that idempotent message until it hears the outcome.
//! * **Termination.** A participant that holds a prepared transaction too long sends
//!   `DecisionRequest`; the core answers commit (COMMIT logged), pending (still voting) or abort
//!   (everything else: presumed abort). On every (re)connection a participant reports what it
//!   holds prepared; the core resolves each of this coordinator's transactions the same way and
//!   leaves other coordinators' transactions alone.
//! * **Idempotent client ids.** Resubmitting a txid with the same body attaches to the running
//!   transaction or returns the recorded outcome; a different body is rejected.
//!
//! Every message the core sends is idempotent by (txid, type) at the participants, which is
//! what makes blind re-sending safe.

use crate::metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use twopc_protocol::api::{
    HeuristicKind, HeuristicReport, Outcome, PhaseTimings, TransactionResponse,
};
use twopc_protocol::event::{EventKind, Phase as EvPhase};
use twopc_protocol::message::{AckResult, Decision, DecisionStatus, Message, Vote};
use twopc_protocol::{CoordinatorId, Operations, ParticipantName, TxId};

/// Tunables of the protocol core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This coordinator's id (part of every Postgres gid; recovery only touches its own).
    pub coordinator: CoordinatorId,
    /// How long to wait for all votes before aborting.
    pub prepare_timeout_ms: u64,
    /// First re-send interval in phase 2; doubles per attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Largest re-send interval.
    pub retry_max_ms: u64,
    /// How long a committed transaction waits for acks before the client is answered anyway
    /// (the decision is durable; delivery continues in the background).
    pub ack_wait_ms: u64,
    /// How many finished transactions are remembered for idempotent resubmission and lookup.
    pub outcome_capacity: usize,
}

impl CoreConfig {
    /// Defaults suited to the demo and tests.
    pub fn new(coordinator: CoordinatorId) -> Self {
        CoreConfig {
            coordinator,
            prepare_timeout_ms: 5_000,
            retry_base_ms: 200,
            retry_max_ms: 5_000,
            ack_wait_ms: 2_000,
            outcome_capacity: 100_000,
        }
    }
}

/// An identifier the driver gives each client request so replies find their way back.
pub type RequestId = u64;

/// Why a submission was refused outright (nothing was started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The txid is already used by a transaction with a different body.
    IdConflict {
        /// The txid.
        txid: TxId,
    },
}

/// What the core is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A client submitted a transaction (already validated by the API layer).
    Submit {
        /// Reply routing.
        req: RequestId,
        /// The transaction id.
        txid: TxId,
        /// Hash of the canonical request body, for idempotency checks.
        body_hash: u64,
        /// Operations per participant.
        participants: BTreeMap<ParticipantName, Operations>,
    },
    /// A message arrived from a participant.
    Received {
        /// The participant.
        from: ParticipantName,
        /// The message.
        msg: Message,
    },
    /// The connection to a participant is up (before its InDoubtReport arrives).
    Connected {
        /// The participant.
        participant: ParticipantName,
    },
    /// The connection to a participant went down.
    Disconnected {
        /// The participant.
        participant: ParticipantName,
        /// Why.
        reason: String,
    },
    /// The COMMIT record requested by [`Output::ForceCommit`] is durable.
    CommitDurable {
        /// The transaction.
        txid: TxId,
    },
    /// The COMMIT record could not be made durable (disk error). Whether it is on disk is now
    /// unknown (a failed fsync may leave it in the page cache, to be read back by the next
    /// process): the core decides nothing and asks the driver to halt ([`Output::Halt`]), so
    /// the outcome is decided once, by recovery, from what the log really holds.
    CommitFailed {
        /// The transaction.
        txid: TxId,
        /// The log error.
        error: String,
    },
    /// The connection task could not send a message for `txid` because its frame is over the
    /// participant's limit (the API refuses such bodies first; this is the last line of
    /// defence, so that one transaction's frame never costs the connection). The transaction
    /// aborts if it still can.
    Unsendable {
        /// The participant.
        to: ParticipantName,
        /// The transaction.
        txid: TxId,
        /// Why (the frame's size and the limit).
        reason: String,
    },
    /// Time passed; fire due timeouts and re-sends.
    Tick,
}

/// What the core asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message to a participant (dropped by the driver if it is not connected; the core
    /// re-sends what matters).
    Send {
        /// The participant.
        to: ParticipantName,
        /// The message.
        msg: Message,
    },
    /// Append a COMMIT record and fsync it; report back with [`Input::CommitDurable`].
    ForceCommit {
        /// The transaction.
        txid: TxId,
        /// Participants that must acknowledge (YES voters).
        participants: Vec<ParticipantName>,
        /// Body hash, for idempotent resubmission after a restart.
        body_hash: u64,
    },
    /// Append a record without waiting for it to be durable.
    LogLazy(LazyRecord),
    /// Answer a client request.
    Reply {
        /// Which request.
        req: RequestId,
        /// The answer.
        result: Result<TransactionResponse, SubmitError>,
    },
    /// Publish an event on the event stream.
    Event {
        /// The transaction concerned, if any.
        txid: Option<TxId>,
        /// What happened.
        kind: EventKind,
    },
    /// Stop the process now, as a crash would (no reply, no further message): the decision
    /// log failed in a way that leaves a decision unknown, and only recovery may settle it.
    /// PostgreSQL answers a failed fsync the same way (PANIC).
    Halt {
        /// Why.
        reason: String,
    },
}

/// Records appended without an fsync of their own.
#[derive(Debug, Clone, PartialEq)]
pub enum LazyRecord {
    /// An abort decision (presumed abort: losing it is safe).
    Abort {
        /// The transaction.
        txid: TxId,
        /// Body hash.
        body_hash: u64,
        /// Why.
        reason: Option<String>,
    },
    /// A one-phase commit's outcome, as reported by its single participant.
    OnePhaseCommitted {
        /// The transaction.
        txid: TxId,
        /// The participant.
        participant: ParticipantName,
        /// Body hash.
        body_hash: u64,
    },
    /// Every participant acknowledged the decision.
    End {
        /// The transaction.
        txid: TxId,
        /// Acknowledgements that did not match the decision (kept so the heuristic outcome
        /// survives a restart).
        heuristics: Vec<HeuristicReport>,
    },
}

/// A logged COMMIT without END, fed back at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredCommit {
    /// The transaction.
    pub txid: TxId,
    /// Participants that still owe an ack.
    pub participants: Vec<ParticipantName>,
    /// Body hash.
    pub body_hash: u64,
}

/// A finished transaction remembered for lookups and idempotent resubmission.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedOutcome {
    /// The decision.
    pub decision: Decision,
    /// Body hash.
    pub body_hash: u64,
    /// Why it aborted.
    pub reason: Option<String>,
    /// Phase timings (zero for outcomes recovered from the log).
    pub timings: PhaseTimings,
    /// Acknowledgements that did not match the decision.
    pub heuristics: Vec<HeuristicReport>,
}

/// Connection state and in-doubt count of one participant, for `/v1/participants`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParticipantStatus {
    /// The participant.
    pub name: ParticipantName,
    /// Whether the coordinator's connection is up.
    pub connected: bool,
    /// Prepared transactions it reported on its last InDoubtReport (all coordinators).
    pub reported_prepared: usize,
    /// Of those, transactions of other coordinators (left alone).
    pub foreign_prepared: usize,
    /// Transactions of this coordinator waiting for its ack.
    pub awaiting_ack: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
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
struct PartState {
    ops: Option<Operations>,
    vote: Option<Vote>,
    /// In phase 2: must this participant still ack?
    owes_ack: bool,
    attempts: u32,
    next_send_ms: u64,
}

impl PartState {
    /// Counts one more attempt and returns the exponential-backoff wait before the next one.
    fn next_backoff(&mut self, base_ms: u64, max_ms: u64) -> u64 {
        let backoff = base_ms
            .saturating_mul(1u64 << self.attempts.min(16))
            .min(max_ms);
        self.attempts += 1;
        backoff
    }

    /// Schedules this participant's next re-send `delay_ms` from now.
    fn schedule(
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
struct Tx {
    body_hash: u64,
    stage: Stage,
    parts: BTreeMap<ParticipantName, PartState>,
    waiters: Vec<RequestId>,
    reason: Option<String>,
    started_ms: u64,
    prepared_ms: Option<u64>,
    decided_ms: Option<u64>,
    prepare_deadline_ms: u64,
    /// Client already answered (committed but acks still outstanding).
    replied: bool,
    /// Acknowledgements that did not match the decision (heuristic hazards).
    heuristics: Vec<HeuristicReport>,
}

impl Tx {
    /// What a client is told about this transaction now.
    fn response(&self, txid: &TxId, now_ms: u64) -> TransactionResponse {
        let decision = match self.stage {
            Stage::Delivering(d) => Some(d),
            _ => None,
        };
        answer(
            txid,
            decision,
            self.reason.clone(),
            self.timings(now_ms),
            self.heuristics.clone(),
        )
    }

    fn timings(&self, now_ms: u64) -> PhaseTimings {
        let prep_end = self.prepared_ms.unwrap_or(now_ms);
        let dec_end = self.decided_ms.unwrap_or(prep_end);
        PhaseTimings {
            prepare_ms: prep_end.saturating_sub(self.started_ms) as f64,
            decide_ms: dec_end.saturating_sub(prep_end) as f64,
            commit_ms: now_ms.saturating_sub(dec_end) as f64,
            total_ms: now_ms.saturating_sub(self.started_ms) as f64,
        }
    }
}

/// The coordinator's protocol state machine. `Clone` lets a model checker branch on it
/// (coordinator/tests/model_check.rs).
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    txs: HashMap<TxId, Tx>,
    outcomes: HashMap<TxId, RecordedOutcome>,
    outcome_order: VecDeque<TxId>,
    connected: BTreeSet<ParticipantName>,
    reported: HashMap<ParticipantName, (usize, usize)>,
    /// (due time, txid): prepare deadlines and phase-2 re-sends; stale entries are skipped.
    timers: BTreeSet<(u64, TxId)>,
    /// Metrics maintained by the core (the driver renders them).
    pub metrics: Metrics,
}

impl Core {
    /// A core with no transactions.
    pub fn new(cfg: CoreConfig) -> Self {
        Core {
            cfg,
            txs: HashMap::new(),
            outcomes: HashMap::new(),
            outcome_order: VecDeque::new(),
            connected: BTreeSet::new(),
            reported: HashMap::new(),
            timers: BTreeSet::new(),
            metrics: Metrics::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Loads what the decision log knows at start-up: COMMITs without END are driven to
    /// completion, finished outcomes answer lookups and resubmissions.
    pub fn recover(
        &mut self,
        now_ms: u64,
        unfinished: Vec<RecoveredCommit>,
        finished: Vec<(TxId, RecordedOutcome)>,
    ) -> Vec<Output> {
        for (txid, o) in finished {
            self.remember(txid, o);
        }
        let mut out = Vec::new();
        let n = unfinished.len() as u32;
        for rc in unfinished {
            let parts = rc
                .participants
                .into_iter()
                .map(|p| {
                    (
                        p,
                        PartState {
                            ops: None,
                            vote: Some(Vote::Yes),
                            owes_ack: true,
                            attempts: 0,
                            next_send_ms: now_ms,
                        },
                    )
                })
                .collect();
            let tx = Tx {
                body_hash: rc.body_hash,
                stage: Stage::Delivering(Decision::Commit),
                parts,
                waiters: Vec::new(),
                reason: None,
                started_ms: now_ms,
                prepared_ms: Some(now_ms),
                decided_ms: Some(now_ms),
                prepare_deadline_ms: now_ms,
                replied: true,
                heuristics: Vec::new(),
            };
            self.timers.insert((now_ms, rc.txid.clone()));
            self.txs.insert(rc.txid, tx);
        }
        out.push(Output::Event {
            txid: None,
            kind: EventKind::CoordinatorStarted {
                coordinator: self.cfg.coordinator.to_string(),
                recovering: n,
            },
        });
        out
    }

    /// Feeds one input and returns what to do, in order.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Submit {
                req,
                txid,
                body_hash,
                participants,
            } => self.submit(now_ms, req, txid, body_hash, participants, &mut out),
            Input::Received { from, msg } => self.received(now_ms, from, msg, &mut out),
            Input::Connected { participant } => {
                // Re-sending waits for the participant's InDoubtReport, which is always its
                // first message on a new connection.
                self.connected.insert(participant);
            }
            Input::Disconnected {
                participant,
                reason,
            } => {
                self.connected.remove(&participant);
                out.push(Output::Event {
                    txid: None,
                    kind: EventKind::ParticipantDisconnected {
                        participant: participant.to_string(),
                        reason: reason.clone(),
                    },
                });
                // Fail fast: a transaction still collecting votes from it cannot commit soon.
                let victims: Vec<TxId> = self
                    .txs
                    .iter()
                    .filter(|(_, tx)| {
                        matches!(tx.stage, Stage::Preparing)
                            && tx.parts.get(&participant).is_some_and(|p| p.vote.is_none())
                    })
                    .map(|(t, _)| t.clone())
                    .collect();
                for txid in victims {
                    let why =
                        format!("participant {participant} disconnected before voting ({reason})");
                    self.decide_abort(now_ms, &txid, why, &mut out);
                }
            }
            Input::CommitDurable { txid } => self.commit_durable(now_ms, &txid, &mut out),
            Input::CommitFailed { txid, error } => {
                if self
                    .txs
                    .get(&txid)
                    .is_some_and(|t| t.stage == Stage::Deciding)
                {
                    // Not an abort: the COMMIT record may be on disk after all, and the next
                    // process would then commit what this one had aborted.
                    out.push(Output::Halt {
                        reason: format!(
                            "the COMMIT record of {txid} may or may not be durable ({error}); halting so that recovery decides from the log"
                        ),
                    });
                }
            }
            Input::Unsendable { to, txid, reason } => {
                let Some(tx) = self.txs.get_mut(&txid) else {
                    return out;
                };
                let unvoted = tx.parts.get(&to).is_some_and(|p| p.vote.is_none());
                if matches!(tx.stage, Stage::Preparing | Stage::OnePhase) && unvoted {
                    // It never received the message, so it holds nothing: like a NO vote (and
                    // a one-phase participant owes no ack for what it never got).
                    if let Some(p) = tx.parts.get_mut(&to) {
                        p.vote = Some(Vote::No);
                        p.owes_ack = false;
                    }
                    let why =
                        format!("the message to participant {to} could not be sent: {reason}");
                    self.decide_abort(now_ms, &txid, why, &mut out);
                }
            }
            Input::Tick => self.tick(now_ms, &mut out),
        }
        out
    }

    /// The state of a transaction, for `GET /v1/transactions/{id}`.
    pub fn lookup(&self, now_ms: u64, txid: &TxId) -> Option<TransactionResponse> {
        if let Some(tx) = self.txs.get(txid) {
            return Some(tx.response(txid, now_ms));
        }
        self.outcomes.get(txid).map(|o| response(txid, o))
    }

    /// Per-participant connection state, for `/v1/participants`.
    pub fn participant_status(&self, names: &[ParticipantName]) -> Vec<ParticipantStatus> {
        names
            .iter()
            .map(|n| {
                let (reported, foreign) = self.reported.get(n).copied().unwrap_or((0, 0));
                ParticipantStatus {
                    name: n.clone(),
                    connected: self.connected.contains(n),
                    reported_prepared: reported,
                    foreign_prepared: foreign,
                    awaiting_ack: self
                        .txs
                        .values()
                        .filter(|t| t.parts.get(n).is_some_and(|p| p.owes_ack))
                        .count(),
                }
            })
            .collect()
    }

    /// Number of transactions not yet finished (in flight or delivering).
    pub fn active(&self) -> usize {
        self.txs.len()
    }

    /// Transactions decided COMMIT whose delivery is not finished, with who still owes an ack.
    pub fn undelivered(&self) -> Vec<(TxId, Decision, Vec<ParticipantName>)> {
        let mut v: Vec<_> = self
            .txs
            .iter()
            .filter_map(|(t, tx)| match tx.stage {
                Stage::Delivering(d) => Some((
                    t.clone(),
                    d,
                    tx.parts
                        .iter()
                        .filter(|(_, p)| p.owes_ack)
                        .map(|(n, _)| n.clone())
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn submit(
        &mut self,
        now_ms: u64,
        req: RequestId,
        txid: TxId,
        body_hash: u64,
        participants: BTreeMap<ParticipantName, Operations>,
        out: &mut Vec<Output>,
    ) {
        if let Some(tx) = self.txs.get_mut(&txid) {
            if tx.body_hash != body_hash {
                out.push(Output::Reply {
                    req,
                    result: Err(SubmitError::IdConflict { txid }),
                });
            } else if tx.replied {
                let resp = tx.response(&txid, now_ms);
                out.push(Output::Reply {
                    req,
                    result: Ok(resp),
                });
            } else {
                tx.waiters.push(req);
            }
            return;
        }
        if let Some(o) = self.outcomes.get(&txid) {
            let result = if o.body_hash == body_hash {
                Ok(response(&txid, o))
            } else {
                Err(SubmitError::IdConflict { txid })
            };
            out.push(Output::Reply { req, result });
            return;
        }
        self.metrics.started += 1;
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::TxBegin {
                participants: participants.keys().map(|p| p.to_string()).collect(),
            },
        });
        let one_phase = participants.len() == 1;
        let parts: BTreeMap<ParticipantName, PartState> = participants
            .into_iter()
            .map(|(p, ops)| {
                (
                    p,
                    PartState {
                        ops: Some(ops),
                        vote: None,
                        owes_ack: false,
                        attempts: 1,
                        next_send_ms: 0,
                    },
                )
            })
            .collect();
        let mut tx = Tx {
            body_hash,
            stage: if one_phase {
                Stage::OnePhase
            } else {
                Stage::Preparing
            },
            parts,
            waiters: vec![req],
            reason: None,
            started_ms: now_ms,
            prepared_ms: None,
            decided_ms: None,
            prepare_deadline_ms: now_ms + self.cfg.prepare_timeout_ms,
            replied: false,
            heuristics: Vec::new(),
        };
        let missing: Vec<String> = tx
            .parts
            .keys()
            .filter(|p| !self.connected.contains(*p))
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() && !one_phase {
            // Nobody was asked anything: abort without sending a single message. (Not for a
            // one-phase transaction: its participant decides alone and this coordinator keeps
            // no record before it does, so the id may be a resubmission whose first attempt
            // committed there before a crash here. It waits for the participant instead: the
            // CommitOnePhase goes out when it connects, and its answer, `already_applied`
            // included, is the outcome.)
            let why = format!("participant(s) not connected: {}", missing.join(", "));
            for p in tx.parts.values_mut() {
                p.vote = Some(Vote::No);
            }
            self.txs.insert(txid.clone(), tx);
            self.decide_abort(now_ms, &txid, why, out);
            return;
        }
        for (name, p) in tx.parts.iter_mut() {
            let ops = p.ops.clone().unwrap_or(Operations::Sql(Vec::new()));
            if one_phase {
                p.owes_ack = true;
                p.next_send_ms = now_ms + self.cfg.prepare_timeout_ms;
            }
            let msg = first_message(
                &self.cfg.coordinator,
                &txid,
                ops,
                one_phase,
                self.cfg.prepare_timeout_ms,
            );
            send(out, &txid, name, msg);
        }
        let due = if one_phase {
            now_ms + self.cfg.prepare_timeout_ms
        } else {
            tx.prepare_deadline_ms
        };
        self.timers.insert((due, txid.clone()));
        self.txs.insert(txid, tx);
    }

    fn received(
        &mut self,
        now_ms: u64,
        from: ParticipantName,
        msg: Message,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Event {
            txid: msg.txid().cloned(),
            kind: EventKind::MessageReceived {
                from: from.to_string(),
                msg_type: msg.message_type(),
                summary: msg.summary(),
            },
        });
        match msg {
            Message::Vote { txid, vote, reason } => {
                self.vote(now_ms, &from, txid, vote, reason, out)
            }
            Message::Ack {
                txid,
                decision,
                result,
                reason,
            } => self.ack(now_ms, &from, txid, decision, result, reason, out),
            Message::DecisionRequest { txid } => {
                out.push(Output::Event {
                    txid: Some(txid.clone()),
                    kind: EventKind::DecisionRequested {
                        participant: from.to_string(),
                    },
                });
                let status = self.decision_status(&txid);
                send(
                    out,
                    &txid,
                    &from,
                    Message::DecisionAnswer {
                        txid: txid.clone(),
                        status,
                    },
                );
                // Presumed abort also covers a participant we never finished with.
                if status == DecisionStatus::Abort && !self.txs.contains_key(&txid) {
                    self.metrics.presumed_aborts += 1;
                }
            }
            Message::InDoubtReport { prepared, .. } => {
                let total = prepared.len();
                let mut foreign = 0;
                // Everything this participant owes an ack for gets its decision again, whether
                // or not it is still prepared there (it may have finished before a crash).
                self.resend_all_to(now_ms, &from, out);
                for p in prepared {
                    if p.coordinator != self.cfg.coordinator {
                        foreign += 1;
                        continue;
                    }
                    let handled = self
                        .txs
                        .get(&p.txid)
                        .and_then(|t| t.parts.get(&from))
                        .is_some_and(|ps| ps.owes_ack);
                    if !handled {
                        self.resolve_reported(now_ms, &from, p.txid, out);
                    }
                }
                self.reported.insert(from.clone(), (total, foreign));
                out.push(Output::Event {
                    txid: None,
                    kind: EventKind::ParticipantConnected {
                        participant: from.to_string(),
                        in_doubt: total as u32,
                    },
                });
            }
            Message::Ping { nonce } => {
                out.push(Output::Send {
                    to: from,
                    msg: Message::Pong { nonce },
                });
            }
            // Pongs and error replies need no protocol action; they are in the event stream.
            _ => {}
        }
    }

    fn decision_status(&self, txid: &TxId) -> DecisionStatus {
        match self.txs.get(txid).map(|t| t.stage) {
            Some(Stage::Delivering(Decision::Commit)) => DecisionStatus::Commit,
            Some(Stage::Delivering(Decision::Abort)) => DecisionStatus::Abort,
            Some(Stage::Preparing | Stage::Deciding | Stage::OnePhase) => DecisionStatus::Pending,
            None => match self.outcomes.get(txid).map(|o| o.decision) {
                Some(Decision::Commit) => DecisionStatus::Commit,
                _ => DecisionStatus::Abort,
            },
        }
    }

    /// A participant reported `txid` prepared (on connect). Tell it the outcome, or leave it
    /// alone while the transaction is still running here.
    fn resolve_reported(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        out: &mut Vec<Output>,
    ) {
        match self.decision_status(&txid) {
            DecisionStatus::Pending => {}
            DecisionStatus::Commit => {
                if !self.txs.contains_key(&txid) {
                    // Finished here, yet the participant still holds it: deliver again.
                    send(out, &txid, from, Message::Commit { txid: txid.clone() });
                } else {
                    self.send_decision_now(now_ms, &txid, from, out);
                }
            }
            DecisionStatus::Abort => {
                if self.txs.contains_key(&txid) {
                    self.send_decision_now(now_ms, &txid, from, out);
                } else {
                    self.metrics.presumed_aborts += 1;
                    let reason = Some("presumed abort: no COMMIT decision is logged".to_string());
                    send(
                        out,
                        &txid,
                        from,
                        Message::Abort {
                            txid: txid.clone(),
                            reason,
                        },
                    );
                }
            }
        }
    }

    fn vote(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        vote: Vote,
        reason: Option<String>,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::Vote {
                participant: from.to_string(),
                vote,
                reason: reason.clone(),
            },
        });
        let Some(tx) = self.txs.get_mut(&txid) else {
            // A vote for a transaction this coordinator has finished or never knew: if it
            // prepared, it must not stay prepared (presumed abort unless COMMIT was logged).
            if vote == Vote::Yes {
                let status = self.decision_status(&txid);
                let msg = if status == DecisionStatus::Commit {
                    Message::Commit { txid: txid.clone() }
                } else {
                    Message::Abort {
                        txid: txid.clone(),
                        reason: Some("late vote".into()),
                    }
                };
                send(out, &txid, from, msg);
            }
            return;
        };
        let Some(part) = tx.parts.get_mut(from) else {
            return;
        };
        match tx.stage {
            Stage::Preparing => {
                if part.vote.is_some() {
                    return; // duplicate vote
                }
                part.vote = Some(vote);
                if vote == Vote::No {
                    let why = format!(
                        "participant {from} voted no: {}",
                        reason.unwrap_or_else(|| "no reason given".into())
                    );
                    self.decide_abort(now_ms, &txid, why, out);
                    return;
                }
                if tx.parts.values().all(|p| p.vote.is_some()) {
                    tx.prepared_ms = Some(now_ms);
                    let yes: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.vote == Some(Vote::Yes))
                        .map(|(n, _)| n.clone())
                        .collect();
                    if yes.is_empty() {
                        // Everyone read-only: nothing to decide durably, nothing to deliver.
                        // The stage says "decided" so that finish() answers the client now
                        // (it only answers decided transactions; left at Preparing, the client
                        // heard nothing until its own timeout).
                        tx.decided_ms = Some(now_ms);
                        tx.stage = Stage::Delivering(Decision::Commit);
                        out.push(Output::Event {
                            txid: Some(txid.clone()),
                            kind: EventKind::Decision {
                                decision: Decision::Commit,
                                reason: Some("all read-only".into()),
                            },
                        });
                        self.finish(now_ms, &txid, Decision::Commit, out);
                    } else {
                        tx.stage = Stage::Deciding;
                        out.push(Output::ForceCommit {
                            txid: txid.clone(),
                            participants: yes,
                            body_hash: tx.body_hash,
                        });
                    }
                }
            }
            Stage::Delivering(Decision::Abort) if vote == Vote::Yes => {
                // Prepared after we had already decided abort: roll it back too.
                part.owes_ack = true;
                part.vote = Some(vote);
                self.send_decision_now(now_ms, &txid, from, out);
            }
            _ => {}
        }
    }

    fn commit_durable(&mut self, now_ms: u64, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if tx.stage != Stage::Deciding {
            return;
        }
        tx.stage = Stage::Delivering(Decision::Commit);
        tx.decided_ms = Some(now_ms);
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::Decision {
                decision: Decision::Commit,
                reason: None,
            },
        });
        let names: Vec<ParticipantName> = tx
            .parts
            .iter_mut()
            .filter(|(_, p)| p.vote == Some(Vote::Yes))
            .map(|(n, p)| {
                p.owes_ack = true;
                n.clone()
            })
            .collect();
        for n in names {
            self.send_decision_now(now_ms, txid, &n, out);
        }
        // Answer the client after the acks or after ack_wait_ms, whichever comes first.
        self.timers
            .insert((now_ms + self.cfg.ack_wait_ms, txid.clone()));
    }

    fn decide_abort(&mut self, now_ms: u64, txid: &TxId, why: String, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if matches!(tx.stage, Stage::Delivering(_)) {
            return;
        }
        tx.stage = Stage::Delivering(Decision::Abort);
        tx.prepared_ms.get_or_insert(now_ms);
        tx.decided_ms = Some(now_ms);
        tx.reason = Some(why.clone());
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::Decision {
                decision: Decision::Abort,
                reason: Some(why.clone()),
            },
        });
        out.push(Output::LogLazy(LazyRecord::Abort {
            txid: txid.clone(),
            body_hash: tx.body_hash,
            reason: Some(why),
        }));
        // Everyone who may hold it prepared gets an Abort: YES voters and those who have not
        // voted (their Prepare may still be in flight). NO and read-only voters hold nothing.
        let names: Vec<ParticipantName> = tx
            .parts
            .iter_mut()
            .filter(|(_, p)| matches!(p.vote, None | Some(Vote::Yes)))
            .map(|(n, p)| {
                p.owes_ack = true;
                n.clone()
            })
            .collect();
        // Presumed abort: the client can be told at once; no log write to wait for.
        self.reply_waiters(now_ms, txid, out);
        for n in names {
            self.send_decision_now(now_ms, txid, &n, out);
        }
        self.maybe_end(now_ms, txid, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn ack(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        decision: Decision,
        result: AckResult,
        reason: Option<String>,
        out: &mut Vec<Output>,
    ) {
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        match tx.stage {
            Stage::OnePhase => {
                let Some(p) = tx.parts.get_mut(from) else {
                    return;
                };
                p.owes_ack = false;
                tx.prepared_ms = Some(now_ms);
                tx.decided_ms = Some(now_ms);
                if decision == Decision::Commit && result != AckResult::NotPrepared {
                    out.push(Output::Event {
                        txid: Some(txid.clone()),
                        kind: EventKind::Ack {
                            participant: from.to_string(),
                            decision,
                        },
                    });
                    out.push(Output::LogLazy(LazyRecord::OnePhaseCommitted {
                        txid: txid.clone(),
                        participant: from.clone(),
                        body_hash: tx.body_hash,
                    }));
                    tx.stage = Stage::Delivering(Decision::Commit);
                    out.push(Output::Event {
                        txid: Some(txid.clone()),
                        kind: EventKind::Decision {
                            decision: Decision::Commit,
                            reason: Some("one-phase commit".into()),
                        },
                    });
                    self.finish(now_ms, &txid, Decision::Commit, out);
                } else {
                    let why = format!(
                        "participant {from} aborted the one-phase commit: {}",
                        reason.unwrap_or_else(|| format!("{result:?}"))
                    );
                    for p in tx.parts.values_mut() {
                        p.vote = Some(Vote::No);
                    }
                    self.decide_abort(now_ms, &txid, why, out);
                }
            }
            Stage::Delivering(d) if d == decision => {
                let Some(p) = tx.parts.get_mut(from) else {
                    return;
                };
                if !p.owes_ack {
                    return;
                }
                p.owes_ack = false;
                out.push(Output::Event {
                    txid: Some(txid.clone()),
                    kind: EventKind::Ack {
                        participant: from.to_string(),
                        decision,
                    },
                });
                // Anything but "applied" (or "already applied", a repeat) means the
                // participant's state does not match the decision: a heuristic hazard an
                // operator must look at. Counted, published, and in the client's outcome;
                // never a silent success. (`not_prepared` after an ABORT is ordinary presumed
                // abort: the participant holds nothing, as decided.)
                let hazard = match (d, result) {
                    (_, AckResult::Conflict) => Some(HeuristicKind::Conflict),
                    (Decision::Commit, AckResult::NotPrepared) => Some(HeuristicKind::NotPrepared),
                    _ => None,
                };
                if let Some(kind) = hazard {
                    self.metrics.heuristic_hazards += 1;
                    tx.heuristics.push(HeuristicReport {
                        participant: from.clone(),
                        result: kind,
                    });
                    out.push(Output::Event {
                        txid: Some(txid.clone()),
                        kind: EventKind::Heuristic {
                            participant: from.to_string(),
                            decision,
                            result: kind,
                        },
                    });
                }
                self.maybe_end(now_ms, &txid, out);
            }
            _ => {}
        }
    }

    fn maybe_end(&mut self, now_ms: u64, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get(txid) else { return };
        let Stage::Delivering(d) = tx.stage else {
            return;
        };
        if tx.parts.values().any(|p| p.owes_ack) {
            return;
        }
        // An abort needs no END (presumed abort), unless it carries heuristics to keep.
        if d == Decision::Commit || !tx.heuristics.is_empty() {
            out.push(Output::LogLazy(LazyRecord::End {
                txid: txid.clone(),
                heuristics: tx.heuristics.clone(),
            }));
        }
        self.finish(now_ms, txid, d, out);
    }

    /// The transaction is over: answer waiters, remember the outcome, forget the state.
    fn finish(&mut self, now_ms: u64, txid: &TxId, d: Decision, out: &mut Vec<Output>) {
        self.reply_waiters(now_ms, txid, out);
        let Some(tx) = self.txs.remove(txid) else {
            return;
        };
        let timings = tx.timings(now_ms);
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::TxEnd {
                decision: d,
                prepare_ms: timings.prepare_ms,
                decide_ms: timings.decide_ms,
                commit_ms: timings.commit_ms,
                heuristic: !tx.heuristics.is_empty(),
            },
        });
        self.metrics.observe_end(d, &timings);
        self.remember(
            txid.clone(),
            RecordedOutcome {
                decision: d,
                body_hash: tx.body_hash,
                reason: tx.reason,
                timings,
                heuristics: tx.heuristics,
            },
        );
    }

    fn reply_waiters(&mut self, now_ms: u64, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if !matches!(tx.stage, Stage::Delivering(_)) {
            return;
        }
        tx.replied = true;
        let resp = tx.response(txid, now_ms);
        for req in tx.waiters.drain(..) {
            out.push(Output::Reply {
                req,
                result: Ok(resp.clone()),
            });
        }
    }

    fn remember(&mut self, txid: TxId, o: RecordedOutcome) {
        if self.outcomes.insert(txid.clone(), o).is_none() {
            self.outcome_order.push_back(txid);
        }
        while self.outcome_order.len() > self.cfg.outcome_capacity {
            if let Some(old) = self.outcome_order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    /// Sends the decision to one participant now and schedules the next re-send.
    fn send_decision_now(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        to: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        let (base, max) = (self.cfg.retry_base_ms, self.cfg.retry_max_ms);
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        let Stage::Delivering(d) = tx.stage else {
            return;
        };
        let reason = tx.reason.clone();
        let Some(p) = tx.parts.get_mut(to) else {
            return;
        };
        if !p.owes_ack {
            return;
        }
        let backoff = p.next_backoff(base, max);
        p.schedule(&mut self.timers, txid, now_ms, backoff);
        let msg = match d {
            Decision::Commit => Message::Commit { txid: txid.clone() },
            Decision::Abort => Message::Abort {
                txid: txid.clone(),
                reason,
            },
        };
        send(out, txid, to, msg);
    }

    fn resend_all_to(&mut self, now_ms: u64, participant: &ParticipantName, out: &mut Vec<Output>) {
        let due: Vec<TxId> = self
            .txs
            .iter()
            .filter(|(_, tx)| tx.parts.get(participant).is_some_and(|p| p.owes_ack))
            .map(|(t, _)| t.clone())
            .collect();
        for txid in due {
            let stage = self.txs.get(&txid).map(|t| t.stage);
            match stage {
                Some(Stage::Delivering(_)) => {
                    self.metrics.retries += 1;
                    self.send_decision_now(now_ms, &txid, participant, out);
                }
                Some(Stage::OnePhase) => self.resend_one_phase(now_ms, &txid, participant, out),
                _ => {}
            }
        }
    }

    fn resend_one_phase(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        to: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        let (base, max) = (self.cfg.retry_base_ms, self.cfg.retry_max_ms);
        let coordinator = self.cfg.coordinator.clone();
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        let Some(p) = tx.parts.get_mut(to) else {
            return;
        };
        let backoff = p.next_backoff(base, max);
        p.schedule(&mut self.timers, txid, now_ms, backoff);
        self.metrics.retries += 1;
        out.push(Output::Event {
            txid: Some(txid.clone()),
            kind: EventKind::Retry {
                participant: to.to_string(),
                attempt: p.attempts,
            },
        });
        let ops = p.ops.clone().unwrap_or(Operations::Sql(Vec::new()));
        send(
            out,
            txid,
            to,
            Message::CommitOnePhase {
                txid: txid.clone(),
                coordinator,
                ops,
            },
        );
    }

    /// A participant that is not connected is re-sent to when it reconnects; a slow timer
    /// keeps the transaction from being forgotten meanwhile.
    fn park(&mut self, now_ms: u64, txid: &TxId, p: &ParticipantName) {
        let max = self.cfg.retry_max_ms;
        if let Some(ps) = self.txs.get_mut(txid).and_then(|t| t.parts.get_mut(p)) {
            ps.schedule(&mut self.timers, txid, now_ms, max);
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        while let Some((due, txid)) = self.timers.first().cloned() {
            if due > now_ms {
                break;
            }
            self.timers.pop_first();
            let Some(tx) = self.txs.get(&txid) else {
                continue;
            };
            match tx.stage {
                Stage::Preparing if tx.prepare_deadline_ms <= now_ms => {
                    let silent: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.vote.is_none())
                        .map(|(n, _)| n.clone())
                        .collect();
                    self.metrics.timeouts += 1;
                    for p in &silent {
                        out.push(Output::Event {
                            txid: Some(txid.clone()),
                            kind: EventKind::Timeout {
                                participant: p.to_string(),
                                phase: EvPhase::Prepare,
                            },
                        });
                    }
                    let names: Vec<String> = silent.iter().map(|p| p.to_string()).collect();
                    let why = format!(
                        "prepare timeout: no vote from {} within {} ms",
                        names.join(", "),
                        self.cfg.prepare_timeout_ms
                    );
                    self.decide_abort(now_ms, &txid, why, out);
                }
                Stage::Delivering(_) => {
                    if !tx.replied
                        && tx
                            .decided_ms
                            .is_some_and(|d| d + self.cfg.ack_wait_ms <= now_ms)
                    {
                        self.reply_waiters(now_ms, &txid, out);
                    }
                    let due_parts: Vec<(ParticipantName, u32)> = self
                        .txs
                        .get(&txid)
                        .map(|tx| {
                            tx.parts
                                .iter()
                                .filter(|(_, p)| p.owes_ack && p.next_send_ms <= now_ms)
                                .map(|(n, p)| (n.clone(), p.attempts))
                                .collect()
                        })
                        .unwrap_or_default();
                    for (p, attempt) in due_parts {
                        if !self.connected.contains(&p) {
                            self.park(now_ms, &txid, &p);
                            continue;
                        }
                        self.metrics.retries += 1;
                        out.push(Output::Event {
                            txid: Some(txid.clone()),
                            kind: EventKind::Retry {
                                participant: p.to_string(),
                                attempt: attempt + 1,
                            },
                        });
                        self.send_decision_now(now_ms, &txid, &p, out);
                    }
                }
                Stage::OnePhase => {
                    let due_parts: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.owes_ack && p.next_send_ms <= now_ms)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for p in due_parts {
                        if self.connected.contains(&p) {
                            out.push(Output::Event {
                                txid: Some(txid.clone()),
                                kind: EventKind::Timeout {
                                    participant: p.to_string(),
                                    phase: EvPhase::Commit,
                                },
                            });
                            self.resend_one_phase(now_ms, &txid, &p, out);
                        } else {
                            self.park(now_ms, &txid, &p);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The first message a participant gets for a transaction: Prepare, or CommitOnePhase when it
/// is the only participant. The API encodes the same message to check its size before
/// accepting the transaction, so this is the one place that builds it.
pub fn first_message(
    coordinator: &CoordinatorId,
    txid: &TxId,
    ops: Operations,
    one_phase: bool,
    prepare_timeout_ms: u64,
) -> Message {
    if one_phase {
        Message::CommitOnePhase {
            txid: txid.clone(),
            coordinator: coordinator.clone(),
            ops,
        }
    } else {
        Message::Prepare {
            txid: txid.clone(),
            coordinator: coordinator.clone(),
            ops,
            timeout_ms: Some(prepare_timeout_ms),
        }
    }
}

fn response(txid: &TxId, o: &RecordedOutcome) -> TransactionResponse {
    answer(
        txid,
        Some(o.decision),
        o.reason.clone(),
        o.timings,
        o.heuristics.clone(),
    )
}

/// The client's answer: `decision` is `None` while undecided. A heuristic outcome also
/// names the decision and the mismatching acknowledgements; the plain ones do not need to.
fn answer(
    txid: &TxId,
    decision: Option<Decision>,
    reason: Option<String>,
    timings: PhaseTimings,
    heuristics: Vec<HeuristicReport>,
) -> TransactionResponse {
    let outcome = match decision {
        Some(d) => Outcome::of(d, &heuristics),
        None => Outcome::InProgress,
    };
    TransactionResponse {
        id: txid.clone(),
        outcome,
        reason,
        timings,
        decision: decision.filter(|_| !heuristics.is_empty()),
        heuristics,
    }
}

fn send(out: &mut Vec<Output>, txid: &TxId, to: &ParticipantName, msg: Message) {
    out.push(Output::Event {
        txid: Some(txid.clone()),
        kind: EventKind::MessageSent {
            to: to.to_string(),
            msg_type: msg.message_type(),
            summary: msg.summary(),
        },
    });
    out.push(Output::Send {
        to: to.clone(),
        msg,
    });
}
