//! The participant server: one WebSocket loop for every kind of participant.
//!
//! # What a participant does
//!
//! A participant owns a local resource (a Redis database, a PostgreSQL database) and lets a
//! coordinator run two-phase commit across it and other resources. The coordinator dials the
//! participant over a WebSocket and, on that one long-lived connection, sends Prepare, Commit,
//! Abort and CommitOnePhase requests for many transactions at once; the participant answers each
//! with a Vote or an Ack carrying the request's id. Everything that is specific to the resource
//! (how to stage writes durably, how to commit or roll them back) sits behind the [`Resource`]
//! trait; everything that is about the protocol is written once, in this crate, and shared by the
//! Redis participant and the Postgres background worker (whose tokio threads must never touch
//! PostgreSQL's own functions: nothing here does).
//!
//! # The connection
//!
//! * **TLS.** With [`ServerConfig::tls`] the endpoint speaks only `wss://`: the TLS handshake
//!   comes first (within the handshake timeout), and with a `client_ca_file` a coordinator
//!   without a client certificate from that CA is refused before any HTTP is read. A `ws://`
//!   client is refused by the handshake and nothing of its request is served.
//! * **Authentication.** The upgrade request must carry `Authorization: Bearer <token>`. The
//!   token is compared in constant time; a missing or wrong token gets HTTP 401 with a plain
//!   text reason and no WebSocket (see [`crate::auth`], which also explains rotation).
//! * **First frame.** Right after the upgrade the participant sends an
//!   [`Message::InDoubtReport`](twopc_protocol::Message::InDoubtReport) (request id 0) listing
//!   every transaction the resource holds prepared, read from durable state. A coordinator that has
//!   just restarted learns from it what it must resolve;
//!   [`Message::ListPrepared`](twopc_protocol::Message::ListPrepared) asks for the same report
//!   again.
//! * **Bounded input.** WebSocket frames and messages are limited to
//!   [`MAX_FRAME_BYTES`](twopc_protocol::MAX_FRAME_BYTES). An oversized frame cannot be skipped
//!   (its bytes are still on the wire), so it is answered with an `Error{code: too_large}` and a
//!   close frame with code 1009 and a reason; the server itself is unaffected. Every other bad
//!   frame (malformed JSON, a binary frame, an unknown `type`, a wrong version, missing fields) is
//!   answered with [`Message::Error`](twopc_protocol::Message::Error) naming the request id when it
//!   could be read, and the connection carries on.
//! * **Bounded work.** Each connection has `max_in_flight` permits, counted by the core: a
//!   request that needs the resource and finds none is answered `Error{code: busy}` at once
//!   (the coordinator retries) instead of queueing without bound. Pings and error replies
//!   need no permit.
//! * **Heartbeats.** The server sends a WebSocket ping every `heartbeat_interval` (the peer's
//!   WebSocket library answers it without application code) and answers protocol-level
//!   [`Message::Ping`](twopc_protocol::Message::Ping) with
//!   [`Message::Pong`](twopc_protocol::Message::Pong). Any inbound frame counts as a sign of life;
//!   a connection silent for longer than `idle_timeout` is closed, so a coordinator that vanished
//!   without a FIN does not keep a dead connection registered. Every send is bounded by the same
//!   timeout, so a peer that stops reading cannot stall its connection's loop (the participant does
//!   not start protocol-level pings itself: the WebSocket ping already proves liveness without
//!   asking anything of the coordinator's code).
//!
//! # The protocol
//!
//! What each message means, the per-txid serialization, the termination protocol and what a
//! failed resource call turns into are the participant's rules, written once as a pure state
//! machine in [`crate::core`] (its module docs explain them and why they are safe). This module
//! is the adapter around it: `driver` steps the core and carries out its outputs against the
//! [`Resource`], `connection` runs one WebSocket, `config` holds the settings.
//!
//! # Shutdown
//!
//! [`RunningServer::shutdown`] cancels a [`CancellationToken`]: the accept loop stops, every
//! connection sends a close frame ("participant shutting down") and ends, the termination timer
//! stops, and calls already handed to the resource run to completion before `shutdown`
//! returns (they are tracked in a `TaskTracker`). Nothing in memory needs saving: prepared
//! state lives in the resource.

mod config;
mod connection;
mod driver;

pub use config::{websocket_config, ServerConfig};

use crate::resource::Resource;
use crate::ParticipantError;
use driver::Driver;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use twopc_protocol::{encode_frame, Frame};

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
        let tls = match &config.tls {
            None => None,
            Some(files) => Some(twopc_tls::TlsAcceptor::from(
                twopc_tls::server_config(files, &[])
                    .map_err(|e| ParticipantError::Config(e.to_string()))?,
            )),
        };
        let core = config.core_config(resource.kind(), resource.waits_inside());
        Ok(Server {
            shared: Arc::new(Shared {
                tls,
                driver: Arc::new(Driver::new(resource, core)),
                config,
                next_conn: AtomicU64::new(1),
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
        let scheme = if shared.tls.is_some() { "wss" } else { "ws" };
        let task = tokio::spawn(accept_loop(shared, listener));
        info!(%local_addr, scheme, "participant listening");
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

    /// Stops accepting, closes every connection, waits for running calls to complete.
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

/// State shared by the accept loop, every connection and the termination timer.
struct Shared<R> {
    /// The TLS handshake every connection starts with; `None`: plain WebSocket.
    tls: Option<twopc_tls::TlsAcceptor>,
    driver: Arc<Driver<R>>,
    config: ServerConfig,
    next_conn: AtomicU64,
    shutdown: CancellationToken,
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

async fn accept_loop<R: Resource>(shared: Arc<Shared<R>>, listener: TcpListener) {
    let tracker = shared.driver.tracker.clone();
    tracker.spawn(termination_timer(shared.clone()));
    tracker.spawn(shared.driver.clone().wake_timer(shared.shutdown.clone()));
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracker.spawn(connection::serve(shared.clone(), stream, peer));
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

/// Ticks the core's termination protocol every `scan_interval`.
async fn termination_timer<R: Resource>(shared: Arc<Shared<R>>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.config.scan_interval) => shared.driver.tick(),
        }
    }
}
