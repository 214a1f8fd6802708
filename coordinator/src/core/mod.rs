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
//! * **Phase 1.** Prepare goes to one participant at a time in name order, each after the one
//!   before voted (`ordered_prepare`), so no lock cycle runs across the stores. A transaction
//!   that starts while nothing else is in flight is prepared everywhere at once
//!   (`parallel_when_idle`), and a two-phase one starting while that lone one still waits for
//!   votes is *held*, asking nobody, until the votes are in or `parallel_hold_ms` passed
//!   ([`Core`]'s `release_held`, after every input): it cannot take a lock the lone one is
//!   about to ask for. A participant that is not connected when the transaction starts,
//!   disconnects before voting, votes NO, or does not vote within the prepare timeout makes
//!   the decision ABORT (and a `conflict` NO may make the transaction run again: **Retries**
//!   below).
//! * **Decision.** All YES (read-only votes drop out of phase 2): the core asks the driver to
//!   force a COMMIT record ([`Output::ForceCommit`]) and sends nothing until the driver reports
//!   it durable ([`Input::CommitDurable`]). Only then does any Commit leave. All read-only:
//!   committed with no log write at all.
//! * **Presumed abort.** Participants never wait for an ABORT record: Abort goes out at once,
//!   and a participant that later asks (or reports the transaction as prepared on reconnect)
//!   hears "abort" for any transaction without a durable COMMIT record, because such a
//!   transaction is aborted by definition. The *client* is different: its id stays idempotent
//!   only while the log remembers the answer, so the ABORT record of a client's outcome is
//!   forced ([`Output::ForceAbort`]) and nobody hears "aborted" (reply or lookup) before the
//!   driver reports it durable ([`Input::AbortDurable`]). Answered before, a lost record (a
//!   power loss, or a replaced holder whose writes are fenced) would let a resubmission of the
//!   id run again and commit after the client was told "aborted". A retried attempt's abort is
//!   not the client's outcome and is not logged at all.
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
//! * **Retries** (`retry`). An attempt aborted by a `conflict` NO (the participant could not
//!   get a lock in time, gave way to an older transaction, or hit a serialization failure) is
//!   run again when [`RetryPolicy`] allows (attempts, a deadline from the first submission;
//!   on by default, `max_attempts = 1` turns it off). Only that: a final NO, a prepare
//!   timeout, a disconnect, a participant not connected, an unsendable message or a one-phase
//!   abort (its Ack carries no class) end the transaction as before. The aborted attempt is
//!   decided and its Aborts sent first, exactly as any abort (presumed abort; a late YES for
//!   it is rolled back); after a jittered exponential backoff (deterministic: seeded by the
//!   client txid and attempt) the next attempt starts as a protocol transaction of its own,
//!   with the same operations and [`Priority`] and a wire txid no client can submit
//!   ([`twopc_protocol::attempt`]: attempt 1 keeps the client's txid; attempt n is
//!   `~<n>.<priority>.<client txid>`, hashed when long). Everything a participant keeps
//!   (gids, tombstones, idempotency by (txid, kind)) is therefore per attempt, and at most one
//!   attempt of a client transaction commits: each is decided once, and a new one starts
//!   only after the previous one was decided ABORT. The client hears once, under its own
//!   txid: committed, or aborted with the last attempt's reason ("attempt N: ...", and why it
//!   was not retried) and class, with `attempts` and timings from the first submission.
//!   Resubmissions and lookups of the client txid follow the current attempt. A retried
//!   attempt logs no ABORT (it is not the client's outcome; presumed abort answers for it);
//!   the last attempt's COMMIT or ABORT record names the client txid, so after a restart the
//!   client txid finds the outcome, and a DecisionRequest for the attempt txid is answered from
//!   the record under its own txid. The outcome cache files a later attempt's outcome under
//!   both txids and remembers which attempt decided ([`RecordedOutcome::decided_by`]): asked
//!   about attempt 1's txid (the client's), the answer is attempt 1's own abort, never the
//!   client transaction's commit.
//!
//!   Known limits: a final NO that arrives after a conflict NO already aborted the attempt
//!   does not cancel the retry (the next attempt meets it again and ends final); a one-phase
//!   transaction is never retried until the one-phase Ack carries a class (the participant
//!   core maps `OnePhaseOutcome` to an Ack without one; it does wait there, as a Prepare
//!   does, for a lock a prepared transaction holds, so it aborts on a lock only at the
//!   participant's lock-wait bound); attempt numbers restart if a
//!   coordinator restart forgets a transaction mid-retry and the client resubmits it, but
//!   the new run's priority (stamped per submission) gives its attempts new txids.
//!
//! Every message the core sends is idempotent by (txid, type) at the participants, which is
//! what makes blind re-sending safe.
//!
//! # Layout
//!
//! This file holds the vocabulary (inputs, outputs, configuration), the [`Core`] state and
//! [`Core::step`], which routes each input to the file that owns its concern:
//!
//! * `transaction`: one transaction's state (stage, per-participant state, timings).
//! * `transitions`: submission, votes, the decision, acknowledgements, the end of a transaction.
//! * `received`: what a participant's message does (dispatch, decision requests, in-doubt reports).
//! * `timers`: prepare deadlines, phase-2 re-sends with backoff, one-phase retries.
//! * `retry`: the retry policy, the backoff, and the client transactions between attempts.
//! * `outcome_cache`: concluded transactions kept for lookups and idempotent resubmission.
//! * `query`: read-only views (lookup, participant status), and the client's answer.
//! * `events`: the event-stream outputs, each kind built in one place.
//! * `tests`: unit tests of the core (the golden scenarios are in `tests/scenarios.rs`).

mod events;
mod outcome_cache;
mod query;
mod received;
mod retry;
#[cfg(test)]
mod tests;
mod timers;
mod transaction;
mod transitions;

// The seam with the decision log has one vocabulary, owned by the log.
pub use crate::log::{LazyRecord, RecoveredCommit};
pub use outcome_cache::RecordedOutcome;
pub use query::ParticipantStatus;
pub use retry::RetryPolicy;
pub use transaction::first_message;

use crate::log::RecoveredState;
use crate::metrics::Metrics;
use outcome_cache::OutcomeCache;
use retry::ClientTx;
use std::collections::{BTreeMap, BTreeSet};
use transaction::{PartState, Stage, Tx};
use twopc_protocol::api::TransactionResponse;
use twopc_protocol::event::EventKind;
use twopc_protocol::message::Message;
use twopc_protocol::{CoordinatorId, Operations, ParticipantName, Priority, TxId};

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
    /// Running a transaction again after `conflict` NO votes (`max_attempts = 1`: never).
    pub conflict_retry: RetryPolicy,
    /// Prepare the participants one at a time, in name order, each after the one before voted
    /// (`true`), or all at once (`false`). In order, every transaction takes its locks in the
    /// same order across the stores, so no wait-for cycle can run through two of them (see
    /// DESIGN.md, "Contention"); all at once saves one participant's prepare time per
    /// transaction but lets concurrent transactions deadlock across stores, which the
    /// participants then break by giving way. A retried attempt is prepared in order either
    /// way.
    pub ordered_prepare: bool,
    /// With `ordered_prepare`, a transaction that starts while this coordinator has no other
    /// transaction in flight (nor one waiting for its next attempt) is prepared all at once
    /// anyway: the lone client (the common case at low load) saves one participant's prepare
    /// time. A two-phase transaction that starts while the lone one still waits for votes is
    /// held (nothing sent) until those votes are in, or for `parallel_hold_ms` at most, and
    /// then prepared in order: the lone one never waits for a lock a later transaction of
    /// this coordinator took first, so no cycle across the stores runs through it
    /// (DESIGN.md, "Contention").
    pub parallel_when_idle: bool,
    /// The longest a transaction is held behind a lone one prepared all at once (see
    /// `parallel_when_idle`). Only a lone prepare that waits for somebody else's lock (another
    /// coordinator's transaction, one prepared before a restart) lasts that long; past it the
    /// held ones start in order and a cycle, should one form, is broken by giving way.
    pub parallel_hold_ms: u64,
    /// The epoch at which this coordinator holds its id (PostgreSQL decision log), sent with
    /// every Prepare, CommitOnePhase, Commit and Abort so that participants refuse the
    /// messages of a replaced holder; `None` with the file log.
    pub epoch: Option<u64>,
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
            conflict_retry: RetryPolicy::default(),
            ordered_prepare: true,
            parallel_when_idle: true,
            parallel_hold_ms: 100,
            epoch: None,
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
        /// The transaction's age, sent with every Prepare (see [`twopc_protocol::priority`]):
        /// the driver stamps it from the wall clock, the core keeps it across attempts.
        priority: Priority,
        /// The API client that submitted it (its configured name), told to the participants
        /// with the Prepare and to whoever asks about it; `None` with an open API.
        submitted_by: Option<String>,
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
        /// The log error's text (only ever shown: the core halts whatever it says).
        error: String,
    },
    /// The ABORT record requested by [`Output::ForceAbort`] is durable: the client may hear it.
    AbortDurable {
        /// The transaction.
        txid: TxId,
    },
    /// The ABORT record could not be made durable. The decision stays ABORT (presumed abort
    /// needs no record), but the client must not be told an answer the log may forget, and a
    /// log that cannot make records durable cannot commit anything either: the core asks the
    /// driver to halt, as for a COMMIT; a fenced write (the id was taken over) ends the same way.
    AbortFailed {
        /// The transaction.
        txid: TxId,
        /// The log error's text.
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
        /// The client's txid when `txid` is a later attempt's (logged with the record, so that
        /// the client's txid finds the outcome after a restart).
        client: Option<TxId>,
    },
    /// Append the ABORT record of a client's outcome and fsync it; report back with
    /// [`Input::AbortDurable`]. Abort messages do not wait for it (presumed abort); only the
    /// client's answer does.
    ForceAbort {
        /// The transaction (the wire txid of the last attempt).
        txid: TxId,
        /// Body hash, for idempotent resubmission after a restart.
        body_hash: u64,
        /// Why (shown to the client and kept in the history).
        reason: Option<String>,
        /// The client's txid when `txid` is a later attempt's.
        client: Option<TxId>,
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

/// The coordinator's protocol state machine. `Clone` lets a model checker branch on it
/// (coordinator/tests/model_check.rs).
///
/// Every collection is ordered (`BTreeMap`/`BTreeSet`): the order in which the core walks its
/// transactions decides the order of its outputs, and the model checker fingerprints a state
/// by its `Debug` text, so two equal states must print alike whatever history built them.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    /// Attempts in flight or delivering, by wire txid.
    txs: BTreeMap<TxId, Tx>,
    /// Client transactions being retried, by client txid (none for one never retried).
    clients: BTreeMap<TxId, ClientTx>,
    outcomes: OutcomeCache,
    connected: BTreeSet<ParticipantName>,
    /// Per participant, (prepared, of which other coordinators') on its last InDoubtReport.
    reported: BTreeMap<ParticipantName, (usize, usize)>,
    /// (due time, txid): prepare deadlines, phase-2 re-sends (wire txid) and the start of a
    /// retry (client txid); stale entries are skipped.
    timers: BTreeSet<(u64, TxId)>,
    /// The lone attempt prepared all at once (`parallel_when_idle`) while it still waits for
    /// votes, and when it started (ms): every two-phase attempt starting meanwhile is held.
    parallel: Option<(TxId, u64)>,
    /// Metrics maintained by the core (the driver renders them).
    pub metrics: Metrics,
    /// The time of the input being handled, in µs: what the phase timings are stamped with
    /// (timers and deadlines run on the same clock in whole milliseconds).
    clock_us: u64,
}

impl Core {
    /// When the earliest timer is due (the driver may sleep until then rather than poll):
    /// retry backoffs are a few milliseconds, finer than the driver's periodic tick.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.timers.first().map(|(due, _)| *due)
    }
}

impl Core {
    /// A core with no transactions.
    pub fn new(cfg: CoreConfig) -> Self {
        Core {
            outcomes: OutcomeCache::new(cfg.outcome_capacity),
            cfg,
            txs: BTreeMap::new(),
            clients: BTreeMap::new(),
            connected: BTreeSet::new(),
            reported: BTreeMap::new(),
            timers: BTreeSet::new(),
            parallel: None,
            metrics: Metrics::default(),
            clock_us: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Loads what the decision log knows at start-up: COMMITs without END are driven to
    /// completion, concluded outcomes answer lookups and resubmissions.
    pub fn recover(
        &mut self,
        now_ms: u64,
        unfinished: Vec<RecoveredCommit>,
        concluded: Vec<(TxId, RecordedOutcome)>,
    ) -> Vec<Output> {
        for (txid, o) in concluded {
            self.outcomes.remember(txid, o);
        }
        let n = unfinished.len() as u32;
        for rc in unfinished {
            let parts = rc
                .participants
                .into_iter()
                .map(|p| (p, PartState::recovered(now_ms)))
                .collect();
            self.timers.insert((now_ms, rc.txid.clone()));
            let attempt = twopc_protocol::attempt::attempt_number(&rc.txid);
            let client = match rc.client {
                Some(client) => {
                    self.clients
                        .insert(client.clone(), ClientTx::Running(rc.txid.clone()));
                    client
                }
                None => rc.txid.clone(),
            };
            let tx = Tx::recovered(client, attempt, rc.body_hash, parts, now_ms);
            self.txs.insert(rc.txid, tx);
        }
        vec![events::coordinator_started(&self.cfg.coordinator, n)]
    }

    /// [`Core::recover`] from what the decision log held when it was opened.
    pub fn recover_from_log(&mut self, now_ms: u64, state: &RecoveredState) -> Vec<Output> {
        self.recover_from_log_us(now_ms.saturating_mul(1000), state)
    }

    /// [`Core::recover_from_log`] on a microsecond clock.
    pub fn recover_from_log_us(&mut self, now_us: u64, state: &RecoveredState) -> Vec<Output> {
        self.clock_us = now_us;
        let now_ms = now_us / 1000;
        let concluded = state
            .concluded()
            .into_iter()
            .flat_map(|(txid, o)| RecordedOutcome::from_log(txid, o))
            .collect();
        self.recover(now_ms, state.unfinished(), concluded)
    }

    /// Feeds one input and returns what to do, in order.
    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.step_us(now_ms.saturating_mul(1000), input)
    }

    /// [`Core::step`] on a microsecond clock (the driver's): the phase timings in answers and
    /// events keep the microseconds, timers the whole milliseconds.
    pub fn step_us(&mut self, now_us: u64, input: Input) -> Vec<Output> {
        self.clock_us = now_us;
        let now_ms = now_us / 1000;
        let mut out = Vec::new();
        match input {
            Input::Submit {
                req,
                txid,
                body_hash,
                participants,
                priority,
                submitted_by,
            } => self.submit(
                now_ms,
                req,
                txid,
                body_hash,
                participants,
                (priority, submitted_by),
                &mut out,
            ),
            Input::Received { from, msg } => self.received(now_ms, from, msg, &mut out),
            Input::Connected { participant } => {
                // Re-sending waits for the participant's InDoubtReport, which is always its
                // first message on a new connection.
                self.connected.insert(participant);
            }
            Input::Disconnected {
                participant,
                reason,
            } => self.disconnected(now_ms, participant, reason, &mut out),
            Input::CommitDurable { txid } => self.commit_durable(now_ms, &txid, &mut out),
            Input::CommitFailed { txid, error } => self.commit_failed(&txid, &error, &mut out),
            Input::AbortDurable { txid } => self.abort_durable(&txid, &mut out),
            Input::AbortFailed { txid, error } => self.abort_failed(&txid, &error, &mut out),
            Input::Unsendable { to, txid, reason } => {
                self.unsendable(now_ms, to, txid, reason, &mut out)
            }
            Input::Tick => self.tick(now_ms, &mut out),
        }
        self.release_held(now_ms, &mut out);
        out
    }
}
