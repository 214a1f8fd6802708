//! Concluded transactions, remembered for lookups and idempotent resubmission.
//!
//! Bounded: past `outcome_capacity` the oldest entry is forgotten. A forgotten transaction
//! answers lookups as unknown and DecisionRequests as abort, which is right for an aborted one
//! and harmless for a committed one (its END was logged, so every participant already has it).

use crate::log::LoggedOutcome;
use std::collections::{BTreeMap, VecDeque};
use twopc_protocol::api::{HeuristicReport, PhaseTimings, TransactionResponse};
use twopc_protocol::message::{Decision, NoClass};
use twopc_protocol::TxId;

/// A finished transaction remembered for lookups and idempotent resubmission.
/// A concluded transaction remembered for lookups and idempotent resubmission.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedOutcome {
    /// The decision.
    pub decision: Decision,
    /// Body hash.
    pub body_hash: u64,
    /// Why it aborted.
    pub reason: Option<String>,
    /// The class of the NO that aborted it (not logged: `None` after a restart).
    pub abort_class: Option<NoClass>,
    /// Phase timings (zero for outcomes recovered from the log).
    pub timings: PhaseTimings,
    /// Acknowledgements that did not match the decision.
    pub heuristics: Vec<HeuristicReport>,
}

impl RecordedOutcome {
    /// What a client is told about this concluded transaction.
    pub(super) fn response(&self, txid: &TxId) -> TransactionResponse {
        super::query::answer(
            txid,
            Some(self.decision),
            self.reason.clone(),
            self.abort_class,
            self.timings,
            self.heuristics.clone(),
        )
    }
}

impl From<&LoggedOutcome> for RecordedOutcome {
    /// An outcome read back from the log: its timings were not logged and read as zero.
    fn from(o: &LoggedOutcome) -> Self {
        RecordedOutcome {
            decision: o.decision,
            body_hash: o.body_hash,
            reason: o.reason.clone(),
            abort_class: None,
            timings: PhaseTimings::default(),
            heuristics: o.heuristics.clone(),
        }
    }
}

/// The bounded outcome index, oldest first.
#[derive(Debug, Clone)]
pub(super) struct OutcomeCache {
    outcomes: BTreeMap<TxId, RecordedOutcome>,
    /// Insertion order, for eviction.
    order: VecDeque<TxId>,
    capacity: usize,
}

impl OutcomeCache {
    pub(super) fn new(capacity: usize) -> Self {
        OutcomeCache {
            outcomes: BTreeMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub(super) fn get(&self, txid: &TxId) -> Option<&RecordedOutcome> {
        self.outcomes.get(txid)
    }

    pub(super) fn remember(&mut self, txid: TxId, o: RecordedOutcome) {
        if self.outcomes.insert(txid.clone(), o).is_none() {
            self.order.push_back(txid);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }
}
