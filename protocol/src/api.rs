//! The coordinator's client HTTP API bodies (`/v1/transactions`), shared with the CLI, the
//! tests and the web app.

use crate::ids::{ParticipantName, TxId};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed on every participant (or durably decided and being delivered).
    Committed,
    /// Aborted everywhere.
    Aborted,
    /// Still running.
    InProgress,
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
