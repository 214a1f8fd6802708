//! The live state the log's records describe: what a checkpoint stores and recovery returns.

use super::{LogRecord, LoggedOutcome, Lsn, PendingCommit, RecoveredState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use twopc_protocol::api::HeuristicReport;
use twopc_protocol::{Decision, ParticipantName, TxId};

/// What the log knows about one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TxEntry {
    /// LSN of its decision record: the order of the outcome window.
    pub lsn: Lsn,
    pub decision: Decision,
    pub body_hash: u64,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Kept only while a commit is pending (they are whom recovery must tell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<ParticipantName>,
    pub ended: bool,
    /// From the End record; absent in checkpoints written before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heuristics: Vec<HeuristicReport>,
    /// The client's txid of a later attempt (see [`LogRecord::Commit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<TxId>,
}

impl TxEntry {
    fn is_pending(&self) -> bool {
        self.decision == Decision::Commit && !self.ended
    }
}

/// A checkpoint: the whole live state, transactions in LSN order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The newest `at_ms` seen so far: the clock the outcome window's age is measured on.
    pub max_at_ms: u64,
    pub txs: Vec<(TxId, TxEntry)>,
}

/// Bounds of the outcome index kept across checkpoints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub max_outcomes: usize,
    pub max_age_ms: u64,
}

/// The state built by applying records in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LiveState {
    txs: HashMap<TxId, TxEntry>,
    max_at_ms: u64,
}

impl LiveState {
    /// Applies one record. The first decision for a txid wins; an End for an unknown txid (its
    /// Abort was lost, or it left the window) changes nothing.
    pub(crate) fn apply(&mut self, lsn: Lsn, record: &LogRecord) {
        match record {
            LogRecord::Commit {
                txid,
                participants,
                body_hash,
                at_ms,
                client,
            } => {
                self.max_at_ms = self.max_at_ms.max(*at_ms);
                self.txs.entry(txid.clone()).or_insert_with(|| TxEntry {
                    lsn,
                    decision: Decision::Commit,
                    body_hash: *body_hash,
                    at_ms: *at_ms,
                    reason: None,
                    participants: participants.clone(),
                    ended: false,
                    heuristics: Vec::new(),
                    client: client.clone(),
                });
            }
            LogRecord::Abort {
                txid,
                body_hash,
                reason,
                at_ms,
                client,
            } => {
                self.max_at_ms = self.max_at_ms.max(*at_ms);
                self.txs.entry(txid.clone()).or_insert_with(|| TxEntry {
                    lsn,
                    decision: Decision::Abort,
                    body_hash: *body_hash,
                    at_ms: *at_ms,
                    reason: reason.clone(),
                    participants: Vec::new(),
                    ended: false,
                    heuristics: Vec::new(),
                    client: client.clone(),
                });
            }
            LogRecord::End { txid, heuristics } => {
                if let Some(e) = self.txs.get_mut(txid) {
                    e.ended = true;
                    e.participants = Vec::new();
                    e.heuristics = heuristics.clone();
                }
            }
        }
    }

    /// Drops outcomes outside the window. Pending commits are always kept; of the rest, those
    /// older than `max_age_ms` (against the newest `at_ms`) go, and of what remains the newest
    /// `max_outcomes` by LSN stay.
    pub(crate) fn prune(&mut self, window: Window) {
        let horizon = self.max_at_ms.saturating_sub(window.max_age_ms);
        let mut done: Vec<(Lsn, &TxId)> = self
            .txs
            .iter()
            .filter(|(_, e)| !e.is_pending())
            .map(|(t, e)| (e.lsn, t))
            .collect();
        done.sort_unstable_by_key(|&(lsn, _)| std::cmp::Reverse(lsn));
        let mut kept = 0usize;
        let mut drop: Vec<TxId> = Vec::new();
        for (_, txid) in done {
            let e = &self.txs[txid];
            if kept < window.max_outcomes && e.at_ms >= horizon {
                kept += 1;
            } else {
                drop.push(txid.clone());
            }
        }
        for txid in drop {
            self.txs.remove(&txid);
        }
    }

    /// The state as a checkpoint.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        let mut txs: Vec<(TxId, TxEntry)> = self
            .txs
            .iter()
            .map(|(t, e)| (t.clone(), e.clone()))
            .collect();
        txs.sort_unstable_by_key(|(_, e)| e.lsn);
        Checkpoint {
            max_at_ms: self.max_at_ms,
            txs,
        }
    }

    /// The state a checkpoint describes.
    pub(crate) fn from_checkpoint(cp: Checkpoint) -> Self {
        LiveState {
            txs: cp.txs.into_iter().collect(),
            max_at_ms: cp.max_at_ms,
        }
    }

    /// Commits without End.
    pub(crate) fn pending_count(&self) -> usize {
        self.txs.values().filter(|e| e.is_pending()).count()
    }

    /// Transactions known.
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    /// The recovery view of the state.
    pub(crate) fn recovered(&self, next_lsn: Lsn) -> RecoveredState {
        let mut pending: Vec<PendingCommit> = self
            .txs
            .iter()
            .filter(|(_, e)| e.is_pending())
            .map(|(t, e)| PendingCommit {
                txid: t.clone(),
                participants: e.participants.clone(),
                body_hash: e.body_hash,
                at_ms: e.at_ms,
                lsn: e.lsn,
                client: e.client.clone(),
            })
            .collect();
        pending.sort_unstable_by_key(|p| p.lsn);
        let outcomes = self
            .txs
            .iter()
            .map(|(t, e)| {
                (
                    t.clone(),
                    LoggedOutcome {
                        decision: e.decision,
                        body_hash: e.body_hash,
                        ended: e.ended,
                        at_ms: e.at_ms,
                        reason: e.reason.clone(),
                        heuristics: e.heuristics.clone(),
                        client: e.client.clone(),
                    },
                )
            })
            .collect();
        RecoveredState {
            pending,
            outcomes,
            next_lsn,
            torn_tail: None,
        }
    }
}
