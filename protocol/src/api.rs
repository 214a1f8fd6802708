//! The coordinator's HTTP API bodies, shared with the CLI, the tests and the web app: every
//! body the coordinator serves or accepts is a type here.
//!
//! | route | request | answer |
//! |---|---|---|
//! | `POST /v1/transactions` | [`TransactionRequest`] | [`TransactionResponse`] |
//! | `GET /v1/transactions/{id}` | | [`TransactionResponse`] |
//! | `GET /v1/participants` | | `[`[`ParticipantStatus`]`]` |
//! | `GET /v1/config` | | [`PublicConfig`] |
//! | `POST /v1/faults` | [`FaultRequest`] | [`FaultResponse`] |
//! | `GET /v1/events` | | [`Event`](crate::Event)s and [`Lagged`](crate::event::Lagged) notes |
//! | any error | | [`ApiError`] (4xx/5xx) |
//!
//! Some bodies were first written as `serde_json::json!` objects, which serialize their keys
//! in alphabetical order; their structs declare the fields in that order so the bytes on the
//! wire did not change when they became types (the round-trip tests pin them).
//!
//! # Heuristic outcomes
//!
//! After a COMMIT every participant that voted yes must answer `applied` (or
//! `already_applied` for a repeated message). Any other answer is a heuristic hazard: the
//! transaction's `outcome` becomes [`Outcome::HeuristicMixed`] (a participant had finished it
//! the other way, `conflict`) or [`Outcome::HeuristicHazard`] (a participant had no record of
//! it, `not_prepared`), with `decision` and `heuristics` saying what was decided and who
//! answered what:
//!
//! ```json
//! {"id": "t1", "outcome": "heuristic_mixed", "decision": "commit",
//!  "heuristics": [{"participant": "ledger", "result": "conflict"}],
//!  "timings": {"prepare_ms": 3.0, "decide_ms": 1.0, "commit_ms": 2.0, "total_ms": 6.0}}
//! ```
//!
//! The same holds for an ABORT answered `conflict` (the participant had committed). A client
//! answered before the last acknowledgement arrived (the decision is durable and the client
//! is not kept waiting past `ack_wait_ms`) sees the heuristic outcome on
//! `GET /v1/transactions/{id}`; it is kept in the decision log's END record, so it survives a
//! restart. Every such answer is also counted (`twopc_heuristic_hazards_total`), logged at
//! error level and published as a `heuristic` event.

use crate::ids::{CoordinatorId, IdError, ParticipantName, TxId};
use crate::message::{Decision, NoClass, ParticipantKind};
use crate::message_type::MessageType;
use crate::ops::Operations;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most participants one transaction may name.
pub const MAX_PARTICIPANTS_PER_TX: usize = 32;

/// Ids the coordinator generates (for a request without `id`) start with this character, and
/// client-chosen ids must not: the two namespaces cannot meet, so no client can claim a
/// generated id before the coordinator hands it out.
pub const GENERATED_ID_PREFIX: char = '~';

/// `POST /v1/transactions`: one global transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// Client-chosen id for idempotent retries; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TxId>,
    /// Operations per participant, by configured participant name.
    pub participants: BTreeMap<ParticipantName, Operations>,
}

/// Why a `POST /v1/transactions` body (already valid JSON) is not a [`TransactionRequest`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The client-chosen `id` is not a valid transaction id (`bad_id`).
    #[error(transparent)]
    BadId(IdError),
    /// Any other way the body does not fit the schema (`invalid_request`).
    #[error(transparent)]
    Invalid(serde_json::Error),
}

impl RequestError {
    /// The API error code the coordinator answers it with.
    pub fn code(&self) -> ApiErrorCode {
        match self {
            RequestError::BadId(_) => ApiErrorCode::BadId,
            RequestError::Invalid(_) => ApiErrorCode::InvalidRequest,
        }
    }
}

impl TransactionRequest {
    /// Reads a request from a parsed body. The id is taken as a plain string by the schema and
    /// validated afterwards, so a bad id is its own error ([`RequestError::BadId`]) rather
    /// than one more schema error.
    pub fn from_value(value: serde_json::Value) -> Result<Self, RequestError> {
        /// The request as the schema reads it, before the id is validated.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Unchecked {
            #[serde(default)]
            id: Option<String>,
            participants: BTreeMap<ParticipantName, Operations>,
        }
        let raw: Unchecked = serde_json::from_value(value).map_err(RequestError::Invalid)?;
        let id = raw
            .id
            .map(TxId::new)
            .transpose()
            .map_err(RequestError::BadId)?;
        Ok(TransactionRequest {
            id,
            participants: raw.participants,
        })
    }
}

/// The outcome of a transaction as told to the client.
///
/// `committed` and `aborted` mean what they say for every participant. The two heuristic
/// outcomes (named after the JTA/Narayana ones) mean the coordinator decided, but some
/// participant's acknowledgement did not match the decision, so "both stores or neither" may
/// not hold and an operator must look: the response's `decision` says what was decided and
/// `heuristics` which participant answered what. They are distinct outcomes, not a flag on
/// `committed`, so that a client that only checks for `committed` cannot mistake one for
/// success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed on every participant (or durably decided and being delivered).
    Committed,
    /// Aborted everywhere.
    Aborted,
    /// Still running.
    InProgress,
    /// Some participant had already finished the transaction the other way (an operator
    /// forced it): part of it committed and part rolled back.
    HeuristicMixed,
    /// Some participant that voted yes had no record of the transaction when the COMMIT
    /// reached it: whether its part is there is unknown.
    HeuristicHazard,
}

/// What a participant answered instead of "applied" when the decision reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeuristicKind {
    /// It had already finished the transaction the other way.
    Conflict,
    /// It held no record of preparing the transaction (after a COMMIT).
    NotPrepared,
}

/// One participant whose acknowledgement did not match the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeuristicReport {
    /// The participant.
    pub participant: ParticipantName,
    /// What it answered.
    pub result: HeuristicKind,
}

impl Outcome {
    /// The wire name (`committed`, `aborted`, `in_progress`, `heuristic_mixed`,
    /// `heuristic_hazard`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::InProgress => "in_progress",
            Outcome::HeuristicMixed => "heuristic_mixed",
            Outcome::HeuristicHazard => "heuristic_hazard",
        }
    }

    /// The outcome told for `decision` given the heuristic reports: a known other-way finish
    /// (`conflict`) is mixed; otherwise a participant with no record is a hazard.
    pub fn of(decision: Decision, heuristics: &[HeuristicReport]) -> Outcome {
        if heuristics
            .iter()
            .any(|h| h.result == HeuristicKind::Conflict)
        {
            Outcome::HeuristicMixed
        } else if !heuristics.is_empty() {
            Outcome::HeuristicHazard
        } else if decision == Decision::Commit {
            Outcome::Committed
        } else {
            Outcome::Aborted
        }
    }
}

/// Milliseconds spent per phase, with the microseconds kept (`"prepare_ms": 0.734`): the
/// coordinator stamps each phase boundary on a microsecond clock, so a client can see where
/// sub-millisecond time went.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PhaseTimings {
    /// Phase 1: sending Prepare and collecting votes.
    pub prepare_ms: f64,
    /// Forcing the decision to the log.
    pub decide_ms: f64,
    /// Phase 2: sending the decision and collecting acks.
    pub commit_ms: f64,
    /// Whole transaction.
    pub total_ms: f64,
}

/// The answer to `POST /v1/transactions` and `GET /v1/transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionResponse {
    /// The transaction id.
    pub id: TxId,
    /// Committed, aborted or in progress.
    pub outcome: Outcome,
    /// Why it aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a participant's NO aborted it: whether another attempt could succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_class: Option<NoClass>,
    /// Per-phase timings, from the first submission (earlier attempts and their backoffs
    /// count as phase 1 of the last attempt).
    pub timings: PhaseTimings,
    /// How many attempts ran (or are running): 1 unless the transaction was run again after
    /// retryable (`conflict`) NO votes. On an abort, `reason` and `abort_class` are the last
    /// attempt's. Always sent; read as 1 from a coordinator that predates retries.
    #[serde(default = "one")]
    pub attempts: u32,
    /// For a heuristic outcome: what the coordinator decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// For a heuristic outcome: each participant whose acknowledgement did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heuristics: Vec<HeuristicReport>,
    /// The coordinator that ran it: the one answering, or (several coordinators on one
    /// PostgreSQL decision log) the one whose decision it found in the shared log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<CoordinatorId>,
    /// The API client that submitted it (its configured name; absent with an open API, and
    /// for an outcome read back from the decision log after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

fn one() -> u32 {
    1
}

/// Any 4xx/5xx answer of the coordinator's HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable machine-readable code.
    pub error: ApiErrorCode,
    /// What is wrong, for a human.
    pub message: String,
}

/// The machine-readable code of an [`ApiError`]; the HTTP status that goes with it is in the
/// coordinator's `api` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorCode {
    /// The body is not JSON.
    MalformedJson,
    /// An object in the body repeats a key.
    DuplicateKey,
    /// The body does not fit the schema.
    InvalidRequest,
    /// A transaction id (in the body or the path) is not valid.
    BadId,
    /// A client id in the coordinator's namespace ([`GENERATED_ID_PREFIX`]).
    ReservedId,
    /// A transaction that names no participant.
    EmptyTransaction,
    /// More than [`MAX_PARTICIPANTS_PER_TX`] participants.
    TooManyParticipants,
    /// A participant the configuration does not name.
    UnknownParticipant,
    /// SQL for a Redis participant or the other way round.
    WrongOperations,
    /// A statement for a participant with several shards lacks a usable `shard_key`.
    ShardKey,
    /// The body is over the limit.
    PayloadTooLarge,
    /// A participant's first message would be over the frame limit.
    FrameTooLarge,
    /// The id was used before with a different body.
    IdConflict,
    /// No such endpoint, or no such transaction.
    NotFound,
    /// The endpoint does not take this method.
    MethodNotAllowed,
    /// `/v1/events` without a WebSocket upgrade.
    WebsocketRequired,
    /// The event stream has `max_event_subscribers` already.
    TooManySubscribers,
    /// `POST /v1/faults` while fault injection is off.
    FaultsDisabled,
    /// The coordinator is stopping.
    ShuttingDown,
    /// The coordinator cannot be sure it still holds its id's lease (PostgreSQL decision
    /// log): it starts no transaction; another coordinator may take the id over.
    LeaseLost,
    /// No bearer token, or one no configured client has (401).
    Unauthorized,
    /// The client's token is good but its scope does not cover this (403): the endpoint, or a
    /// participant the transaction names.
    Forbidden,
    /// The client sent more requests than its rate allows (429, with `Retry-After`).
    RateLimited,
    /// The client has as many transactions running as it may (429, with `Retry-After`).
    TooManyInFlight,
}

impl ApiErrorCode {
    /// The wire name (`malformed_json`, `unknown_participant`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorCode::MalformedJson => "malformed_json",
            ApiErrorCode::DuplicateKey => "duplicate_key",
            ApiErrorCode::InvalidRequest => "invalid_request",
            ApiErrorCode::BadId => "bad_id",
            ApiErrorCode::ReservedId => "reserved_id",
            ApiErrorCode::EmptyTransaction => "empty_transaction",
            ApiErrorCode::TooManyParticipants => "too_many_participants",
            ApiErrorCode::UnknownParticipant => "unknown_participant",
            ApiErrorCode::WrongOperations => "wrong_operations",
            ApiErrorCode::ShardKey => "shard_key",
            ApiErrorCode::PayloadTooLarge => "payload_too_large",
            ApiErrorCode::FrameTooLarge => "frame_too_large",
            ApiErrorCode::IdConflict => "id_conflict",
            ApiErrorCode::NotFound => "not_found",
            ApiErrorCode::MethodNotAllowed => "method_not_allowed",
            ApiErrorCode::WebsocketRequired => "websocket_required",
            ApiErrorCode::TooManySubscribers => "too_many_subscribers",
            ApiErrorCode::FaultsDisabled => "faults_disabled",
            ApiErrorCode::ShuttingDown => "shutting_down",
            ApiErrorCode::LeaseLost => "lease_lost",
            ApiErrorCode::Unauthorized => "unauthorized",
            ApiErrorCode::Forbidden => "forbidden",
            ApiErrorCode::RateLimited => "rate_limited",
            ApiErrorCode::TooManyInFlight => "too_many_in_flight",
        }
    }
}

/// One coordinator id in `GET /v1/coordinators`: who holds it in the shared decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorLease {
    /// The coordinator id.
    pub coordinator_id: CoordinatorId,
    /// The process run that holds it (or held it last): `<id>@<host>:<pid>:...`; a survivor
    /// that took the id over names its own id first.
    pub holder: String,
    /// Raised by every new holder; decisions are written only at the current one.
    pub epoch: u64,
    /// Milliseconds until the lease expires (negative: expired that long ago).
    pub expires_in_ms: i64,
    /// Held now: not expired.
    pub live: bool,
    /// Given up cleanly by its last holder (nothing left to do for the id).
    pub released: bool,
    /// The holder's API base URL, when it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `GET /v1/coordinators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorsResponse {
    /// The id of the coordinator that answered.
    pub coordinator_id: CoordinatorId,
    /// `postgres` when the decision log is shared, `file` for a single coordinator.
    pub decision_log: String,
    /// Every id in the shared log (only this coordinator's own with the file log).
    pub coordinators: Vec<CoordinatorLease>,
}

/// What an API client may do: the scopes of a `[[client]]` in the coordinator's
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/transactions`.
    Submit,
    /// `GET /v1/transactions/{id}`, `/v1/participants`, `/v1/coordinators`, `/v1/config`,
    /// `/metrics`.
    Read,
    /// `GET /v1/events` (every statement's summary and every key goes by on it).
    Events,
    /// `POST /v1/faults` (and only where fault injection is enabled at all).
    Faults,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Submit, Scope::Read, Scope::Events, Scope::Faults];

    /// The wire and configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Events => "events",
            Scope::Faults => "faults",
        }
    }
}

/// `GET /v1/whoami`: the client a token stands for, and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientIdentity {
    /// Whether the coordinator authenticates clients at all (no `[[client]]`: open to
    /// whoever reaches it, every scope, loopback only).
    pub authenticated: bool,
    /// The client's name (`None` when the API is open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The participants its transactions may name (`None`: every participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantName>>,
}

/// `GET /v1/config`: what the web app needs to know about the coordinator. (Fields in
/// alphabetical order: the wire order of the body this replaced.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicConfig {
    /// The coordinator's id.
    pub coordinator_id: CoordinatorId,
    /// Whether `POST /v1/faults` is enabled.
    #[serde(default)]
    pub fault_injection: bool,
    /// Configured participants, in configuration order.
    #[serde(default)]
    pub participants: Vec<ParticipantConfig>,
    /// Phase-1 timeout.
    #[serde(default)]
    pub prepare_timeout_ms: u64,
}

impl PublicConfig {
    /// The participant to use as the "bank": the first Postgres one.
    pub fn sql_participant(&self) -> Option<&ParticipantConfig> {
        self.participant_of(ParticipantKind::Postgres)
    }

    /// The participant to use as the "ledger": the first Redis one.
    pub fn redis_participant(&self) -> Option<&ParticipantConfig> {
        self.participant_of(ParticipantKind::Redis)
    }

    fn participant_of(&self, kind: ParticipantKind) -> Option<&ParticipantConfig> {
        self.participants.iter().find(|p| p.kind == kind)
    }
}

/// One configured participant in [`PublicConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantConfig {
    /// What kind of participant it is.
    pub kind: ParticipantKind,
    /// Its name.
    pub name: ParticipantName,
    /// Where the coordinator dials it.
    #[serde(default)]
    pub url: String,
}

/// `GET /v1/participants`: one participant's connection state and in-doubt counts. (Fields in
/// alphabetical order: the wire order of the body this replaced.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantStatus {
    /// Transactions of this coordinator waiting for its ack.
    #[serde(default)]
    pub awaiting_ack: u64,
    /// Whether the coordinator's connection is up.
    #[serde(default)]
    pub connected: bool,
    /// While it is not: why the last dial failed or the last connection ended (a refused
    /// token, a TLS certificate the other side does not trust, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Of the reported prepared transactions, those of other coordinators (left alone).
    #[serde(default)]
    pub foreign_prepared: u64,
    /// What kind of participant it is.
    pub kind: ParticipantKind,
    /// The participant.
    pub name: ParticipantName,
    /// Prepared transactions it reported on its last in-doubt report (all coordinators).
    #[serde(default)]
    pub reported_prepared: u64,
    /// Where the coordinator dials it.
    #[serde(default)]
    pub url: String,
}

/// `POST /v1/faults`: one fault to inject (refused unless the coordinator runs with
/// `fault_injection = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultRequest {
    /// Lose the next protocol message to a participant.
    DropNext {
        /// The participant.
        participant: ParticipantName,
        /// Only the next message of this wire type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg_type: Option<MessageType>,
    },
    /// Delay the next protocol message to a participant.
    DelayNext {
        /// The participant.
        participant: ParticipantName,
        /// How long (at most a minute is applied).
        ms: u64,
        /// Only the next message of this wire type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg_type: Option<MessageType>,
    },
    /// Cut the connection to a participant until healed.
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

impl FaultRequest {
    /// The participant the fault is about (none for a coordinator crash).
    pub fn participant(&self) -> Option<&ParticipantName> {
        match self {
            FaultRequest::DropNext { participant, .. }
            | FaultRequest::DelayNext { participant, .. }
            | FaultRequest::Partition { participant }
            | FaultRequest::Heal { participant } => Some(participant),
            FaultRequest::Crash => None,
        }
    }
}

/// The answer to an accepted [`FaultRequest`]. (Fields in alphabetical order: the wire order
/// of the body this replaced.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultResponse {
    /// What was armed or done, as a sentence (also published as a `fault_injected` event).
    pub fault: String,
    /// Always true (a refused fault is an [`ApiError`]).
    pub ok: bool,
}

#[cfg(test)]
mod tests;
