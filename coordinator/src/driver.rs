//! The driver: runs the protocol core on tokio and carries out what it asks for.
//!
//! One task owns the [`Core`]. Everything that can change protocol state reaches it as a
//! [`Command`] on one channel — client submissions from the HTTP API, frames from the
//! participant connection tasks, durability notices from the decision log — plus a periodic
//! tick. After each input the task executes the core's outputs in order:
//!
//! * `Send` goes to the participant's connection task (dropped when it is down; the core
//!   re-sends what matters after the participant's next InDoubtReport).
//! * `ForceCommit` becomes an `append_durable` on the decision log in a task of its own, so
//!   many transactions wait for the same fsync (group commit); its completion comes back as
//!   `CommitDurable`. The core sends no Commit before that. `ForceAbort` is the same for the
//!   ABORT record of a client's outcome (`AbortDurable`): the Aborts are already out, only
//!   the client's answer waits.
//! * `LogLazy` is appended without waiting, as the records
//!   [`LazyRecord::into_records`](crate::log::LazyRecord::into_records) makes of it.
//! * `Reply` completes the client's oneshot; `Event` is stamped and broadcast to `/v1/events`.
//!
//! Keeping all protocol state in one task makes every decision sequential and reproducible;
//! the expensive parts (fsync, network) run outside it.

use crate::core::{Core, Input, Output, ParticipantStatus, RequestId, SubmitError};
use crate::faults::Faults;
use crate::log::{DecisionLog, LogRecord, RecoveredState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};
use twopc_protocol::api::{TransactionResponse, GENERATED_ID_PREFIX};
use twopc_protocol::event::{Event, EventKind};
use twopc_protocol::{CoordinatorId, Message, Operations, ParticipantName, Priority, TxId};

/// Messages into the driver task.
#[derive(Debug)]
pub enum Command {
    /// A client transaction.
    Submit {
        /// The transaction id.
        txid: TxId,
        /// Body hash for idempotency.
        body_hash: u64,
        /// Operations per participant.
        participants: BTreeMap<ParticipantName, Operations>,
        /// The API client submitting it (its configured name).
        submitted_by: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<TransactionResponse, SubmitError>>,
    },
    /// `GET /v1/transactions/{id}`.
    Lookup {
        /// The transaction.
        txid: TxId,
        /// Where the answer goes.
        reply: oneshot::Sender<Option<TransactionResponse>>,
    },
    /// `GET /v1/participants`.
    Participants {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<ParticipantStatus>>,
    },
    /// Whether this coordinator has nothing left to do for its id: no transaction running
    /// or owed an ack, and every participant connected and, on its last report, holding
    /// nothing prepared for it. Also asks every participant for a fresh report, so that the
    /// next query sees what the last decisions changed.
    Settled {
        /// Where the answer goes.
        reply: oneshot::Sender<bool>,
    },
    /// `GET /metrics`.
    Metrics {
        /// Where the answer goes.
        reply: oneshot::Sender<String>,
    },
    /// A protocol input from a connection task or the log.
    Input(Input),
    /// Publish an event that did not come from the core (fault injection, log fsyncs).
    Event {
        /// The transaction, if any.
        txid: Option<TxId>,
        /// What happened.
        kind: EventKind,
    },
    /// Publish, on this coordinator's stream, an event of a takeover instance in this process
    /// (so that a page watching this coordinator sees the taken-over id's transactions end).
    Forwarded {
        /// The id the instance holds.
        coordinator: CoordinatorId,
        /// The transaction (that id's), if any.
        txid: Option<TxId>,
        /// What happened.
        kind: EventKind,
    },
}

/// A cheap, cloneable handle to the running driver.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<str>>,
    next_id: Arc<AtomicU64>,
    coordinator: String,
    foreign_asks: Arc<std::sync::Mutex<BTreeSet<CoordinatorId>>>,
    forward_to: Arc<std::sync::OnceLock<Handle>>,
}

impl Handle {
    /// Publishes this driver's transaction events on `serving`'s event stream too, marked
    /// `on_behalf_of` this driver's id (a takeover instance, so that a page watching the
    /// coordinator that runs it sees the taken-over id's transactions end). Set once.
    pub fn forward_events_to(&self, serving: &Handle) {
        let _ = self.forward_to.set(serving.clone());
    }

    /// Sends a command to the driver task; false when it has stopped.
    pub async fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// Subscribes to the event stream: each item is one [`Event`] as JSON text, serialized
    /// once for every subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// A fresh transaction id for a client that did not choose one: `~<coordinator>-<ms>-<n>`.
    /// The prefix [`GENERATED_ID_PREFIX`] is refused in client ids, so the id is not taken.
    pub fn generate_txid(&self) -> TxId {
        let ms = wall_ms();
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        TxId::new(format!(
            "{GENERATED_ID_PREFIX}{}-{ms}-{n}",
            self.coordinator
        ))
        .expect("generated ids are valid")
    }

    /// The raw command sender (for connection tasks).
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }

    /// The other coordinator ids that participants asked this coordinator for decisions of
    /// since the last call (answered `pending`): ids whose transactions wait for a holder.
    pub fn take_foreign_asks(&self) -> BTreeSet<CoordinatorId> {
        std::mem::take(&mut *self.foreign_asks.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Outboxes of the participant connection tasks, by participant.
pub type Outboxes = HashMap<ParticipantName, mpsc::Sender<Message>>;

/// Starts the driver task. Returns its handle and the task's join handle. `event_buffer` is
/// how many events the event stream keeps for subscribers that fall behind.
#[allow(clippy::too_many_arguments)] // each is one independent piece of wiring
pub fn spawn(
    mut core: Core,
    recovered: RecoveredState,
    log: Arc<dyn DecisionLog>,
    outboxes: Outboxes,
    participant_names: Vec<ParticipantName>,
    faults: Arc<Faults>,
    event_buffer: usize,
    mut shutdown: broadcast::Receiver<()>,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Command>(65_536);
    let (events, _) = broadcast::channel::<Arc<str>>(event_buffer.max(1));
    let start = Instant::now();
    let wall_start = wall_ms();
    let coordinator = core.config().coordinator.to_string();
    let foreign_asks = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let handle = Handle {
        tx: tx.clone(),
        events: events.clone(),
        next_id: Arc::new(AtomicU64::new(0)),
        coordinator: coordinator.clone(),
        foreign_asks: foreign_asks.clone(),
        forward_to: Arc::new(std::sync::OnceLock::new()),
    };
    let forward_to = handle.forward_to.clone();
    let id = core.config().coordinator.clone();
    let run = format!("{coordinator}-{wall_start}");
    let self_tx = tx;
    let task = tokio::spawn(async move {
        let mut ex = Executor {
            log,
            outboxes,
            events,
            run,
            seq: 0,
            waiters: HashMap::new(),
            next_req: 0,
            self_tx,
            faults,
            foreign_asks,
            forward_to,
            id,
        };
        // Microseconds: the phase timings keep them (the core's timers use whole ms).
        let now_us = || start.elapsed().as_micros() as u64;
        let outs = core.recover_from_log_us(now_us(), &recovered);
        drop(recovered);
        ex.execute(outs);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Retry backoffs are a few milliseconds: wake for the core's next timer rather
            // than wait for the periodic tick.
            let next_due = core.next_due_ms();
            let timer = async move {
                match next_due {
                    Some(due) => {
                        let at = start + Duration::from_millis(due);
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    ex.handle(&mut core, now_us(), cmd, &participant_names);
                    // Drain what else is queued before the next tick: fewer wake-ups under load.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(cmd) => ex.handle(&mut core, now_us(), cmd, &participant_names),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let outs = core.step_us(now_us(), Input::Tick);
                    ex.execute(outs);
                }
                _ = timer => {
                    let outs = core.step_us(now_us(), Input::Tick);
                    ex.execute(outs);
                }
                _ = shutdown.recv() => break,
            }
        }
    });
    (handle, task)
}

struct Executor {
    log: Arc<dyn DecisionLog>,
    outboxes: Outboxes,
    events: broadcast::Sender<Arc<str>>,
    run: String,
    seq: u64,
    waiters: HashMap<RequestId, oneshot::Sender<Result<TransactionResponse, SubmitError>>>,
    next_req: RequestId,
    self_tx: mpsc::Sender<Command>,
    faults: Arc<Faults>,
    foreign_asks: Arc<std::sync::Mutex<BTreeSet<CoordinatorId>>>,
    /// Where this driver's transaction events are forwarded ([`Handle::forward_events_to`]).
    forward_to: Arc<std::sync::OnceLock<Handle>>,
    /// This driver's coordinator id.
    id: CoordinatorId,
}

impl Executor {
    fn handle(&mut self, core: &mut Core, now_us: u64, cmd: Command, names: &[ParticipantName]) {
        match cmd {
            Command::Submit {
                txid,
                body_hash,
                participants,
                submitted_by,
                reply,
            } => {
                self.next_req += 1;
                let req = self.next_req;
                self.waiters.insert(req, reply);
                let priority = Priority::at(wall_ms(), req);
                let outs = core.step_us(
                    now_us,
                    Input::Submit {
                        req,
                        txid,
                        body_hash,
                        participants,
                        priority,
                        submitted_by,
                    },
                );
                self.execute(outs);
            }
            Command::Lookup { txid, reply } => {
                let _ = reply.send(core.lookup_us(now_us, &txid));
            }
            Command::Participants { reply } => {
                let _ = reply.send(core.participant_status(names));
            }
            Command::Settled { reply } => {
                let settled = core.settled(names);
                for ob in self.outboxes.values() {
                    let _ = ob.try_send(Message::ListPrepared {
                        coordinator: Some(core.config().coordinator.clone()),
                        epoch: core.config().epoch,
                    });
                }
                let _ = reply.send(settled);
            }
            Command::Metrics { reply } => {
                let stats = self.log.stats();
                let status = core.participant_status(names);
                let figures = crate::metrics::DriverFigures {
                    in_flight: core.active(),
                    in_doubt_reported: status.iter().map(|s| s.reported_prepared).sum(),
                    participants_connected: status.iter().filter(|s| s.connected).count(),
                    log_records: stats.records,
                    log_fsyncs: stats.fsyncs,
                    lease_epoch: stats.lease_epoch,
                    lease_renewals: stats.lease_renewals,
                    fenced_writes: stats.fenced_writes,
                    takeovers: crate::takeover::TAKEOVERS.load(Ordering::Relaxed),
                    takeovers_active: crate::takeover::TAKEOVERS_ACTIVE.load(Ordering::Relaxed),
                };
                let text = crate::metrics::encode(&core.metrics, &figures);
                let _ = reply.send(text);
            }
            Command::Input(input) => {
                if matches!(input, Input::CommitDurable { .. }) {
                    crate::failpoint::hit("after_commit_log");
                }
                if let Input::Received {
                    msg:
                        Message::DecisionRequest {
                            coordinator: Some(c),
                            ..
                        },
                    ..
                } = &input
                {
                    if *c != core.config().coordinator {
                        self.foreign_asks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(c.clone());
                    }
                }
                let outs = core.step_us(now_us, input);
                self.execute(outs);
            }
            Command::Event { txid, kind } => self.publish(txid, kind),
            Command::Forwarded {
                coordinator,
                txid,
                kind,
            } => self.publish_as(Some(coordinator), txid, kind),
        }
    }

    fn publish(&mut self, txid: Option<TxId>, kind: EventKind) {
        // Typed, and only while someone watches there; a full queue drops it, as a lagging
        // subscriber's events are dropped.
        if let (Some(serving), Some(t)) = (self.forward_to.get(), &txid) {
            if serving.events.receiver_count() > 0 {
                let _ = serving.tx.try_send(Command::Forwarded {
                    coordinator: self.id.clone(),
                    txid: Some(t.clone()),
                    kind: kind.clone(),
                });
            }
        }
        self.publish_as(None, txid, kind)
    }

    fn publish_as(
        &mut self,
        coordinator: Option<CoordinatorId>,
        txid: Option<TxId>,
        kind: EventKind,
    ) {
        let at_ms = wall_ms();
        let ev = Event {
            run: self.run.clone(),
            seq: self.seq,
            at_ms,
            txid,
            on_behalf_of: coordinator,
            kind,
        };
        self.seq += 1;
        // Serialized here, once, not once per subscriber; and not at all when nobody watches.
        if self.events.receiver_count() > 0 {
            let text: Arc<str> = serde_json::to_string(&ev).unwrap_or_default().into();
            let _ = self.events.send(text);
        }
    }

    /// Waits for a forced record in a task of its own (so that many transactions share one
    /// fsync: group commit) and feeds the core what became of it.
    fn when_durable(
        &self,
        receipt: crate::log::Receipt,
        input: impl FnOnce(Result<(), String>) -> Input + Send + 'static,
    ) {
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let done = receipt.await.map(|_lsn| ()).map_err(|e| e.to_string());
            let _ = tx.send(Command::Input(input(done))).await;
        });
    }

    fn execute(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send { to, msg } => {
                    if let Some(fault) = self.faults.intercept(&to, &msg) {
                        self.publish(
                            msg.txid().cloned(),
                            EventKind::FaultInjected {
                                fault: fault.describe(&to),
                            },
                        );
                        match fault.clone() {
                            crate::faults::Intercept::Drop => continue,
                            crate::faults::Intercept::Delay(d) => {
                                if let Some(ob) = self.outboxes.get(&to).cloned() {
                                    tokio::spawn(async move {
                                        tokio::time::sleep(d).await;
                                        let _ = ob.try_send(msg);
                                    });
                                }
                                continue;
                            }
                        }
                    }
                    let is_commit = matches!(msg, Message::Commit { .. });
                    if let Some(ob) = self.outboxes.get(&to) {
                        // A full or closed outbox drops the message; the core re-sends
                        // everything whose loss would matter.
                        let _ = ob.try_send(msg);
                    }
                    if is_commit {
                        crate::failpoint::hit("after_first_commit_send");
                    }
                }
                Output::ForceCommit {
                    txid,
                    participants,
                    body_hash,
                    client,
                } => {
                    crate::failpoint::hit("before_commit_log");
                    let receipt = self.log.append_durable(LogRecord::Commit {
                        txid: txid.clone(),
                        participants,
                        body_hash,
                        at_ms: wall_ms(),
                        client,
                    });
                    self.when_durable(receipt, move |done| match done {
                        Ok(()) => Input::CommitDurable { txid },
                        Err(error) => Input::CommitFailed { txid, error },
                    });
                }
                Output::ForceAbort {
                    txid,
                    body_hash,
                    reason,
                    client,
                } => {
                    let receipt = self.log.append_durable(LogRecord::Abort {
                        txid: txid.clone(),
                        body_hash,
                        reason,
                        at_ms: wall_ms(),
                        client,
                    });
                    self.when_durable(receipt, move |done| match done {
                        Ok(()) => Input::AbortDurable { txid },
                        Err(error) => Input::AbortFailed { txid, error },
                    });
                }
                Output::LogLazy(rec) => {
                    for r in rec.into_records(wall_ms()) {
                        if let Err(e) = self.log.append_lazy(r) {
                            // Lazy records may be lost anyway (presumed abort, idempotent
                            // re-delivery); a log that refuses them also refuses the next
                            // forced COMMIT, which halts.
                            tracing::error!("decision log lazy append failed: {e}");
                        }
                    }
                }
                Output::Halt { reason } => {
                    // As a crash: no destructors, no flushing of anything not yet durable.
                    tracing::error!("decision log failure: {reason}");
                    eprintln!("twopc coordinator halting: {reason}");
                    std::process::abort();
                }
                Output::Reply { req, result } => {
                    if let Some(w) = self.waiters.remove(&req) {
                        let _ = w.send(result);
                    }
                }
                Output::Event { txid, kind } => {
                    if let EventKind::Heuristic {
                        participant,
                        decision,
                        result,
                    } = &kind
                    {
                        // An operator must look at it: the stores may disagree.
                        tracing::error!(
                            txid = txid.as_ref().map(|t| t.as_str()).unwrap_or(""),
                            %participant,
                            ?decision,
                            ?result,
                            "heuristic hazard: the participant's acknowledgement does not match \
                             the decision"
                        );
                    }
                    self.publish(txid, kind)
                }
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, for log records and events (the core runs on
/// the monotonic clock and never sees this one).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
