//! The participant's protocol rules as a pure state machine.
//!
//! Everything a participant decides is decided here, and nothing here does I/O: no sockets, no
//! tokio, no clock, no resource. The server ([`crate::server`]) feeds [`Input`]s in — a coordinator
//! connected or went away, a frame arrived, a call to the [`Resource`](crate::Resource) completed,
//! the termination timer fired — and carries out the [`Output`]s that come back: send a frame, call
//! the resource, close a connection. Time enters only as the [`Now`] argument of
//! [`Participant::step`], so the same inputs always give the same outputs: unit tests script them,
//! and the coordinator's model checker runs two of these cores (over a modelled resource) as its
//! participants, so what it explores is this code and not a copy of it.
//!
//! # The rules
//!
//! * **The in-doubt report comes first.** A new connection gets nothing until the resource has
//!   listed what it holds prepared; that list, as [`Message::InDoubtReport`] with request id 0,
//!   is its first frame. A coordinator that has just restarted learns from it what it must
//!   resolve, so it must not be able to see a vote overtake it. When the list cannot be read
//!   the connection is closed ([`Output::Close`]): a coordinator that trusted an empty report
//!   would presume abort for nothing and leave prepared work blocked.
//! * **Votes and acks are the resource's.** Prepare, Commit, Abort and CommitOnePhase become
//!   one [`Call`] each, and the [`Answer`] becomes the reply, with the request's id. The core
//!   never invents an outcome: idempotency by (txid, kind) is the resource's durable record
//!   (a repeated Prepare votes the same, a repeated Commit answers `already_applied`, an Abort
//!   for a transaction never prepared leaves a tombstone so that a late Prepare votes NO). A
//!   failed call ([`ResourceFailed`]) is answered `internal` and never turned into a vote: the
//!   coordinator treats it as no answer and retries, which is safe because every call is
//!   idempotent.
//! * **One attempt at a time per gid.** What the resource cannot see is two copies of a request
//!   racing inside this process (two Prepares for `t1` on two connections, a Commit overtaking
//!   a slow Prepare). Calls that name a txid are therefore queued per txid and run strictly one
//!   after the other in arrival order ([`Stage::Queued`] until the one before completes);
//!   different transactions run in parallel. A Prepare's `timeout_ms` counts from its arrival,
//!   so time spent queued is taken off what the resource gets.
//! * **Bounded work.** Each connection has `max_in_flight` permits. A request that needs the
//!   resource takes one until its reply is out; without one it is answered `busy` at once (the
//!   coordinator retries) rather than queued without bound. A DecisionAnswer that finds no
//!   permit is dropped: the transaction stays prepared and is asked about again.
//! * **Termination.** A participant that voted YES may not decide alone. On every
//!   [`Input::Tick`] with a coordinator connected, the resource lists what is prepared; a
//!   transaction prepared for `decision_timeout_ms` (by the wall clock, which survives
//!   restarts, or by the monotonic clock since it was first listed, which survives a clock that
//!   jumped back) gets a DecisionRequest on a connection where its coordinator has spoken,
//!   else on any, with exponential backoff per transaction. The answer Commit or Abort is
//!   applied like the message; Pending waits for the next round. The list is read afresh each
//!   round, so nothing a restart loses is needed: without a coordinator nothing is decided,
//!   the transaction stays prepared and is listed in every in-doubt report.
//! * **An orphaned YES asks at once.** A YES whose connection closed before it could be sent
//!   is a vote the coordinator never heard: it has given up on the transaction (presumed
//!   abort) and may already have reconnected and read a report that did not list it yet.
//!   Nothing would resolve it before `decision_timeout_ms`, so the decision is asked for at
//!   once on a live connection (with none, the next connection's report lists it).
//!
//! # Why this is safe
//!
//! The core only ever relays: a vote is what the resource durably did, a settlement (Commit or
//! Abort applied to a prepared transaction) happens only on the coordinator's word (a message
//! or a DecisionAnswer), and nothing here commits or aborts a prepared transaction on a timer.
//! Losing the core's state (a restart) loses only timers, permits and queues: the resource
//! still holds every prepared transaction and every outcome, and the next report and the next
//! scan rebuild the rest.
//!
//! # Lock waits
//!
//! A call is [`Stage::Queued`] behind its txid, [`Stage::Running`] in the resource, or
//! [`Stage::Waiting`] for a lock another transaction holds. Who waits, for how long, and who
//! gives way so that no deadlock across stores lasts: see the `waits` module, whose rules the
//! model checker explores like every other input.

mod io;
mod waits;

pub use io::{
    Answer, Call, CallId, CloseWhy, ConnId, CoreConfig, IfUndelivered, Input, Now, Output,
    ResourceFailed,
};

use crate::resource::PrepareOutcome;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use twopc_protocol::reason::{bounded, bounded_opt};
use twopc_protocol::{
    CoordinatorId, Decision, DecisionStatus, ErrorCode, Frame, Message, PreparedTx, Priority, TxId,
    Vote,
};
use waits::{LockWait, Verdict};

/// Who is waiting for a call's answer.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// A coordinator's request, to be answered with frame id `id`; holds a permit on `conn`.
    Request { conn: ConnId, id: u64 },
    /// A DecisionAnswer being applied; holds a permit on `conn`, answers nobody.
    DecisionAnswer { conn: ConnId },
    /// The first frame of a new connection.
    InDoubtReport { conn: ConnId },
    /// The termination timer's round.
    TerminationScan,
    /// A check of the resource's own lock waits.
    WaitCheck,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for an earlier call for the same txid to complete.
    Queued,
    /// Handed to the resource.
    Running,
    /// A prepare waiting for a lock another transaction holds (see the `waits` module).
    Waiting,
}

#[derive(Debug, Clone, PartialEq)]
struct Pending {
    origin: Origin,
    op: Call,
    stage: Stage,
    received_ms: u64,
    /// When it was last handed to the resource.
    started_ms: u64,
    /// Its lock wait, once it has found a lock held.
    wait: Option<LockWait>,
    /// It was cancelled to give way to an older transaction: the NO's reason.
    gave_way: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Conn {
    /// The in-doubt report went out; before that nothing else may.
    reported: bool,
    in_flight: usize,
    /// Coordinators that sent Prepare or CommitOnePhase here (to route DecisionRequests).
    coordinators: BTreeSet<CoordinatorId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Asking {
    attempts: u32,
    next_at_ms: u64,
    /// The coordinator the transaction was prepared for: the answer settles its transaction.
    coordinator: CoordinatorId,
}

/// The participant's protocol state (see the module docs).
#[derive(Clone)]
pub struct Participant {
    config: CoreConfig,
    conns: BTreeMap<ConnId, Conn>,
    calls: BTreeMap<CallId, Pending>,
    /// Per txid, its calls in arrival order; the first is running.
    queues: BTreeMap<TxId, VecDeque<CallId>>,
    /// Decision requests sent, by txid (for backoff).
    asked: BTreeMap<TxId, Asking>,
    /// The highest epoch seen per coordinator id (see [`Participant::stale_epoch`]).
    epochs: BTreeMap<CoordinatorId, u64>,
    /// When the termination scan first listed each prepared txid (monotonic).
    first_seen: BTreeMap<TxId, u64>,
    scanning: bool,
    next_request: u64,
    /// The priority of each transaction whose Prepare is pending or that holds locks here
    /// (voted YES, not yet settled): what decides who waits for whom.
    priorities: BTreeMap<TxId, Option<Priority>>,
    /// A [`Call::ListWaits`] is in flight.
    checking_waits: bool,
    last_wait_check_ms: u64,
}

/// Everything but the request-id counter, which only names frames: two cores that differ only
/// in it behave the same (the model checker fingerprints states by this output).
impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("conns", &self.conns)
            .field("calls", &self.calls)
            .field("queues", &self.queues)
            .field("asked", &self.asked)
            .field("first_seen", &self.first_seen)
            .field("scanning", &self.scanning)
            .field("priorities", &self.priorities)
            .field("checking_waits", &self.checking_waits)
            .finish()
    }
}

fn internal(e: &ResourceFailed) -> Message {
    Message::Error {
        code: ErrorCode::Internal,
        message: e.0.clone(),
    }
}

/// The wait after the `attempts`-th decision request: `initial`, doubling, capped at `max`.
pub fn backoff_ms(initial_ms: u64, max_ms: u64, attempts: u32) -> u64 {
    let factor = 1u64 << attempts.saturating_sub(1).min(16);
    initial_ms.saturating_mul(factor).min(max_ms)
}

impl Participant {
    /// A participant with no connection and nothing in flight.
    pub fn new(config: CoreConfig) -> Self {
        Participant {
            config,
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            queues: BTreeMap::new(),
            asked: BTreeMap::new(),
            epochs: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            scanning: false,
            next_request: 1,
            priorities: BTreeMap::new(),
            checking_waits: false,
            last_wait_check_ms: 0,
        }
    }

    /// Whether some call to the resource is queued or running.
    pub fn busy(&self) -> bool {
        !self.calls.is_empty()
    }

    /// How many prepares wait for a lock.
    pub fn waiting(&self) -> usize {
        self.calls
            .values()
            .filter(|p| p.stage == Stage::Waiting)
            .count()
    }

    /// Where call `call` is, if it is pending.
    pub fn stage(&self, call: CallId) -> Option<Stage> {
        self.calls.get(&call).map(|p| p.stage)
    }

    /// Handles one input at `now`.
    pub fn step(&mut self, now: Now, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Connected { conn } => {
                self.conns.insert(conn, Conn::default());
                self.start(
                    now,
                    Origin::InDoubtReport { conn },
                    Call::ListPrepared,
                    &mut out,
                );
            }
            Input::Received { conn, frame } => self.received(now, conn, frame, &mut out),
            Input::Disconnected { conn } => {
                self.conns.remove(&conn);
                // Its coordinator aborts a transaction whose participant went away before
                // voting: waiting on for it would only hold a permit and a place in line.
                let orphaned: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, p)| {
                        p.stage == Stage::Waiting
                            && matches!(p.origin, Origin::Request { conn: c, .. } if c == conn)
                    })
                    .map(|(call, _)| *call)
                    .collect();
                for call in orphaned {
                    let one_phase = self
                        .calls
                        .get(&call)
                        .is_some_and(|p| matches!(p.op, Call::CommitOnePhase { .. }));
                    if one_phase {
                        // Nothing done, nothing recorded: the coordinator sends it again when
                        // it reconnects (it never aborts a one-phase commit on its own).
                        let why = "its connection closed during a lock wait".to_string();
                        self.completed(now, call, Err(ResourceFailed(why)), &mut out);
                        continue;
                    }
                    let reason = "the coordinator's connection closed during a lock wait".into();
                    self.give_up(now, call, reason, &mut out);
                }
            }
            Input::Completed { call, result } => self.completed(now, call, result, &mut out),
            Input::Undelivered(then) => match then {
                IfUndelivered::Drop => {}
                IfUndelivered::AskForDecision { txid, coordinator } => {
                    self.ask(now, &txid, &coordinator, &mut out)
                }
                IfUndelivered::AskAgain { txid } => {
                    if let Some(a) = self.asked.get_mut(&txid) {
                        a.attempts = a.attempts.saturating_sub(1);
                        a.next_at_ms = now.monotonic_ms;
                    }
                }
            },
            Input::Wake => self.wake(now, &mut out),
            Input::Tick => {
                // Nobody to ask: keep everything prepared and do not even read the resource.
                if !self.scanning && self.conns.values().any(|c| c.reported) {
                    self.scanning = true;
                    self.start(now, Origin::TerminationScan, Call::ListPrepared, &mut out);
                }
            }
        }
        out
    }

    /// The one place that knows what each message asks of a participant.
    fn received(&mut self, now: Now, conn: ConnId, frame: Frame, out: &mut Vec<Output>) {
        let id = frame.id;
        let reply = |msg| Output::Send {
            conn,
            frame: Frame::new(id, msg),
            if_undelivered: IfUndelivered::Drop,
        };
        if let Some(stale) = self.stale_epoch(&frame.msg) {
            return out.push(reply(Message::Error {
                code: ErrorCode::StaleEpoch,
                message: stale,
            }));
        }
        let op = match frame.msg {
            Message::Ping { nonce } => return out.push(reply(Message::Pong { nonce })),
            Message::Pong { .. } | Message::Error { .. } => return,
            Message::DecisionAnswer { txid, status } => {
                let decision = match status {
                    DecisionStatus::Commit => Decision::Commit,
                    DecisionStatus::Abort => Decision::Abort,
                    DecisionStatus::Pending => return,
                };
                if self.take_permit(conn) {
                    let coordinator = self.asked.get(&txid).map(|a| a.coordinator.clone());
                    let op = Call::Settle {
                        txid,
                        decision,
                        coordinator,
                    };
                    self.start(now, Origin::DecisionAnswer { conn }, op, out);
                }
                return;
            }
            Message::Prepare {
                txid,
                coordinator,
                ops,
                timeout_ms,
                priority,
                submitted_by,
                ..
            } => Call::Prepare {
                coordinator,
                txid,
                ops,
                timeout_ms,
                priority,
                submitted_by,
            },
            Message::Commit {
                txid, coordinator, ..
            } => {
                self.spoke(conn, coordinator.as_ref());
                Call::Settle {
                    txid,
                    decision: Decision::Commit,
                    coordinator,
                }
            }
            Message::Abort {
                txid, coordinator, ..
            } => {
                self.spoke(conn, coordinator.as_ref());
                Call::Settle {
                    txid,
                    decision: Decision::Abort,
                    coordinator,
                }
            }
            Message::CommitOnePhase {
                txid,
                coordinator,
                ops,
                priority,
                submitted_by,
                ..
            } => Call::CommitOnePhase {
                coordinator,
                txid,
                ops,
                priority,
                submitted_by,
                may_wait: true,
            },
            Message::ListPrepared { .. } => Call::ListPrepared,
            other => {
                let message = format!(
                    "a participant does not accept `{}` messages",
                    other.type_name()
                );
                let code = ErrorCode::Unexpected;
                return out.push(reply(Message::Error { code, message }));
            }
        };
        if !self.take_permit(conn) {
            let message = format!(
                "{} requests are already in flight on this connection (the limit); retry later",
                self.config.max_in_flight
            );
            let code = ErrorCode::Busy;
            return out.push(reply(Message::Error { code, message }));
        }
        if let Call::Prepare {
            coordinator,
            txid,
            priority,
            ..
        }
        | Call::CommitOnePhase {
            coordinator,
            txid,
            priority,
            ..
        } = &op
        {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.coordinators.insert(coordinator.clone());
            }
            self.priorities.insert(txid.clone(), *priority);
        }
        self.start(now, Origin::Request { conn, id }, op, out);
    }

    fn take_permit(&mut self, conn: ConnId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.in_flight < self.config.max_in_flight => {
                c.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    fn release_permit(&mut self, origin: &Origin) {
        if let Origin::Request { conn, .. } | Origin::DecisionAnswer { conn } = origin {
            if let Some(c) = self.conns.get_mut(conn) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
    }

    /// Registers a call and runs it, unless an earlier call for its txid is still pending.
    fn start(&mut self, now: Now, origin: Origin, op: Call, out: &mut Vec<Output>) {
        // The smallest free id: ids stay small and a state's ids depend only on what is
        // pending, not on how many calls came before.
        let call = (0..)
            .find(|k| !self.calls.contains_key(k))
            .expect("a free call id");
        let stage = match op.txid() {
            Some(txid) => {
                let queue = self.queues.entry(txid.clone()).or_default();
                queue.push_back(call);
                if queue.len() == 1 {
                    Stage::Running
                } else {
                    Stage::Queued
                }
            }
            None => Stage::Running,
        };
        let aborts = matches!(
            op,
            Call::Settle {
                decision: Decision::Abort,
                ..
            }
        );
        let front = op
            .txid()
            .and_then(|t| self.queues.get(t))
            .and_then(|q| q.front().copied());
        let pending = Pending {
            origin,
            op,
            stage: Stage::Queued,
            received_ms: now.monotonic_ms,
            started_ms: now.monotonic_ms,
            wait: None,
            gave_way: None,
        };
        self.calls.insert(call, pending);
        if stage == Stage::Running {
            self.run(now, call, out);
        } else if let (true, Some(front)) = (aborts, front) {
            // The transaction is over: its prepare stops waiting, and the Abort runs next.
            let waiting = self.calls.get(&front).and_then(|p| match p.stage {
                Stage::Waiting => p.wait.as_ref().map(|w| (w.what.clone(), w.holder.clone())),
                _ => None,
            });
            if let Some((what, holder)) = waiting {
                let reason = format!(
                    "aborted by the coordinator while waiting for {what} (held by {holder})"
                );
                self.give_up(now, front, reason, out);
            }
        }
    }

    fn start_listing_waits(&mut self, now: Now, out: &mut Vec<Output>) {
        self.start(now, Origin::WaitCheck, Call::ListWaits, out);
    }

    fn run(&mut self, now: Now, call: CallId, out: &mut Vec<Output>) {
        let Some(p) = self.calls.get_mut(&call) else {
            return;
        };
        p.stage = Stage::Running;
        p.started_ms = now.monotonic_ms;
        let mut op = p.op.clone();
        if let Call::Prepare { timeout_ms, .. } = &mut op {
            let waited = now.monotonic_ms.saturating_sub(p.received_ms);
            *timeout_ms = timeout_ms.map(|t| t.saturating_sub(waited));
        }
        out.push(Output::Call { call, op });
    }

    fn completed(
        &mut self,
        now: Now,
        call: CallId,
        result: Result<Answer, ResourceFailed>,
        out: &mut Vec<Output>,
    ) {
        let result = match result {
            Ok(Answer::Voted(PrepareOutcome::Blocked(b))) => match self.blocked(now, call, b) {
                Verdict::Wait => return self.hand_on(now, call, false, out),
                Verdict::GiveUp(reason) => Ok(Answer::Voted(PrepareOutcome::No {
                    reason,
                    class: twopc_protocol::NoClass::Conflict,
                })),
            },
            Ok(Answer::OnePhaseBlocked(b)) => match self.blocked(now, call, b) {
                Verdict::Wait => return self.hand_on(now, call, false, out),
                Verdict::GiveUp(_) => {
                    self.last_try(now, call, out);
                    return self.hand_on(now, call, false, out);
                }
            },
            other => other,
        };
        let Some(p) = self.calls.remove(&call) else {
            return;
        };
        let took = matches!(
            (&p.op, &result),
            (Call::Prepare { .. }, Ok(Answer::Voted(PrepareOutcome::Yes)))
        );
        self.hand_on(now, call, took, out);
        // Cancelled to give way: whatever error the resource reports, that is why.
        let result = match (result, &p.gave_way) {
            (Ok(Answer::Voted(PrepareOutcome::No { .. })), Some(reason)) => {
                Ok(Answer::Voted(PrepareOutcome::No {
                    reason: reason.clone(),
                    class: twopc_protocol::NoClass::Conflict,
                }))
            }
            (other, _) => other,
        };
        self.release_permit(&p.origin);
        if let Some(txid) = p.op.txid() {
            if let Some(queue) = self.queues.get_mut(txid) {
                queue.retain(|c| *c != call);
                match queue.front().copied() {
                    Some(next) => self.run(now, next, out),
                    None => {
                        self.queues.remove(txid);
                    }
                }
            }
        }
        match (&p.op, &result) {
            (Call::Settle { txid, .. }, Ok(_)) => {
                // Settled either way: no more decision requests for it, and its locks are free.
                self.asked.remove(txid);
                self.priorities.remove(txid);
                self.wake_waiters_of(now, txid, out);
            }
            (Call::Prepare { txid, .. }, Ok(Answer::Voted(v))) if *v != PrepareOutcome::Yes => {
                self.priorities.remove(txid);
            }
            (Call::CommitOnePhase { txid, .. }, _) => {
                self.priorities.remove(txid);
            }
            _ => {}
        }
        match p.origin {
            Origin::Request { conn, id } => self.reply(now, conn, id, p.op, result, out),
            Origin::DecisionAnswer { .. } => {}
            Origin::InDoubtReport { conn } => match result {
                Ok(Answer::Listed(prepared)) => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    c.reported = true;
                    let frame = Frame::new(0, self.report(prepared));
                    let if_undelivered = IfUndelivered::Drop;
                    out.push(Output::Send {
                        conn,
                        frame,
                        if_undelivered,
                    });
                }
                _ => out.push(Output::Close {
                    conn,
                    why: CloseWhy::CannotListPrepared,
                }),
            },
            Origin::TerminationScan => {
                self.scanning = false;
                if let Ok(Answer::Listed(prepared)) = result {
                    self.scan(now, &prepared, out);
                }
            }
            Origin::WaitCheck => {
                self.checking_waits = false;
                if let Ok(Answer::Waits(waits)) = result {
                    self.waits_listed(waits, out);
                }
            }
        }
    }

    fn report(&self, prepared: Vec<PreparedTx>) -> Message {
        Message::InDoubtReport {
            participant: self.config.name.clone(),
            kind: self.config.kind,
            prepared,
        }
    }

    /// The reply to a coordinator's request, from the resource's answer.
    fn reply(
        &mut self,
        now: Now,
        conn: ConnId,
        id: u64,
        op: Call,
        result: Result<Answer, ResourceFailed>,
        out: &mut Vec<Output>,
    ) {
        let mut if_undelivered = IfUndelivered::Drop;
        let msg = match (op, result) {
            (_, Err(e)) => internal(&e),
            (
                Call::Prepare {
                    txid, coordinator, ..
                },
                Ok(Answer::Voted(outcome)),
            ) => {
                let (vote, reason, class) = match outcome {
                    PrepareOutcome::Yes => (Vote::Yes, None, None),
                    PrepareOutcome::No { reason, class } => {
                        (Vote::No, Some(bounded(reason)), Some(class))
                    }
                    PrepareOutcome::ReadOnly => (Vote::ReadOnly, None, None),
                    // `completed` turned every Blocked into a wait or a NO.
                    PrepareOutcome::Blocked(b) => (
                        Vote::No,
                        Some(bounded(format!("{} is locked by {}", b.what, b.holder))),
                        Some(twopc_protocol::NoClass::Conflict),
                    ),
                };
                if vote == Vote::Yes {
                    if !self.conns.contains_key(&conn) {
                        return self.ask(now, &txid, &coordinator, out);
                    }
                    if_undelivered = IfUndelivered::AskForDecision {
                        txid: txid.clone(),
                        coordinator,
                    };
                }
                Message::Vote {
                    txid,
                    vote,
                    reason,
                    class,
                }
            }
            (Call::Settle { txid, decision, .. }, Ok(Answer::Settled(result))) => Message::Ack {
                txid,
                decision,
                result,
                reason: None,
            },
            (Call::CommitOnePhase { txid, .. }, Ok(Answer::OnePhase(o))) => Message::Ack {
                txid,
                decision: o.decision,
                result: o.result,
                reason: bounded_opt(o.reason),
            },
            // `completed` turned every OnePhaseBlocked into a wait or a last try, whose
            // answer is an outcome.
            (Call::CommitOnePhase { txid, .. }, Ok(Answer::OnePhaseBlocked(b))) => {
                internal(&ResourceFailed(format!(
                    "the one-phase commit of {txid} found {} locked by {} on its last try",
                    b.what, b.holder
                )))
            }
            (Call::ListPrepared, Ok(Answer::Listed(prepared))) => self.report(prepared),
            (op, Ok(answer)) => internal(&ResourceFailed(format!(
                "the resource answered {answer:?} to {op:?}"
            ))),
        };
        if self.conns.contains_key(&conn) {
            let frame = Frame::new(id, msg);
            out.push(Output::Send {
                conn,
                frame,
                if_undelivered,
            });
        }
    }

    /// One round of the termination protocol over what the resource holds prepared.
    fn scan(&mut self, now: Now, prepared: &[PreparedTx], out: &mut Vec<Output>) {
        let live: BTreeSet<&TxId> = prepared.iter().map(|p| &p.txid).collect();
        self.first_seen.retain(|t, _| live.contains(t));
        self.asked.retain(|t, _| live.contains(t));
        for tx in prepared {
            let seen = *self
                .first_seen
                .entry(tx.txid.clone())
                .or_insert(now.monotonic_ms);
            let age = now
                .unix_ms
                .saturating_sub(tx.prepared_at_ms)
                .max(now.monotonic_ms.saturating_sub(seen));
            if age < self.config.decision_timeout_ms {
                continue;
            }
            let due = self
                .asked
                .get(&tx.txid)
                .is_none_or(|a| now.monotonic_ms >= a.next_at_ms);
            if due {
                self.ask(now, &tx.txid, &tx.coordinator, out);
            }
        }
    }

    /// Why `msg` must be refused, when it comes from a replaced holder of its coordinator id
    /// (its epoch is below the highest this participant has seen for the id); otherwise
    /// notes its epoch. Only in memory: after a restart the first message sets it again, and
    /// the log's fencing is what keeps a replaced holder from deciding anything meanwhile.
    fn stale_epoch(&mut self, msg: &Message) -> Option<String> {
        let (coordinator, epoch) = match msg {
            Message::Prepare {
                coordinator, epoch, ..
            }
            | Message::CommitOnePhase {
                coordinator, epoch, ..
            } => (Some(coordinator), *epoch),
            Message::Commit {
                coordinator, epoch, ..
            }
            | Message::Abort {
                coordinator, epoch, ..
            } => (coordinator.as_ref(), *epoch),
            // Never refused (it changes nothing), but it announces the asker's epoch.
            Message::ListPrepared {
                coordinator: Some(c),
                epoch: Some(e),
            } => {
                let seen = self.epochs.entry(c.clone()).or_insert(*e);
                *seen = (*seen).max(*e);
                return None;
            }
            _ => return None,
        };
        let (Some(coordinator), Some(epoch)) = (coordinator, epoch) else {
            return None;
        };
        match self.epochs.get_mut(coordinator) {
            Some(seen) if epoch < *seen => Some(format!(
                "coordinator id {coordinator} is held at epoch {seen} now; this message is from \
                 its holder at epoch {epoch}, which was replaced"
            )),
            Some(seen) => {
                *seen = epoch;
                None
            }
            None => {
                self.epochs.insert(coordinator.clone(), epoch);
                None
            }
        }
    }

    /// Notes that `coordinator` spoke on `conn` (its DecisionRequests go there first): a
    /// coordinator that took an id over sends that id's Commits and Aborts, never Prepares.
    fn spoke(&mut self, conn: ConnId, coordinator: Option<&CoordinatorId>) {
        if let (Some(c), Some(co)) = (self.conns.get_mut(&conn), coordinator) {
            if !c.coordinators.contains(co) {
                c.coordinators.insert(co.clone());
            }
        }
    }

    /// Sends a DecisionRequest for `txid`, on a connection where `coordinator` has spoken if
    /// there is one, and schedules the next with backoff.
    fn ask(&mut self, now: Now, txid: &TxId, coordinator: &CoordinatorId, out: &mut Vec<Output>) {
        let reported = || self.conns.iter().filter(|(_, c)| c.reported);
        // Any other connection answers `pending` for an id it does not hold; taking them in
        // turn, attempt by attempt, reaches the one that does (a coordinator that took the id
        // over has spoken on no connection yet for this transaction).
        let tried = self.asked.get(txid).map_or(0, |a| a.attempts) as usize;
        let any = reported().count();
        let Some(conn) = reported()
            .find(|(_, c)| c.coordinators.contains(coordinator))
            .or_else(|| reported().nth(tried % any.max(1)))
            .map(|(id, _)| *id)
        else {
            return;
        };
        let a = self.asked.entry(txid.clone()).or_insert(Asking {
            attempts: 0,
            next_at_ms: now.monotonic_ms,
            coordinator: coordinator.clone(),
        });
        a.attempts += 1;
        a.next_at_ms = now.monotonic_ms.saturating_add(backoff_ms(
            self.config.decision_retry_initial_ms,
            self.config.decision_retry_max_ms,
            a.attempts,
        ));
        let id = self.next_request;
        self.next_request += 1;
        out.push(Output::Send {
            conn,
            frame: Frame::new(
                id,
                Message::DecisionRequest {
                    txid: txid.clone(),
                    coordinator: Some(coordinator.clone()),
                },
            ),
            if_undelivered: IfUndelivered::AskAgain { txid: txid.clone() },
        });
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_waits;
