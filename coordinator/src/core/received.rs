//! What a participant's message does: votes and acks go to the transitions; decision requests
//! and in-doubt reports are answered here (the termination protocol, presumed abort).

use super::events::{self, send};
use super::{Core, Output, Stage, Tx};
use twopc_protocol::message::{Decision, DecisionStatus, Message};
use twopc_protocol::reason::bounded_opt;
use twopc_protocol::{ParticipantName, TxId};

/// Why a transaction the log does not know is aborted.
const PRESUMED: &str = "presumed abort: no COMMIT decision is logged";

impl Core {
    pub(super) fn received(
        &mut self,
        now_ms: u64,
        from: ParticipantName,
        msg: Message,
        out: &mut Vec<Output>,
    ) {
        out.push(events::message_received(&from, &msg));
        match msg {
            // A participant is a peer, not trusted to keep its reasons short.
            Message::Vote {
                txid,
                vote,
                reason,
                class,
            } => self.vote(now_ms, &from, txid, vote, bounded_opt(reason), class, out),
            Message::Ack {
                txid,
                decision,
                result,
                reason,
            } => self.ack(
                now_ms,
                &from,
                txid,
                decision,
                result,
                bounded_opt(reason),
                out,
            ),
            Message::DecisionRequest { txid, coordinator } => {
                out.push(events::decision_requested(&txid, &from));
                let status = match coordinator {
                    // Not ours: we know nothing of it, and "abort" would be a guess about
                    // another coordinator's decision. Its owner (or whoever took its id over)
                    // answers; the participant asks again.
                    Some(c) if c != self.cfg.coordinator => DecisionStatus::Pending,
                    _ => self.decision_status(&txid),
                };
                send(
                    out,
                    &txid,
                    &from,
                    Message::DecisionAnswer {
                        txid: txid.clone(),
                        status,
                    },
                );
                // Presumed abort also covers a participant we never finished with.
                if status == DecisionStatus::Abort && !self.txs.contains_key(&txid) {
                    self.metrics.presumed_aborts += 1;
                }
            }
            Message::InDoubtReport { prepared, .. } => {
                let total = prepared.len();
                let mut foreign = 0;
                // Everything this participant owes an ack for gets its decision again, whether
                // or not it is still prepared there (it may have finished before a crash).
                self.resend_all_to(now_ms, &from, out);
                for p in prepared {
                    if p.coordinator != self.cfg.coordinator {
                        foreign += 1;
                        continue;
                    }
                    let handled = self
                        .txs
                        .get(&p.txid)
                        .and_then(|t| t.parts.get(&from))
                        .is_some_and(|ps| ps.owes_ack);
                    if !handled {
                        self.resolve_reported(now_ms, &from, p.txid, out);
                    }
                }
                self.reported.insert(from.clone(), (total, foreign));
                out.push(events::participant_connected(&from, total as u32));
            }
            Message::Ping { nonce } => {
                out.push(Output::Send {
                    to: from,
                    msg: Message::Pong { nonce },
                });
            }
            // Pongs and error replies need no protocol action; they are in the event stream.
            _ => {}
        }
    }

    pub(super) fn decision_status(&self, txid: &TxId) -> DecisionStatus {
        match self.txs.get(txid).map(|t| t.stage) {
            Some(Stage::Delivering(Decision::Commit)) => DecisionStatus::Commit,
            Some(Stage::Delivering(Decision::Abort)) => DecisionStatus::Abort,
            Some(Stage::Preparing | Stage::Deciding | Stage::OnePhase) => DecisionStatus::Pending,
            None => match self.outcomes.get(txid).map(|o| o.own_decision()) {
                Some(Decision::Commit) => DecisionStatus::Commit,
                _ => DecisionStatus::Abort,
            },
        }
    }

    /// A participant reported `txid` prepared (on connect). Tell it the outcome, or leave it
    /// alone while the transaction is still running here.
    pub(super) fn resolve_reported(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        out: &mut Vec<Output>,
    ) {
        match self.decision_status(&txid) {
            DecisionStatus::Pending => {}
            DecisionStatus::Commit => {
                if !self.txs.contains_key(&txid) {
                    // Finished here, yet the participant still holds it: deliver again.
                    let msg = self.decision_message(&txid, Decision::Commit, None);
                    send(out, &txid, from, msg);
                } else {
                    self.send_decision_now(now_ms, &txid, from, out);
                }
            }
            DecisionStatus::Abort => {
                if self.txs.contains_key(&txid) {
                    // An abort reported by one more participant (a presumed one, whether or not
                    // a resubmission has attached to it since) owes it an ack too.
                    self.deliver_to_newcomer(now_ms, &txid, from, out);
                } else if self.outcomes.get(&txid).is_some() {
                    // Known aborted: a resubmission is answered from the outcome cache, so a
                    // single Abort is enough (the participant reports it again if it is lost).
                    let msg = self.decision_message(&txid, Decision::Abort, Some(PRESUMED.into()));
                    send(out, &txid, from, msg);
                } else {
                    // Unknown (lost before any decision): delivered until acknowledged, and a
                    // resubmission of the id attaches to it (a new run beside the stale
                    // prepared state could get YES from it, then see it rolled back).
                    self.metrics.presumed_aborts += 1;
                    let tx = Tx::presumed_abort(&txid, from, PRESUMED.into(), now_ms);
                    self.txs.insert(txid.clone(), tx);
                    self.send_decision_now(now_ms, &txid, from, out);
                }
            }
        }
    }
}
