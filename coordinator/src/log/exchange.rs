//! What the protocol core and the decision log hand each other: the one vocabulary of the
//! seam between [`crate::core`], [`crate::driver`] and this module.
//!
//! The core decides *what* must be recorded ([`crate::core::Output::ForceCommit`],
//! [`crate::core::Output::ForceAbort`] and [`LazyRecord`]) but knows no wall clock and no record format; the log stores
//! [`LogRecord`]s. [`LazyRecord::into_records`] is the one translation between the two. At
//! start-up the log's [`RecoveredState`] gives back, through [`RecoveredState::unfinished`] and
//! [`RecoveredState::concluded`], exactly what [`crate::core::Core::recover`] takes.

use super::{LogRecord, LoggedOutcome, RecoveredState};
use twopc_protocol::api::HeuristicReport;
use twopc_protocol::{Decision, ParticipantName, TxId};

/// Records the core asks for without an fsync of their own.
#[derive(Debug, Clone, PartialEq)]
pub enum LazyRecord {
    /// A one-phase commit's outcome, as reported by its single participant.
    OnePhaseCommitted {
        /// The transaction.
        txid: TxId,
        /// The participant.
        participant: ParticipantName,
        /// Body hash.
        body_hash: u64,
    },
    /// Every participant acknowledged the decision.
    End {
        /// The transaction.
        txid: TxId,
        /// Acknowledgements that did not match the decision (kept so the heuristic outcome
        /// survives a restart).
        heuristics: Vec<HeuristicReport>,
    },
}

impl LazyRecord {
    /// The log records that say this, stamped with the wall-clock time `at_ms`.
    pub fn into_records(self, at_ms: u64) -> Vec<LogRecord> {
        match self {
            LazyRecord::End { txid, heuristics } => vec![LogRecord::End { txid, heuristics }],
            // The log has no one-phase record, and needs none: a Commit alone would make
            // recovery drive a commit that the participant already decided by itself, so the
            // End goes with it. Both are lazy (the participant, not this log, holds the
            // decision); they exist only so the outcome can be looked up and the id stays
            // idempotent after a restart.
            LazyRecord::OnePhaseCommitted {
                txid,
                participant,
                body_hash,
            } => vec![
                LogRecord::Commit {
                    txid: txid.clone(),
                    participants: vec![participant],
                    body_hash,
                    at_ms,
                    client: None,
                },
                LogRecord::End {
                    txid,
                    heuristics: Vec::new(),
                },
            ],
        }
    }
}

/// A logged COMMIT without END, fed back to the core at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredCommit {
    /// The transaction.
    pub txid: TxId,
    /// Participants that still owe an ack.
    pub participants: Vec<ParticipantName>,
    /// Body hash.
    pub body_hash: u64,
    /// The client's txid, when `txid` is a later attempt of a retried transaction.
    pub client: Option<TxId>,
}

impl RecoveredState {
    /// Every COMMIT without END, in LSN order: the core drives each to completion.
    pub fn unfinished(&self) -> Vec<RecoveredCommit> {
        self.pending
            .iter()
            .map(|p| RecoveredCommit {
                txid: p.txid.clone(),
                participants: p.participants.clone(),
                body_hash: p.body_hash,
                client: p.client.clone(),
            })
            .collect()
    }

    /// The transactions that need no more work: ended, or aborted (an abort needs no END:
    /// presumed abort). Oldest decision first, so that a bounded outcome cache keeps the
    /// newest. A later attempt's outcome is listed under its own (attempt) txid; the core also
    /// files it under its `client` txid.
    pub fn concluded(&self) -> Vec<(&TxId, &LoggedOutcome)> {
        let mut v: Vec<_> = self
            .outcomes
            .iter()
            .filter(|(_, o)| o.ended || o.decision == Decision::Abort)
            .collect();
        v.sort_by(|a, b| (a.1.at_ms, a.0).cmp(&(b.1.at_ms, b.0)));
        v
    }
}
