//! The participant server: one WebSocket loop for every kind of participant.
//!
//! # What a participant does
//!
//! A participant owns a local resource (a Redis database, a PostgreSQL database) and lets a
//! coordinator run two-phase commit across it and other resources. The coordinator dials the
//! participant over a WebSocket and, on that one long-lived connection, sends Prepare, Commit,
//! Abort and CommitOnePhase requests for many transactions at once; the participant answers
//! each with a Vote or an Ack carrying the request's id. Everything that is specific to the
//! resource (how to stage writes durably, how to finish them) sits behind the [`Resource`]
//! trait; everything that is about the protocol is written once, here, and shared by the Redis
//! participant and the Postgres background worker (whose tokio threads must never touch
//! PostgreSQL's own functions: nothing here does).
//!
//! # The connection
//!
//! * **Authentication.** The upgrade request must carry `Authorization: Bearer <token>`. The
//!   token is compared in constant time; a missing or wrong token gets HTTP 401 with a plain
//!   text reason and no WebSocket (see [`crate::auth`]).
//! * **First frame.** Right after the upgrade the participant sends an
//!   [`Message::InDoubtReport`] (request id 0) listing every transaction the resource holds
//!   prepared, read from durable state. A coordinator that has just restarted learns from it
//!   what it must resolve; [`Message::ListPrepared`] asks for the same report again.
//! * **Bounded input.** WebSocket frames and messages are limited to
//!   [`MAX_FRAME_BYTES`]. An oversized frame cannot be skipped (its bytes are
//!   still on the wire), so it is answered with an `Error{code: too_large}` and a close frame
//!   with code 1009 and a reason; the server itself is unaffected. Every other bad frame
//!   (malformed JSON, a binary frame, an unknown `type`, a wrong version, missing fields) is
//!   answered with [`Message::Error`] naming the request id when it could be read, and the
//!   connection carries on.
//! * **Bounded work.** Each connection has a semaphore of `max_in_flight` permits. A request
//!   that needs the resource takes a permit without waiting; when none is left it is answered
//!   at once with `Error{code: busy}` (the coordinator retries) instead of queueing without
//!   bound. Pings and error replies need no permit.
//! * **Heartbeats.** The server sends a WebSocket ping every `heartbeat_interval` (the peer's
//!   WebSocket library answers it without application code) and answers protocol-level
//!   [`Message::Ping`] with [`Message::Pong`]. Any inbound frame counts as a sign of life; a
//!   connection silent for longer than `idle_timeout` is closed, so a coordinator that
//!   vanished without a FIN does not keep a dead connection registered. Every send is bounded
//!   by the same timeout, so a peer that stops reading cannot stall its connection's loop (the
//!   participant does not start protocol-level pings itself: the WebSocket ping already
//!   proves liveness without asking anything of the coordinator's code).
//!
//! # Idempotency and per-transaction serialization
//!
//! Networks duplicate and reorder; coordinators retry. Every request is therefore idempotent by
//! (txid, type), which the resource guarantees by recording outcomes durably. What the
//! resource cannot see is two copies of the same request racing inside this process (two
//! Prepares for `t1` on two connections, a Commit overtaking a slow Prepare). The server
//! takes a per-txid async lock around every resource call for a txid, so work for one
//! transaction is strictly sequential while different transactions run in parallel.
//!
//! # The termination protocol
//!
//! A participant that voted YES may not decide alone: it is blocked until the coordinator
//! tells it the outcome. When the coordinator's Commit or Abort is lost (the coordinator
//! crashed, the connection broke), a background task notices every transaction that has been
//! prepared longer than `decision_timeout` and sends [`Message::DecisionRequest`] to a
//! connected coordinator, preferring a connection on which that transaction's coordinator has
//! sent a Prepare. Requests back off exponentially (`decision_retry_initial` doubling up to
//! `decision_retry_max`) per transaction. A YES vote whose connection closed before it could be
//! sent does not wait for `decision_timeout`: the coordinator has given up on that transaction
//! (or will) and may have reconnected already, so the decision is asked for at once on a live
//! connection. A [`Message::DecisionAnswer`] of Commit or Abort is
//! applied through the resource exactly like a Commit or Abort message; Pending waits for the
//! next round. While no coordinator is connected nothing is sent and nothing is decided: the
//! transaction stays prepared, its locks stay held, and it is listed in every in-doubt report
//! until a coordinator resolves it. The list of prepared transactions is read from the
//! resource on every round, so the task itself keeps no state that a restart could lose.
//!
//! # Errors from the resource
//!
//! An `Err` from the resource (Redis unreachable, say) is answered with
//! `Error{code: internal}` for that request id and never turned into a vote or an ack: the
//! coordinator treats it as "no answer" and retries or aborts, and since every operation is
//! idempotent a retry after an ambiguous failure is safe.
//!
//! # Shutdown
//!
//! [`RunningServer::shutdown`] cancels a [`CancellationToken`]: the accept loop stops, every
//! connection sends a close frame ("participant shutting down") and ends, the termination task
//! stops, and requests already handed to the resource run to completion before `shutdown`
//! returns (they are tracked in a [`TaskTracker`]). Nothing in memory needs saving: prepared
//! state lives in the resource.

use crate::auth;
use crate::resource::{PrepareOutcome, Resource};
use crate::txlock::TxLocks;
use crate::ParticipantError;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message as WsMessage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use twopc_protocol::{
    decode_frame, encode_frame, AckResult, CoordinatorId, Decision, DecisionStatus, ErrorCode,
    Frame, Message, ParticipantName, TxId, Vote, MAX_FRAME_BYTES,
};

/// How a participant server behaves. [`ServerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The participant's name, reported in every in-doubt report.
    pub name: ParticipantName,
    /// The shared secret the coordinator presents as `Authorization: Bearer <token>`.
    pub token: String,
    /// Requests that may use the resource at once on one connection; more get `busy`.
    pub max_in_flight: usize,
    /// How often the server pings each connection.
    pub heartbeat_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived for this long is closed.
    pub idle_timeout: Duration,
    /// A transaction prepared for longer than this makes the participant ask for the decision.
    pub decision_timeout: Duration,
    /// Wait before asking again about the same transaction; doubles on every attempt.
    pub decision_retry_initial: Duration,
    /// The longest wait between two decision requests for one transaction.
    pub decision_retry_max: Duration,
    /// How often the termination task looks at the prepared transactions.
    pub scan_interval: Duration,
    /// How long a client may take to complete the WebSocket upgrade.
    pub handshake_timeout: Duration,
}

impl ServerConfig {
    /// A configuration with the given name and token and default timings: heartbeat 10 s,
    /// idle timeout 30 s, decision timeout 30 s, retries from 1 s up to 30 s, 64 requests in
    /// flight per connection.
    pub fn new(name: ParticipantName, token: impl Into<String>) -> Self {
        ServerConfig {
            name,
            token: token.into(),
            max_in_flight: 64,
            heartbeat_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            decision_timeout: Duration::from_secs(30),
            decision_retry_initial: Duration::from_secs(1),
            decision_retry_max: Duration::from_secs(30),
            scan_interval: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ParticipantError> {
        let bad = |m: &str| Err(ParticipantError::Config(m.to_string()));
        if self.token.trim().is_empty() {
            return bad("the token must not be empty");
        }
        if self
            .token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad("the token must not contain whitespace or control characters");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1");
        }
        for (what, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("idle_timeout", self.idle_timeout),
            ("decision_retry_initial", self.decision_retry_initial),
            ("decision_retry_max", self.decision_retry_max),
            ("scan_interval", self.scan_interval),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if d.is_zero() {
                return bad(&format!("{what} must be greater than zero"));
            }
        }
        if self.idle_timeout <= self.heartbeat_interval {
            return bad("idle_timeout must be longer than heartbeat_interval");
        }
        Ok(())
    }
}

/// The WebSocket limits every participant connection uses.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// A participant server over a resource, not yet listening.
pub struct Server<R: Resource> {
    shared: Arc<Shared<R>>,
}

/// A listening participant server. Dropping it does not stop the server; call
/// [`RunningServer::shutdown`] (or cancel its token).
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl<R: Resource> Server<R> {
    /// A server for `resource`; fails when the configuration is unusable.
    pub fn new(resource: R, config: ServerConfig) -> Result<Self, ParticipantError> {
        config.validate()?;
        Ok(Server {
            shared: Arc::new(Shared {
                resource,
                config,
                txlocks: TxLocks::default(),
                conns: Mutex::new(HashMap::new()),
                asked: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
                next_request: AtomicU64::new(1),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// Binds `addr` (use port 0 for any free port) and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningServer, ParticipantError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ParticipantError::Bind { addr, source })?;
        self.serve(listener)
    }

    /// Starts serving on an already bound listener.
    pub fn serve(self, listener: TcpListener) -> Result<RunningServer, ParticipantError> {
        let local_addr = listener.local_addr()?;
        let shared = self.shared;
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(accept_loop(shared, listener));
        info!(%local_addr, "participant listening");
        Ok(RunningServer {
            local_addr,
            shutdown,
            task,
        })
    }
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every connection, waits for running requests to finish.
    pub async fn shutdown(self) -> Result<(), ParticipantError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server has stopped (after its token was cancelled elsewhere).
    pub async fn wait(self) -> Result<(), ParticipantError> {
        self.task
            .await
            .map_err(|e| ParticipantError::Task(e.to_string()))
    }
}

/// State shared by the accept loop, every connection and the termination task.
struct Shared<R> {
    resource: R,
    config: ServerConfig,
    txlocks: TxLocks,
    /// Open, authenticated connections, by connection id.
    conns: Mutex<HashMap<u64, ConnHandle>>,
    /// Decision requests sent, by txid (for backoff).
    asked: Mutex<HashMap<TxId, AskState>>,
    next_conn: AtomicU64,
    next_request: AtomicU64,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What the termination task needs to talk to one connection.
#[derive(Clone)]
struct ConnHandle {
    out: mpsc::Sender<WsMessage>,
    /// Coordinator ids seen in Prepare/CommitOnePhase on this connection.
    coordinators: Arc<Mutex<HashSet<CoordinatorId>>>,
}

struct AskState {
    attempts: u32,
    next_at: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(frame: &Frame) -> WsMessage {
    WsMessage::text(encode_frame(frame))
}

fn close(code: CloseCode, reason: &str) -> CloseFrame {
    // A close reason is limited to 123 bytes; ours are ASCII and short, but be safe.
    let mut r = reason.to_string();
    r.truncate(120);
    CloseFrame {
        code,
        reason: r.into(),
    }
}

fn internal(e: &ParticipantError) -> Message {
    Message::Error {
        code: ErrorCode::Internal,
        message: e.to_string(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn accept_loop<R: Resource>(shared: Arc<Shared<R>>, listener: TcpListener) {
    let tracker = shared.tracker.clone();
    tracker.spawn(termination_task(shared.clone()));
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracker.spawn(handle_connection(shared.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    info!("participant stopped");
}

impl<R: Resource> Shared<R> {
    async fn in_doubt_report(&self, id: u64) -> Result<Frame, ParticipantError> {
        let prepared = self.resource.list_prepared().await?;
        Ok(Frame::new(
            id,
            Message::InDoubtReport {
                participant: self.config.name.clone(),
                kind: self.resource.kind(),
                prepared,
            },
        ))
    }

    /// Runs one request that needs the resource, under the txid's lock.
    async fn handle_request(&self, msg: Message) -> Message {
        match msg {
            Message::Prepare {
                txid,
                coordinator,
                ops,
                timeout_ms,
            } => {
                // The coordinator's clock started when it sent the Prepare; waiting for the
                // txid's lock counts against it too.
                let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
                let _g = self.txlocks.lock(&txid).await;
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let (vote, reason) =
                    match self.resource.prepare(&coordinator, &txid, &ops, left).await {
                        Ok(PrepareOutcome::Yes) => (Vote::Yes, None),
                        Ok(PrepareOutcome::No { reason }) => (Vote::No, Some(reason)),
                        Ok(PrepareOutcome::ReadOnly) => (Vote::ReadOnly, None),
                        Err(e) => {
                            warn!(%txid, "prepare failed: {e}");
                            return internal(&e);
                        }
                    };
                debug!(%txid, ?vote, ?reason, "prepare");
                Message::Vote { txid, vote, reason }
            }
            Message::Commit { txid } => self.finish(txid, Decision::Commit).await,
            Message::Abort { txid, .. } => self.finish(txid, Decision::Abort).await,
            Message::CommitOnePhase {
                txid,
                coordinator,
                ops,
            } => {
                let _g = self.txlocks.lock(&txid).await;
                match self
                    .resource
                    .commit_one_phase(&coordinator, &txid, &ops)
                    .await
                {
                    Ok(o) => Message::Ack {
                        txid,
                        decision: o.decision,
                        result: o.result,
                        reason: o.reason,
                    },
                    Err(e) => {
                        warn!(%txid, "one-phase commit failed: {e}");
                        internal(&e)
                    }
                }
            }
            Message::ListPrepared {} => match self.in_doubt_report(0).await {
                Ok(f) => f.msg,
                Err(e) => internal(&e),
            },
            other => Message::Error {
                code: ErrorCode::Unexpected,
                message: format!("a participant does not accept `{}`", other.type_name()),
            },
        }
    }

    /// Commit or abort `txid` through the resource, under its lock.
    async fn finish(&self, txid: TxId, decision: Decision) -> Message {
        let _g = self.txlocks.lock(&txid).await;
        let res = match decision {
            Decision::Commit => self.resource.commit(&txid).await,
            Decision::Abort => self.resource.abort(&txid).await,
        };
        match res {
            Ok(result) => {
                lock(&self.asked).remove(&txid);
                if matches!(result, AckResult::Conflict)
                    || (decision == Decision::Commit && result == AckResult::NotPrepared)
                {
                    warn!(%txid, ?decision, ?result, "phase 2 did not find the expected state");
                } else {
                    debug!(%txid, ?decision, ?result, "phase 2");
                }
                Message::Ack {
                    txid,
                    decision,
                    result,
                    reason: None,
                }
            }
            Err(e) => {
                warn!(%txid, ?decision, "phase 2 failed: {e}");
                internal(&e)
            }
        }
    }

    /// Applies a coordinator's answer to one of our decision requests.
    async fn apply_answer(&self, txid: TxId, status: DecisionStatus) {
        let decision = match status {
            DecisionStatus::Commit => Decision::Commit,
            DecisionStatus::Abort => Decision::Abort,
            DecisionStatus::Pending => {
                debug!(%txid, "coordinator says the decision is pending; keeping it prepared");
                return;
            }
        };
        match self.finish(txid.clone(), decision).await {
            Message::Ack { result, .. } => {
                info!(%txid, ?decision, ?result, "applied the coordinator's decision")
            }
            other => warn!(%txid, "could not apply the coordinator's decision: {other:?}"),
        }
    }

    /// An open connection on which `coordinator` has spoken, else any open connection.
    fn pick_conn(&self, coordinator: &CoordinatorId) -> Option<ConnHandle> {
        let conns = lock(&self.conns);
        let mut any = None;
        for c in conns.values() {
            if lock(&c.coordinators).contains(coordinator) {
                return Some(c.clone());
            }
            any.get_or_insert_with(|| c.clone());
        }
        any
    }

    /// Sends a DecisionRequest for `txid` on `conn`; when it could be queued, counts the
    /// attempt and schedules the next one with backoff.
    fn request_decision(
        &self,
        conn: &ConnHandle,
        txid: &TxId,
        st: &mut AskState,
        now: Instant,
    ) -> bool {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::new(id, Message::DecisionRequest { txid: txid.clone() });
        let sent = conn.out.try_send(text(&frame)).is_ok();
        if sent {
            st.attempts += 1;
            st.next_at = now + self.backoff(st.attempts);
        }
        sent
    }

    /// A YES vote whose connection closed before it could be sent. The coordinator has given
    /// up on the transaction or will (no vote: presumed abort), and may already have reconnected
    /// and read an in-doubt report that did not list it yet, so nothing would resolve it before
    /// `decision_timeout`. Ask at once on a live connection instead; with none, the in-doubt
    /// report of the next connection lists it.
    fn ask_for_orphaned_vote(&self, txid: &TxId, coordinator: &CoordinatorId) {
        let Some(conn) = self.pick_conn(coordinator) else {
            return;
        };
        let now = Instant::now();
        let mut asked = lock(&self.asked);
        let st = asked.entry(txid.clone()).or_insert(AskState {
            attempts: 0,
            next_at: now,
        });
        if self.request_decision(&conn, txid, st, now) {
            info!(%txid, "the vote's connection closed first; asked the coordinator for the decision");
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        backoff(
            self.config.decision_retry_initial,
            self.config.decision_retry_max,
            attempts,
        )
    }
}

/// The wait after the `attempts`-th decision request: `initial`, doubling, capped at `max`.
fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    initial.saturating_mul(factor).min(max)
}

/// The termination protocol's background task (see the module docs).
async fn termination_task<R: Resource>(shared: Arc<Shared<R>>) {
    let mut first_seen: HashMap<TxId, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.config.scan_interval) => {}
        }
        if lock(&shared.conns).is_empty() {
            // Nobody to ask: keep everything prepared and do not even read the resource.
            continue;
        }
        let prepared = match shared.resource.list_prepared().await {
            Ok(p) => p,
            Err(e) => {
                debug!("termination task cannot list prepared transactions: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let now_ms = unix_ms();
        let live: HashSet<&TxId> = prepared.iter().map(|p| &p.txid).collect();
        first_seen.retain(|t, _| live.contains(t));
        lock(&shared.asked).retain(|t, _| live.contains(t));
        for tx in &prepared {
            let seen = *first_seen.entry(tx.txid.clone()).or_insert(now);
            // Wall-clock age survives restarts; the monotonic age guards against a clock
            // that jumped backwards.
            let age = Duration::from_millis(now_ms.saturating_sub(tx.prepared_at_ms))
                .max(now.duration_since(seen));
            if age < shared.config.decision_timeout {
                continue;
            }
            let Some(conn) = shared.pick_conn(&tx.coordinator) else {
                continue;
            };
            let mut asked = lock(&shared.asked);
            let st = asked.entry(tx.txid.clone()).or_insert(AskState {
                attempts: 0,
                next_at: now,
            });
            if now < st.next_at {
                continue;
            }
            if shared.request_decision(&conn, &tx.txid, st, now) {
                info!(txid = %tx.txid, attempt = st.attempts, age_ms = age.as_millis() as u64,
                      "asked the coordinator for the decision");
            }
        }
    }
}

/// Upgrades, authenticates and serves one connection.
#[allow(clippy::result_large_err)] // the callback's error *is* the HTTP response tungstenite sends
async fn handle_connection<R: Resource>(
    shared: Arc<Shared<R>>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let token = shared.config.token.clone();
    let callback =
        move |req: &Request, resp: Response| auth::check_bearer(req, &token).map(|()| resp);
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(websocket_config()));
    let ws = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(shared.config.handshake_timeout, upgrade) => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                info!(%peer, "WebSocket upgrade refused or failed: {e}");
                return;
            }
            Err(_) => {
                info!(%peer, "WebSocket upgrade timed out");
                return;
            }
        }
    };
    let (mut sink, mut stream) = ws.split();

    // The first frame is always the in-doubt report.
    match shared.in_doubt_report(0).await {
        Ok(report) => {
            if !send_within(&mut sink, text(&report), shared.config.idle_timeout).await {
                return;
            }
        }
        Err(e) => {
            warn!(%peer, "cannot list prepared transactions for a new connection: {e}");
            let reason = close(
                CloseCode::Error,
                "participant cannot read its prepared transactions; retry",
            );
            send_within(&mut sink, WsMessage::Close(Some(reason)), CLOSE_LIMIT).await;
            drain(&mut stream).await;
            return;
        }
    }

    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let max = shared.config.max_in_flight;
    let (out_tx, mut out_rx) = mpsc::channel::<WsMessage>(max + 16);
    let coordinators = Arc::new(Mutex::new(HashSet::new()));
    lock(&shared.conns).insert(
        conn_id,
        ConnHandle {
            out: out_tx.clone(),
            coordinators: coordinators.clone(),
        },
    );
    info!(%peer, conn_id, "coordinator connected");
    let ctx = ConnCtx {
        shared: shared.clone(),
        out: out_tx,
        permits: Arc::new(Semaphore::new(max)),
        coordinators,
    };

    let mut last_seen = Instant::now();
    let hb = shared.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + hb, hb);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // A peer that stops reading must not stall this loop (and with it the heartbeat check)
    // in a send that never completes: every send gets the idle timeout.
    let limit = shared.config.idle_timeout;
    let closing: Option<CloseFrame> = loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {
                break Some(close(CloseCode::Away, "participant shutting down"));
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > shared.config.idle_timeout {
                    info!(%peer, conn_id, "no traffic within the idle timeout; closing");
                    break Some(close(CloseCode::Away, "heartbeat timeout: nothing received within the idle timeout"));
                }
                if !send_within(&mut sink, WsMessage::Ping(Bytes::from_static(b"twopc")), limit).await {
                    break None;
                }
            }
            Some(out) = out_rx.recv() => {
                if !send_within(&mut sink, out, limit).await {
                    break None;
                }
            }
            inbound = stream.next() => {
                let msg = match inbound {
                    None => break None,
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(e))) => {
                        info!(%peer, conn_id, "oversized frame: {e}");
                        let reply = Frame::new(0, Message::Error {
                            code: ErrorCode::TooLarge,
                            message: format!(
                                "{e}; frames are limited to {MAX_FRAME_BYTES} bytes; closing the \
                                 connection because the rest of the frame cannot be skipped"
                            ),
                        });
                        send_within(&mut sink, text(&reply), limit).await;
                        break Some(close(CloseCode::Size, "frame exceeds the 1 MiB limit"));
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        let reply = Frame::new(0, Message::Error {
                            code: ErrorCode::Malformed,
                            message: format!("text frame is not valid UTF-8: {e}"),
                        });
                        send_within(&mut sink, text(&reply), limit).await;
                        break Some(close(CloseCode::Invalid, "text frame is not valid UTF-8"));
                    }
                    Some(Err(e)) => {
                        debug!(%peer, conn_id, "connection ended: {e}");
                        break None;
                    }
                };
                last_seen = Instant::now();
                let reply = match msg {
                    WsMessage::Text(t) => match decode_frame(t.as_str()) {
                        Ok(frame) => ctx.dispatch(frame),
                        Err(e) => {
                            debug!(%peer, conn_id, "bad frame: {e}");
                            Some(e.reply())
                        }
                    },
                    WsMessage::Binary(_) => Some(Frame::new(0, Message::Error {
                        code: ErrorCode::Malformed,
                        message: "binary frames are not part of the protocol; send JSON text frames".into(),
                    })),
                    // Pings are answered by tungstenite; pongs and close frames only prove
                    // the peer is alive (a close is answered and then ends the stream).
                    _ => None,
                };
                if let Some(reply) = reply {
                    if !send_within(&mut sink, text(&reply), limit).await {
                        break None;
                    }
                }
            }
        }
    };
    lock(&shared.conns).remove(&conn_id);
    // From here on a reply for this connection can no longer be written: make its senders see
    // that (a YES vote then asks for the decision on another connection) instead of queueing it.
    drop(out_rx);
    if let Some(frame) = closing {
        send_within(&mut sink, WsMessage::Close(Some(frame)), CLOSE_LIMIT).await;
        drain(&mut stream).await;
    }
    info!(%peer, conn_id, "coordinator disconnected");
}

/// How long the last frames of a closing connection may take to send (and the peer to answer
/// the close), so shutdown never waits long for a peer that stopped reading.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Sends one message; false when the connection failed or the send took longer than `limit`.
async fn send_within<S>(sink: &mut S, msg: WsMessage, limit: Duration) -> bool
where
    S: futures_util::Sink<WsMessage, Error = WsError> + Unpin,
{
    matches!(
        tokio::time::timeout(limit, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Reads what the peer still sends (its close reply) for a moment, so our last frames are
/// not lost to a TCP reset caused by unread data.
async fn drain<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_LIMIT, async {
        let mut errors = 0;
        while let Some(r) = stream.next().await {
            if r.is_err() {
                errors += 1;
                if errors > 16 {
                    break;
                }
            }
        }
    })
    .await;
}

/// Per-connection state used when dispatching a frame.
struct ConnCtx<R> {
    shared: Arc<Shared<R>>,
    out: mpsc::Sender<WsMessage>,
    permits: Arc<Semaphore>,
    coordinators: Arc<Mutex<HashSet<CoordinatorId>>>,
}

impl<R: Resource> ConnCtx<R> {
    /// Handles one decoded frame; returns the reply to send at once, if any. Requests that
    /// need the resource run on their own task and reply through the outbound queue.
    fn dispatch(&self, frame: Frame) -> Option<Frame> {
        let id = frame.id;
        match frame.msg {
            Message::Ping { nonce } => Some(Frame::new(id, Message::Pong { nonce })),
            Message::Pong { .. } => None,
            Message::Error { code, message } => {
                debug!(id, ?code, "coordinator reported an error: {message}");
                None
            }
            msg @ (Message::Prepare { .. }
            | Message::Commit { .. }
            | Message::Abort { .. }
            | Message::CommitOnePhase { .. }
            | Message::ListPrepared {}) => {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    return Some(Frame::new(
                        id,
                        Message::Error {
                            code: ErrorCode::Busy,
                            message: format!(
                                "{} requests are already in flight on this connection (the \
                                 limit); retry later",
                                self.shared.config.max_in_flight
                            ),
                        },
                    ));
                };
                if let Message::Prepare { coordinator, .. }
                | Message::CommitOnePhase { coordinator, .. } = &msg
                {
                    lock(&self.coordinators).insert(coordinator.clone());
                }
                let preparing_for = match &msg {
                    Message::Prepare { coordinator, .. } => Some(coordinator.clone()),
                    _ => None,
                };
                let shared = self.shared.clone();
                let out = self.out.clone();
                self.shared.tracker.spawn(async move {
                    let reply = shared.handle_request(msg).await;
                    let yes = match (&reply, preparing_for) {
                        (
                            Message::Vote {
                                txid,
                                vote: Vote::Yes,
                                ..
                            },
                            Some(c),
                        ) => Some((txid.clone(), c)),
                        _ => None,
                    };
                    if out.send(text(&Frame::new(id, reply))).await.is_err() {
                        if let Some((txid, coordinator)) = yes {
                            shared.ask_for_orphaned_vote(&txid, &coordinator);
                        }
                    }
                    drop(permit);
                });
                None
            }
            Message::DecisionAnswer { txid, status } => {
                // Answers are bounded like requests; one that finds no permit is dropped
                // (the transaction stays prepared and the participant asks again later).
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    debug!(%txid, "decision answer dropped: too much in flight");
                    return None;
                };
                let shared = self.shared.clone();
                self.shared.tracker.spawn(async move {
                    shared.apply_answer(txid, status).await;
                    drop(permit);
                });
                None
            }
            other => Some(Frame::new(
                id,
                Message::Error {
                    code: ErrorCode::Unexpected,
                    message: format!(
                        "a participant does not accept `{}` messages",
                        other.type_name()
                    ),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_requests_back_off_exponentially_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<u128> = (1..=6).map(|a| backoff(i, m, a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(i, m, 1000), m);
    }

    #[test]
    fn config_validation_explains_itself() {
        let name: ParticipantName = "p".parse().unwrap();
        assert!(ServerConfig::new(name.clone(), "t").validate().is_ok());
        let e = ServerConfig::new(name.clone(), " ").validate().unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let mut c = ServerConfig::new(name, "t");
        c.max_in_flight = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_in_flight"));
    }
}
