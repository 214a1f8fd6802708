//! The coordinator's HTTP interface (axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/transactions` | run a transaction; 200 with the outcome (`committed`, `aborted`, or a heuristic outcome `heuristic_mixed`/`heuristic_hazard` when some participant's acknowledgement did not match the decision: see [`twopc_protocol::api`]), 202 if still running after the client timeout |
//! | `GET /v1/transactions/{id}` | a transaction's outcome, the same shape (404 if unknown) |
//! | `GET /v1/participants` | connection state and in-doubt counts |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/events` | WebSocket: every protocol step as JSON [`Event`](twopc_protocol::Event)s (at most `max_event_subscribers` at once, else 503 `too_many_subscribers`; a subscriber more than `event_buffer` events behind gets `{"lagged": n}` for what it missed) |
//! | `POST /v1/faults` | fault injection, refused unless enabled |
//! | `GET /` | the web app |
//!
//! Every client error is a 4xx with a JSON body `{"error": code, "message": text}`; the body
//! is parsed by hand (not by an extractor) so that each way a request can be wrong gets its
//! own code and a message that says what to fix. That includes requests no handler takes: an
//! unknown path under `/v1/` is a JSON 404 `not_found`, a known path with the wrong method a
//! JSON 405 `method_not_allowed`, and an id that is not valid percent-encoded UTF-8 a JSON 400
//! `bad_id` (axum's own rejections are plain text).
//!
//! Rules a body must follow beyond its schema:
//!
//! * No object may repeat a key (`duplicate_key`): a body that can be read two ways is refused.
//! * A client id must not start with [`GENERATED_ID_PREFIX`] (`reserved_id`): that prefix is
//!   the namespace of the ids the coordinator generates for requests without one, so no client
//!   can claim a generated id in advance.
//! * Every participant's first message (Prepare, or CommitOnePhase for a lone participant),
//!   encoded exactly as it will be sent, must fit the participants' frame limit
//!   [`MAX_FRAME_BYTES`] (413 `frame_too_large`). The body limit alone does not ensure it: the
//!   frame adds an envelope, and numbers are re-encoded (`1e15` becomes
//!   `1000000000000000.0`). Checked here, before anything is sent, because a participant that
//!   receives an oversized frame can only close the connection, which would abort every other
//!   transaction waiting for its vote.

use crate::config::Config;
use crate::core::SubmitError;
use crate::driver::{Command, Handle};
use crate::faults::{Faults, Intercept};
use axum::extract::rejection::PathRejection;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use twopc_protocol::api::{
    ApiError, Outcome, TransactionRequest, TransactionResponse, GENERATED_ID_PREFIX,
    MAX_PARTICIPANTS_PER_TX,
};
use twopc_protocol::event::EventKind;
use twopc_protocol::{
    encode_frame, Frame, Operations, ParticipantKind, ParticipantName, TxId, MAX_FRAME_BYTES,
};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The driver.
    pub handle: Handle,
    /// The configuration.
    pub config: Arc<Config>,
    /// Fault injection.
    pub faults: Arc<Faults>,
    /// `/v1/events` subscribers connected now.
    pub subscribers: Arc<Subscribers>,
}

/// Counts `/v1/events` subscribers against `max_event_subscribers`.
#[derive(Debug, Default)]
pub struct Subscribers {
    now: AtomicUsize,
}

/// One subscriber's place; giving it back (on drop) lets the next one in.
#[derive(Debug)]
pub struct SubscriberSlot(Arc<Subscribers>);

impl Subscribers {
    /// A place for one more subscriber, if fewer than `max` are connected.
    pub fn try_take(self: &Arc<Self>, max: usize) -> Option<SubscriberSlot> {
        self.now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SubscriberSlot(self.clone()))
    }

    /// Subscribers connected now.
    pub fn count(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Largest message (and frame) an event-stream client may send. The stream is one-way; a
/// client has nothing to say beyond a close or a ping, so anything bigger is refused at the
/// frame header instead of being buffered (an unfinished 60 MiB message used to cost 61 MB).
pub const EVENTS_MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Bytes of events queued for one subscriber's socket before a send waits for it to drain;
/// what a slow reader misses meanwhile is dropped and counted for it (`{"lagged": n}`).
pub const EVENTS_WRITE_BUFFER: usize = 16 * 1024;

/// A subscriber that cannot take a single event for this long is disconnected, freeing its
/// place (a dead peer behind a full socket would otherwise hold one for ever).
pub const EVENTS_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(lookup))
        .route("/v1/participants", get(participants))
        .route("/v1/events", get(events))
        .route("/v1/faults", post(inject_fault))
        .route("/v1/config", get(public_config))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        // Below /v1/ every path is API: an unknown one is a JSON 404, never the web app's
        // index.html (which a client would read as a 200).
        .route("/v1", any(unknown_endpoint))
        .route("/v1/", any(unknown_endpoint))
        .route("/v1/{*rest}", any(unknown_endpoint))
        .method_not_allowed_fallback(method_not_allowed);
    app = match state.config.web_dir.clone() {
        Some(dir) => {
            let index = dir.join("index.html");
            app.fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(index)),
            )
        }
        None => app.fallback(unknown_endpoint),
    };
    // The submit handler enforces its own limit so that the error is the API's JSON error.
    app.layer(DefaultBodyLimit::disable()).with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: code.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

async fn unknown_endpoint(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {}; the API is POST /v1/transactions, GET /v1/transactions/{{id}}, \
             GET /v1/participants, GET /v1/events, GET /v1/config, POST /v1/faults, GET /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// 64-bit FNV-1a: a stable hash (unlike std's) so body hashes survive restarts in the log.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

async fn submit(State(st): State<AppState>, body: axum::body::Body) -> Response {
    // Reads at most the limit: an oversized body is refused without buffering all of it.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
            )
        }
    };
    let value: serde_json::Value = match crate::strict_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("duplicate key") => {
            return error(StatusCode::BAD_REQUEST, "duplicate_key", e.to_string())
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            )
        }
    };
    let req: TransactionRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            let code = if msg.contains("transaction id") {
                "bad_id"
            } else {
                "invalid_request"
            };
            return error(StatusCode::BAD_REQUEST, code, msg);
        }
    };
    if let Some(id) = &req.id {
        if id.as_str().starts_with(GENERATED_ID_PREFIX) {
            return error(
                StatusCode::BAD_REQUEST,
                "reserved_id",
                format!(
                    "transaction ids starting with {GENERATED_ID_PREFIX:?} are reserved for the \
                     ids the coordinator generates; choose another id or send none"
                ),
            );
        }
    }
    if req.participants.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty_transaction",
            "a transaction must name at least one participant",
        );
    }
    if req.participants.len() > MAX_PARTICIPANTS_PER_TX {
        return error(
            StatusCode::BAD_REQUEST,
            "too_many_participants",
            format!(
                "{} participants; the limit is {MAX_PARTICIPANTS_PER_TX}",
                req.participants.len()
            ),
        );
    }
    for (name, ops) in &req.participants {
        let Some(p) = st.config.participant(name) else {
            let known: Vec<String> = st
                .config
                .participants
                .iter()
                .map(|p| p.name.to_string())
                .collect();
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_participant",
                format!(
                    "no participant named {name:?}; configured: {}",
                    known.join(", ")
                ),
            );
        };
        let fits = matches!(
            (p.kind, ops),
            (ParticipantKind::Postgres, Operations::Sql(_))
                | (ParticipantKind::Redis, Operations::Redis(_))
        );
        if !fits {
            let want = if p.kind == ParticipantKind::Postgres {
                "\"sql\""
            } else {
                "\"redis\""
            };
            return error(
                StatusCode::BAD_REQUEST,
                "wrong_operations",
                format!(
                    "participant {name} is a {:?} participant and takes {want} operations",
                    p.kind
                ),
            );
        }
    }
    // The canonical body: BTreeMap order and struct field order make this deterministic.
    let canonical = serde_json::to_vec(&req.participants).unwrap_or_default();
    let body_hash = fnv1a(&canonical);
    let txid = req.id.unwrap_or_else(|| st.handle.generate_txid());
    if let Some(refusal) = oversized_first_message(&st, &txid, &req.participants, body.len()) {
        return refusal;
    }
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Submit {
        txid: txid.clone(),
        body_hash,
        participants: req.participants,
        reply: tx,
    };
    if !st.handle.send(cmd).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        );
    }
    match tokio::time::timeout(Duration::from_millis(st.config.client_timeout_ms), rx).await {
        Ok(Ok(Ok(resp))) => (StatusCode::OK, Json(resp)).into_response(),
        Ok(Ok(Err(SubmitError::IdConflict { txid }))) => error(
            StatusCode::CONFLICT,
            "id_conflict",
            format!("transaction id {txid:?} was already used with a different body"),
        ),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        ),
        Err(_) => {
            let resp = TransactionResponse {
                id: txid,
                outcome: Outcome::InProgress,
                reason: Some("still running; GET /v1/transactions/{id} for the outcome".into()),
                timings: Default::default(),
                decision: None,
                heuristics: Vec::new(),
            };
            (StatusCode::ACCEPTED, Json(resp)).into_response()
        }
    }
}

/// The 413 for a transaction whose first message to some participant, encoded exactly as the
/// core will send it, is over the participants' frame limit; `None` when every one fits.
fn oversized_first_message(
    st: &AppState,
    txid: &TxId,
    participants: &std::collections::BTreeMap<ParticipantName, Operations>,
    body_len: usize,
) -> Option<Response> {
    let one_phase = participants.len() == 1;
    for (name, ops) in participants {
        let msg = crate::core::first_message(
            &st.config.coordinator_id,
            txid,
            ops.clone(),
            one_phase,
            st.config.prepare_timeout_ms,
        );
        // The largest request id the connection could give it: the size is an upper bound.
        let len = encode_frame(&Frame::new(u64::MAX, msg)).len();
        if len > MAX_FRAME_BYTES {
            return Some(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "frame_too_large",
                format!(
                    "the message to participant {name} would be {len} bytes; participants \
                     accept frames of at most {MAX_FRAME_BYTES} bytes (the request body was \
                     {body_len} bytes: the frame adds an envelope and numbers are re-encoded, \
                     1e15 as 1000000000000000.0); nothing was sent"
                ),
            ));
        }
    }
    None
}

async fn lookup(State(st): State<AppState>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_id",
                format!("the transaction id in the path is not valid percent-encoded UTF-8: {e}"),
            )
        }
    };
    let txid = match TxId::new(id) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_id", e.to_string()),
    };
    let (tx, rx) = oneshot::channel();
    if !st
        .handle
        .send(Command::Lookup {
            txid: txid.clone(),
            reply: tx,
        })
        .await
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(Some(r)) => Json(r).into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no transaction {txid:?} is known here"),
        ),
    }
}

async fn participants(State(st): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !st.handle.send(Command::Participants { reply: tx }).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(list) => {
            let with_kind: Vec<serde_json::Value> = list
                .into_iter()
                .map(|s| {
                    let mut v = serde_json::to_value(&s).unwrap_or_default();
                    if let Some(p) = st.config.participant(&s.name) {
                        v["kind"] = serde_json::to_value(p.kind).unwrap_or_default();
                        v["url"] = p.url.clone().into();
                    }
                    v
                })
                .collect();
            Json(with_kind).into_response()
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        ),
    }
}

async fn public_config(State(st): State<AppState>) -> Response {
    let parts: Vec<serde_json::Value> = st
        .config
        .participants
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "kind": p.kind, "url": p.url}))
        .collect();
    Json(serde_json::json!({
        "coordinator_id": st.config.coordinator_id,
        "fault_injection": st.faults.enabled(),
        "prepare_timeout_ms": st.config.prepare_timeout_ms,
        "participants": parts,
    }))
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !st.handle.send(Command::Metrics { reply: tx }).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the coordinator is shutting down",
        ),
    }
}

async fn events(
    State(st): State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "websocket_required",
                format!("/v1/events is a WebSocket endpoint: {e}"),
            )
        }
    };
    let max = st.config.max_event_subscribers;
    let Some(slot) = st.subscribers.try_take(max) else {
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!(
                "the event stream already has {max} subscribers (max_event_subscribers); \
                 try again later"
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return resp;
    };
    ws.read_buffer_size(EVENTS_MAX_CLIENT_MESSAGE)
        .max_message_size(EVENTS_MAX_CLIENT_MESSAGE)
        .max_frame_size(EVENTS_MAX_CLIENT_MESSAGE)
        .write_buffer_size(EVENTS_WRITE_BUFFER)
        // Never reached in practice: a send waits (and the reader lags) once the write
        // buffer is full, so at most one event more than it is held.
        .max_write_buffer_size(EVENTS_WRITE_BUFFER + MAX_FRAME_BYTES)
        .on_upgrade(move |socket| stream_events(st, socket, slot))
}

/// Events written to one subscriber before one flush: a transaction's events come in bursts
/// (one protocol step publishes several), and one write per burst instead of one per event
/// keeps the per-subscriber cost down.
const EVENTS_PER_FLUSH: usize = 64;

async fn stream_events(st: AppState, mut socket: WebSocket, _slot: SubscriberSlot) {
    use futures_util::SinkExt;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    // A slow subscriber misses events rather than slowing the coordinator down, and is told
    // how many (the web app counts them as "skipped by server").
    let lagged = |n: u64| -> Arc<str> { serde_json::json!({"lagged": n}).to_string().into() };
    let mut rx = st.handle.subscribe();
    loop {
        let first: Arc<str> = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(text) => text,
                Err(RecvError::Lagged(n)) => lagged(n),
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Over EVENTS_MAX_CLIENT_MESSAGE, a read error, or a close: done.
                Some(Ok(AxMessage::Close(_))) | None | Some(Err(_)) => return,
                _ => continue,
            },
        };
        let mut batch = vec![first];
        while batch.len() < EVENTS_PER_FLUSH {
            match rx.try_recv() {
                Ok(text) => batch.push(text),
                Err(TryRecvError::Lagged(n)) => batch.push(lagged(n)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        let send = async {
            for text in batch {
                socket.feed(AxMessage::Text(text.as_ref().into())).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(EVENTS_SEND_TIMEOUT, send).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// `POST /v1/faults` body.
#[derive(Debug, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultRequest {
    /// Lose the next protocol message to a participant.
    DropNext {
        /// The participant.
        participant: ParticipantName,
        /// Only the next message of this wire type (`prepare`, `commit`, `abort`, ...).
        #[serde(default)]
        msg_type: Option<String>,
    },
    /// Delay the next protocol message to a participant.
    DelayNext {
        /// The participant.
        participant: ParticipantName,
        /// How long.
        ms: u64,
        /// Only the next message of this wire type (`prepare`, `commit`, `abort`, ...).
        #[serde(default)]
        msg_type: Option<String>,
    },
    /// Cut the connection to a participant until restored.
    Partition {
        /// The participant.
        participant: ParticipantName,
    },
    /// Restore a cut connection.
    Heal {
        /// The participant.
        participant: ParticipantName,
    },
    /// Crash the coordinator process at once (exit code 137, no cleanup).
    Crash,
}

async fn inject_fault(State(st): State<AppState>, body: axum::body::Body) -> Response {
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "fault requests are small",
        );
    };
    if !st.faults.enabled() {
        return error(
            StatusCode::FORBIDDEN,
            "faults_disabled",
            "fault injection is disabled; start the coordinator with fault_injection = true",
        );
    }
    let req: FaultRequest =
        match crate::strict_json::from_slice(&body).and_then(serde_json::from_value) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
        };
    let name = match &req {
        FaultRequest::DropNext { participant, .. }
        | FaultRequest::DelayNext { participant, .. }
        | FaultRequest::Partition { participant }
        | FaultRequest::Heal { participant } => Some(participant.clone()),
        FaultRequest::Crash => None,
    };
    if let Some(n) = &name {
        if st.config.participant(n).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_participant",
                format!("no participant named {n:?}"),
            );
        }
    }
    let description = match req {
        FaultRequest::DropNext {
            participant,
            msg_type,
        } => {
            let what = msg_type.clone().unwrap_or_else(|| "message".into());
            st.faults
                .arm(participant.clone(), Intercept::Drop, msg_type);
            format!("armed: drop the next {what} to {participant}")
        }
        FaultRequest::DelayNext {
            participant,
            ms,
            msg_type,
        } => {
            let what = msg_type.clone().unwrap_or_else(|| "message".into());
            let ms = ms.min(60_000);
            st.faults.arm(
                participant.clone(),
                Intercept::Delay(Duration::from_millis(ms)),
                msg_type,
            );
            format!("armed: delay the next {what} to {participant} by {ms} ms")
        }
        FaultRequest::Partition { participant } => {
            st.faults.set_partitioned(participant.clone(), true);
            format!("partitioned {participant}")
        }
        FaultRequest::Heal { participant } => {
            st.faults.set_partitioned(participant.clone(), false);
            format!("healed {participant}")
        }
        FaultRequest::Crash => {
            let _ = st
                .handle
                .send(Command::Event {
                    txid: None,
                    kind: EventKind::FaultInjected {
                        fault: "coordinator crash".into(),
                    },
                })
                .await;
            tokio::spawn(async {
                // Let the response and the event leave first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::process::exit(137);
            });
            "crashing the coordinator".to_string()
        }
    };
    let _ = st
        .handle
        .send(Command::Event {
            txid: None,
            kind: EventKind::FaultInjected {
                fault: description.clone(),
            },
        })
        .await;
    Json(serde_json::json!({"ok": true, "fault": description})).into_response()
}
