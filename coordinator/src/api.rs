//! The coordinator's HTTP interface (axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/transactions` | run a transaction; 200 with the outcome (`committed`, `aborted`, or a heuristic outcome `heuristic_mixed`/`heuristic_hazard` when some participant's acknowledgement did not match the decision: see [`twopc_protocol::api`]), 202 if still running after the client timeout |
//! | `GET /v1/transactions/{id}` | a transaction's outcome, the same shape (404 if unknown) |
//! | `GET /v1/participants` | connection state and in-doubt counts |
//! | `GET /metrics` | OpenMetrics text (prometheus-client) |
//! | `GET /v1/events` | WebSocket: every protocol step as JSON [`Event`](twopc_protocol::Event)s (at most `max_event_subscribers` at once, else 503 `too_many_subscribers`; a subscriber more than `event_buffer` events behind gets `{"lagged": n}` for what it missed) |
//! | `POST /v1/faults` | fault injection, refused unless enabled |
//! | `GET /v1/whoami` | the client the token stands for and its scopes ([`twopc_protocol::api::ClientIdentity`]) |
//! | `GET /healthz` | `ok`; like the web app's files, never wants a client token |
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
//!
//! # Layout
//!
//! * this file: the router, the error body, `/v1/transactions`, `/v1/participants`,
//!   `/v1/config`, `/metrics`.
//! * `events`: the `/v1/events` stream and its subscriber limits.
//! * `faults`: `POST /v1/faults`.
//! * `auth`: the client-token check in front of every route ([`crate::clients`]).
//!
//! The bodies are the types of [`twopc_protocol::api`].

use crate::config::Config;
use crate::core::SubmitError;
use crate::driver::{Command, Handle};
use crate::faults::Faults;
use crate::strict_json::StrictJsonError;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use twopc_protocol::api::{
    ApiError, ApiErrorCode, CoordinatorLease, CoordinatorsResponse, Outcome, ParticipantConfig,
    ParticipantStatus, PublicConfig, TransactionRequest, TransactionResponse, GENERATED_ID_PREFIX,
    MAX_PARTICIPANTS_PER_TX,
};
use twopc_protocol::{
    encode_frame, Frame, Operations, ParticipantKind, ParticipantName, TxId, MAX_FRAME_BYTES,
};

mod auth;
mod events;
mod faults;
pub(crate) mod tls_listener;

pub use events::{
    SubscriberSlot, Subscribers, EVENTS_MAX_CLIENT_MESSAGE, EVENTS_SEND_TIMEOUT,
    EVENTS_WRITE_BUFFER,
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
    /// The PostgreSQL decision log, when that is the one in use: new transactions start
    /// only while its lease is fresh.
    pub pg_log: Option<Arc<crate::log::PgLog>>,
    /// Reads every coordinator id's lease, for `GET /v1/coordinators` (PostgreSQL log only).
    pub leases: Option<Arc<crate::log::LeaseReader>>,
    /// The configured API clients (none: the API is open).
    pub clients: Arc<crate::clients::Clients>,
    /// Why disconnected participants are (`last_error` in `GET /v1/participants`).
    pub dial_errors: Arc<crate::conn::DialErrors>,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(lookup))
        .route("/v1/participants", get(participants))
        .route("/v1/coordinators", get(coordinators))
        // CONNECT too: a WebSocket over HTTP/2 is an extended CONNECT (RFC 8441).
        .route("/v1/events", get(events::events).connect(events::events))
        .route("/v1/faults", post(faults::inject_fault))
        .route("/v1/config", get(public_config))
        .route("/v1/whoami", get(whoami))
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
    app.layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}

fn error(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: code,
            message: message.into(),
        }),
    )
        .into_response()
}

/// `GET /v1/whoami`: the client the request's token stands for (open API: every scope).
async fn whoami(client: Option<axum::Extension<Arc<crate::clients::Client>>>) -> Response {
    let identity = match client {
        Some(c) => c.identity(),
        None => twopc_protocol::api::ClientIdentity {
            authenticated: false,
            client: None,
            scopes: twopc_protocol::api::Scope::ALL.to_vec(),
            participants: None,
        },
    };
    Json(identity).into_response()
}

async fn unknown_endpoint(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        ApiErrorCode::NotFound,
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
        ApiErrorCode::MethodNotAllowed,
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

async fn submit(
    State(st): State<AppState>,
    client: Option<axum::Extension<Arc<crate::clients::Client>>>,
    body: axum::body::Body,
) -> Response {
    // Recorded with the transaction: in its answers, its events and the participants' history.
    let submitted_by = client.as_ref().map(|c| c.name.clone());
    // Reads at most the limit: an oversized body is refused without buffering all of it.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::PayloadTooLarge,
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
            )
        }
    };
    let value: serde_json::Value = match crate::strict_json::from_slice(&body) {
        Ok(v) => v,
        Err(e @ StrictJsonError::DuplicateKey(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::DuplicateKey,
                e.to_string(),
            )
        }
        Err(e @ StrictJsonError::Malformed(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::MalformedJson,
                format!("request body is not valid JSON: {e}"),
            )
        }
    };
    let req = match TransactionRequest::from_value(value) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
    };
    if let Some(id) = &req.id {
        if id.as_str().starts_with(GENERATED_ID_PREFIX) {
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::ReservedId,
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
            ApiErrorCode::EmptyTransaction,
            "a transaction must name at least one participant",
        );
    }
    if req.participants.len() > MAX_PARTICIPANTS_PER_TX {
        return error(
            StatusCode::BAD_REQUEST,
            ApiErrorCode::TooManyParticipants,
            format!(
                "{} participants; the limit is {MAX_PARTICIPANTS_PER_TX}",
                req.participants.len()
            ),
        );
    }
    for (name, ops) in &req.participants {
        if !name.is_plain() {
            let e = crate::shards::SplitError::NamedAShard(name.clone());
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::UnknownParticipant,
                e.to_string(),
            );
        }
        let Some(kind) = st.config.client_participant_kind(name) else {
            let known: Vec<String> = st
                .config
                .client_names()
                .iter()
                .map(|p| p.to_string())
                .collect();
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::UnknownParticipant,
                format!(
                    "no participant named \"{name}\"; configured: {}",
                    known.join(", ")
                ),
            );
        };
        let fits = matches!(
            (kind, ops),
            (ParticipantKind::Postgres, Operations::Sql(_))
                | (ParticipantKind::Redis, Operations::Redis(_))
        );
        if !fits {
            let want = if kind == ParticipantKind::Postgres {
                "\"sql\""
            } else {
                "\"redis\""
            };
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::WrongOperations,
                format!("participant {name} is a {kind:?} participant and takes {want} operations"),
            );
        }
    }
    // What the request itself says, before its operations move into the branches: the
    // canonical body (BTreeMap order and struct field order make it deterministic) and the
    // first participant its client may not use.
    let body_hash = fnv1a(&serde_json::to_vec(&req.participants).unwrap_or_default());
    let forbidden = client
        .as_deref()
        .and_then(|c| req.participants.keys().find(|p| !c.may_use(p)).cloned());
    // The branches: a sharded participant's operations go to the shards their keys live on.
    let branches = match crate::shards::split(&st.config.sharded, req.participants) {
        Ok(b) => b,
        Err(e) => {
            let code = match e {
                crate::shards::SplitError::NamedAShard(_) => ApiErrorCode::UnknownParticipant,
                _ => ApiErrorCode::ShardKey,
            };
            return error(StatusCode::BAD_REQUEST, code, e.to_string());
        }
    };
    if branches.len() > MAX_PARTICIPANTS_PER_TX {
        return error(
            StatusCode::BAD_REQUEST,
            ApiErrorCode::TooManyParticipants,
            format!(
                "{} branches over the participants' shards; the limit is \
                 {MAX_PARTICIPANTS_PER_TX}",
                branches.len()
            ),
        );
    }
    // The client's rights: which participants, how many transactions at once.
    let in_flight = match client.as_deref() {
        Some(c) => {
            if let Some(p) = forbidden {
                return error(
                    StatusCode::FORBIDDEN,
                    ApiErrorCode::Forbidden,
                    format!("client {} may not use participant {p}", c.name),
                );
            }
            match c.begin_transaction() {
                Some(guard) => Some(guard),
                None => {
                    return auth::too_many(
                        ApiErrorCode::TooManyInFlight,
                        Duration::from_secs(1),
                        format!(
                            "client {} has {} transactions running, its limit; retry when one \
                             has finished",
                            c.name,
                            c.max_in_flight()
                        ),
                    )
                }
            }
        }
        None => None,
    };
    let txid = req.id.unwrap_or_else(|| st.handle.generate_txid());
    if let Some(refusal) =
        oversized_first_message(&st, &txid, &branches, (body.len(), submitted_by.as_deref()))
    {
        return refusal;
    }
    if st.pg_log.as_ref().is_some_and(|l| !l.lease_fresh()) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::LeaseLost,
            format!(
                "coordinator {} cannot be sure it still holds its id's lease in the decision \
                 log, and starts no transaction; try another coordinator",
                st.config.coordinator_id
            ),
        );
    }
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Submit {
        txid: txid.clone(),
        body_hash,
        participants: branches,
        submitted_by: submitted_by.clone(),
        reply: tx,
    };
    if !st.handle.send(cmd).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        );
    }
    // The client's count of running transactions covers the transaction, not this request:
    // a task keeps its guard until the core has answered, whether or not anyone still waits
    // for that answer here (a 202 after the client timeout, a client that hung up).
    let rx = match in_flight {
        Some(guard) => {
            let (forward, answer) = oneshot::channel();
            tokio::spawn(async move {
                if let Ok(a) = rx.await {
                    let _ = forward.send(a);
                }
                drop(guard);
            });
            answer
        }
        None => rx,
    };
    match tokio::time::timeout(Duration::from_millis(st.config.client_timeout_ms), rx).await {
        Ok(Ok(Ok(mut resp))) => {
            resp.coordinator = Some(st.config.coordinator_id.clone());
            (StatusCode::OK, Json(resp)).into_response()
        }
        Ok(Ok(Err(SubmitError::IdConflict { txid }))) => error(
            StatusCode::CONFLICT,
            ApiErrorCode::IdConflict,
            format!("transaction id {txid:?} was already used with a different body"),
        ),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        ),
        Err(_) => {
            let resp = TransactionResponse {
                id: txid,
                outcome: Outcome::InProgress,
                reason: Some("still running; GET /v1/transactions/{id} for the outcome".into()),
                abort_class: None,
                timings: Default::default(),
                // Not known here; the lookup tells how many attempts have run.
                attempts: 1,
                decision: None,
                heuristics: Vec::new(),
                coordinator: Some(st.config.coordinator_id.clone()),
                submitted_by: submitted_by.clone(),
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
    (body_len, submitted_by): (usize, Option<&str>),
) -> Option<Response> {
    let one_phase = participants.len() == 1;
    for (name, ops) in participants {
        let msg = crate::core::first_message(
            (
                &st.config.coordinator_id,
                st.pg_log.as_ref().map(|l| l.epoch()),
            ),
            txid,
            ops.clone(),
            one_phase,
            st.config.prepare_timeout_ms,
            // The largest priority: the size is an upper bound.
            (Some(twopc_protocol::Priority(u64::MAX)), submitted_by),
        );
        // The largest request id the connection could give it: the size is an upper bound.
        let len = encode_frame(&Frame::new(u64::MAX, msg)).len();
        if len > MAX_FRAME_BYTES {
            return Some(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::FrameTooLarge,
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
                ApiErrorCode::BadId,
                format!("the transaction id in the path is not valid percent-encoded UTF-8: {e}"),
            )
        }
    };
    let txid = match TxId::new(id) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, ApiErrorCode::BadId, e.to_string()),
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
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(Some(mut r)) => {
            r.coordinator = Some(st.config.coordinator_id.clone());
            Json(r).into_response()
        }
        Ok(None) => {
            // Not run here: with a shared decision log, another coordinator's decision for it
            // may be there (a client asking whichever coordinator it reaches).
            if let Some(reader) = &st.leases {
                match reader.find(&txid).await {
                    Ok(Some(r)) => return Json(r).into_response(),
                    Ok(None) => {}
                    Err(e) => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ApiErrorCode::ShuttingDown,
                            format!("cannot read the shared decision log: {e}"),
                        )
                    }
                }
            }
            error(
                StatusCode::NOT_FOUND,
                ApiErrorCode::NotFound,
                format!("no transaction {txid:?} is known here"),
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        ),
    }
}

async fn participants(State(st): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !st.handle.send(Command::Participants { reply: tx }).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(list) => {
            // Every name the core reports comes from the configuration.
            let rows: Vec<ParticipantStatus> = list
                .into_iter()
                .filter_map(|s| {
                    let p = st.config.participant(&s.name)?;
                    Some(ParticipantStatus {
                        awaiting_ack: s.awaiting_ack as u64,
                        last_error: (!s.connected)
                            .then(|| st.dial_errors.get(&s.name))
                            .flatten(),
                        connected: s.connected,
                        foreign_prepared: s.foreign_prepared as u64,
                        kind: p.kind,
                        name: s.name,
                        reported_prepared: s.reported_prepared as u64,
                        url: p.url.clone(),
                    })
                })
                .collect();
            Json(rows).into_response()
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        ),
    }
}

/// `GET /v1/coordinators`: every coordinator id in the shared decision log, its holder, epoch
/// and lease (with the file log: this coordinator alone, always live).
async fn coordinators(State(st): State<AppState>) -> Response {
    let me = st.config.coordinator_id.clone();
    let Some(reader) = &st.leases else {
        return Json(CoordinatorsResponse {
            coordinator_id: me.clone(),
            decision_log: "file".into(),
            coordinators: vec![CoordinatorLease {
                coordinator_id: me,
                holder: "this process".into(),
                epoch: 1,
                expires_in_ms: i64::MAX,
                live: true,
                released: false,
                address: None,
            }],
        })
        .into_response();
    };
    match reader.list().await {
        Ok(rows) => Json(CoordinatorsResponse {
            coordinator_id: me,
            decision_log: "postgres".into(),
            coordinators: rows
                .into_iter()
                .map(|r| CoordinatorLease {
                    live: r.live(),
                    coordinator_id: r.coordinator,
                    holder: r.holder,
                    epoch: r.epoch.max(0) as u64,
                    expires_in_ms: r.expires_in_ms,
                    released: r.released,
                    address: r.address.filter(|a| !a.is_empty()),
                })
                .collect(),
        })
        .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            format!("cannot read the coordinator leases: {e}"),
        ),
    }
}

async fn public_config(State(st): State<AppState>) -> Response {
    Json(PublicConfig {
        coordinator_id: st.config.coordinator_id.clone(),
        fault_injection: st.faults.enabled(),
        participants: st
            .config
            .participants
            .iter()
            .map(|p| ParticipantConfig {
                kind: p.kind,
                name: p.name.clone(),
                url: p.url.clone(),
            })
            .collect(),
        prepare_timeout_ms: st.config.prepare_timeout_ms,
    })
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !st.handle.send(Command::Metrics { reply: tx }).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        );
    }
    match rx.await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::ShuttingDown,
            "the coordinator is shutting down",
        ),
    }
}
