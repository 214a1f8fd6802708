//! Read-only views of the core: transaction lookup, participant status, and the client's
//! answer ([`TransactionResponse`]), which is built here and nowhere else.

use super::retry::ClientTx;
use super::{Core, Stage};
use twopc_protocol::api::{HeuristicReport, Outcome, PhaseTimings, TransactionResponse};
use twopc_protocol::message::{Decision, NoClass};
use twopc_protocol::{ParticipantName, TxId};

/// Connection state and in-doubt count of one participant, for `/v1/participants`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParticipantStatus {
    /// The participant.
    pub name: ParticipantName,
    /// Whether the coordinator's connection is up.
    pub connected: bool,
    /// Prepared transactions it reported on its last InDoubtReport (all coordinators).
    pub reported_prepared: usize,
    /// Of those, transactions of other coordinators (left alone).
    pub foreign_prepared: usize,
    /// Transactions of this coordinator waiting for its ack.
    pub awaiting_ack: usize,
}

impl Core {
    /// The state of a transaction, for `GET /v1/transactions/{id}`: by the client's txid,
    /// the current (or final) attempt's state, with the number of attempts.
    pub fn lookup(&self, now_ms: u64, txid: &TxId) -> Option<TransactionResponse> {
        self.lookup_us(now_ms.saturating_mul(1000), txid)
    }

    /// [`Core::lookup`] on a microsecond clock.
    pub fn lookup_us(&self, now_us: u64, txid: &TxId) -> Option<TransactionResponse> {
        match self.clients.get(txid) {
            Some(ClientTx::Running(wire)) => {
                return self.txs.get(wire).map(|tx| tx.response(now_us));
            }
            Some(ClientTx::Backoff(b)) => return Some(b.response(txid, now_us)),
            None => {}
        }
        if let Some(tx) = self.txs.get(txid).filter(|t| !t.superseded && !t.presumed) {
            return Some(tx.response(now_us));
        }
        self.outcomes.get(txid).map(|o| o.response(txid))
    }

    /// Per-participant connection state, for `/v1/participants`.
    pub fn participant_status(&self, names: &[ParticipantName]) -> Vec<ParticipantStatus> {
        names
            .iter()
            .map(|n| {
                let (reported, foreign) = self.reported.get(n).copied().unwrap_or((0, 0));
                ParticipantStatus {
                    name: n.clone(),
                    connected: self.connected.contains(n),
                    reported_prepared: reported,
                    foreign_prepared: foreign,
                    awaiting_ack: self
                        .txs
                        .values()
                        .filter(|t| t.parts.get(n).is_some_and(|p| p.owes_ack))
                        .count(),
                }
            })
            .collect()
    }

    /// Nothing left to do for this coordinator id: no transaction running, waiting for an
    /// attempt or owed an ack, and every participant connected and holding, on its last
    /// InDoubtReport, nothing prepared for this id. A coordinator that took an id over hands
    /// it back when this holds (the caller refreshes the reports and asks twice).
    pub fn settled(&self, names: &[ParticipantName]) -> bool {
        self.active() == 0
            && names.iter().all(|n| {
                self.connected.contains(n)
                    && self
                        .reported
                        .get(n)
                        .is_some_and(|&(total, foreign)| total == foreign)
            })
    }

    /// Number of transactions not yet finished (attempts in flight or delivering, and
    /// transactions waiting for their next attempt).
    pub fn active(&self) -> usize {
        let waiting = self
            .clients
            .values()
            .filter(|c| matches!(c, ClientTx::Backoff(_)))
            .count();
        self.txs.len() + waiting
    }

    /// Transactions decided COMMIT whose delivery is not finished, with who still owes an ack.
    pub fn undelivered(&self) -> Vec<(TxId, Decision, Vec<ParticipantName>)> {
        // In txid order: `txs` is ordered.
        self.txs
            .iter()
            .filter_map(|(t, tx)| match tx.stage {
                Stage::Delivering(d) => Some((
                    t.clone(),
                    d,
                    tx.parts
                        .iter()
                        .filter(|(_, p)| p.owes_ack)
                        .map(|(n, _)| n.clone())
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// The client's answer: `decision` is `None` while undecided. A heuristic outcome also
/// names the decision and the mismatching acknowledgements; the plain ones do not need to.
pub(super) fn answer(
    txid: &TxId,
    decision: Option<Decision>,
    reason: Option<String>,
    abort_class: Option<NoClass>,
    timings: PhaseTimings,
    heuristics: Vec<HeuristicReport>,
) -> TransactionResponse {
    let outcome = match decision {
        Some(d) => Outcome::of(d, &heuristics),
        None => Outcome::InProgress,
    };
    TransactionResponse {
        submitted_by: None,
        id: txid.clone(),
        outcome,
        reason,
        abort_class: abort_class.filter(|_| decision == Some(Decision::Abort)),
        timings,
        // Callers that know better (a retried transaction) say how many.
        attempts: 1,
        decision: decision.filter(|_| !heuristics.is_empty()),
        heuristics,
        // The API names the coordinator; the core knows only its own id.
        coordinator: None,
    }
}
