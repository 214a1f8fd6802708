//! The coordinator's client HTTP API bodies (`/v1/transactions`), shared with the CLI, the
//! tests and the web app.
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

use crate::ids::{ParticipantName, TxId};
use crate::message::Decision;
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

/// Milliseconds spent per phase.
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
    /// Per-phase timings.
    pub timings: PhaseTimings,
    /// For a heuristic outcome: what the coordinator decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// For a heuristic outcome: each participant whose acknowledgement did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heuristics: Vec<HeuristicReport>,
}

/// Any 4xx/5xx answer of the coordinator's HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable machine-readable code (`malformed_json`, `unknown_participant`, ...).
    pub error: String,
    /// What is wrong, for a human.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_decodes() {
        let r: TransactionRequest = serde_json::from_str(
            r#"{"id":"t1","participants":{"bank":{"sql":[{"query":"select 1"}]},"ledger":{"redis":[]}}}"#,
        )
        .unwrap();
        assert_eq!(r.participants.len(), 2);
        let bad = serde_json::from_str::<TransactionRequest>(
            r#"{"participants":{"bad name":{"sql":[]}}}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("participant name"), "{bad}");
    }
}
