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
    /// How many attempts ran (1 unless retried).
    pub attempts: u32,
    /// The wire txid of the attempt that decided, when it is not the txid this outcome is
    /// filed under: a retried transaction's outcome under its client txid. The decision is
    /// then that attempt's, not the client txid's own (attempt 1 aborted), which is what a
    /// participant asking about the client txid must hear.
    pub decided_by: Option<TxId>,
    /// The API client that submitted it (not logged: `None` after a restart).
    pub submitted_by: Option<String>,
}

impl RecordedOutcome {
    /// What a client is told about this concluded transaction.
    pub(super) fn response(&self, txid: &TxId) -> TransactionResponse {
        let mut r = super::query::answer(
            txid,
            Some(self.decision),
            self.reason.clone(),
            self.abort_class,
            self.timings,
            self.heuristics.clone(),
        );
        r.attempts = self.attempts;
        r.submitted_by = self.submitted_by.clone();
        r
    }

    /// The decision of the protocol transaction (wire txid) it is filed under.
    pub(super) fn own_decision(&self) -> Decision {
        match self.decided_by {
            Some(_) => Decision::Abort,
            None => self.decision,
        }
    }
}

impl RecordedOutcome {
    /// The outcome of attempt `txid` read back from the log, filed under `txid`, and, for a
    /// later attempt of a retried transaction, also under its client txid. Timings were not
    /// logged and read as zero.
    pub fn from_log(txid: &TxId, o: &LoggedOutcome) -> Vec<(TxId, RecordedOutcome)> {
        let own = RecordedOutcome {
            decision: o.decision,
            body_hash: o.body_hash,
            reason: o.reason.clone(),
            abort_class: None,
            timings: PhaseTimings::default(),
            heuristics: o.heuristics.clone(),
            attempts: twopc_protocol::attempt::attempt_number(txid),
            decided_by: None,
            submitted_by: None,
        };
        let mut v = vec![(txid.clone(), own.clone())];
        if let Some(client) = &o.client {
            v.push((
                client.clone(),
                RecordedOutcome {
                    decided_by: Some(txid.clone()),
                    ..own
                },
            ));
        }
        v
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
