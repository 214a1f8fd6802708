//! Time: prepare deadlines, phase-2 re-sends with exponential backoff, one-phase retries, and
//! the re-send of everything a participant owes when it reconnects.

use super::events::{self, send};
use super::{Core, Output, PartState, Stage};
use twopc_protocol::event::Phase;
use twopc_protocol::message::{Decision, Message};
use twopc_protocol::{Operations, ParticipantName, TxId};

impl Core {
    /// Counts one more attempt to `to` and schedules the one after it (exponential backoff).
    fn next_attempt(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        to: &ParticipantName,
    ) -> Option<&PartState> {
        let (base, max) = (self.cfg.retry_base_ms, self.cfg.retry_max_ms);
        let p = self.txs.get_mut(txid)?.parts.get_mut(to)?;
        let backoff = p.next_backoff(base, max);
        p.schedule(&mut self.timers, txid, now_ms, backoff);
        Some(p)
    }

    /// Sends the decision to one participant now and schedules the next re-send.
    pub(super) fn send_decision_now(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        to: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        let Some(tx) = self.txs.get(txid) else {
            return;
        };
        let Stage::Delivering(d) = tx.stage else {
            return;
        };
        if !tx.parts.get(to).is_some_and(|p| p.owes_ack) {
            return;
        }
        let msg = self.decision_message(txid, d, tx.reason.clone());
        self.next_attempt(now_ms, txid, to);
        send(out, txid, to, msg);
    }

    /// The Commit or Abort of `txid`, naming this coordinator at its epoch: every phase-2
    /// message the core sends is built here.
    pub(super) fn decision_message(
        &self,
        txid: &TxId,
        decision: Decision,
        reason: Option<String>,
    ) -> Message {
        let (txid, coordinator, epoch) = (
            txid.clone(),
            Some(self.cfg.coordinator.clone()),
            self.cfg.epoch,
        );
        match decision {
            Decision::Commit => Message::Commit {
                txid,
                coordinator,
                epoch,
            },
            Decision::Abort => Message::Abort {
                txid,
                reason,
                coordinator,
                epoch,
            },
        }
    }

    /// Sends the decision of `txid` to `from`, first making it a participant that owes an ack
    /// if the transaction does not know it yet (it reported the transaction prepared, or voted
    /// YES, after the decision: a presumed abort that another participant reported first).
    pub(super) fn deliver_to_newcomer(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        from: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        if let Some(tx) = self.txs.get_mut(txid) {
            tx.parts
                .entry(from.clone())
                .or_insert_with(|| PartState::recovered(now_ms));
        }
        self.send_decision_now(now_ms, txid, from, out);
    }

    pub(super) fn resend_all_to(
        &mut self,
        now_ms: u64,
        participant: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        let due: Vec<TxId> = self
            .txs
            .iter()
            .filter(|(_, tx)| tx.parts.get(participant).is_some_and(|p| p.owes_ack))
            .map(|(t, _)| t.clone())
            .collect();
        for txid in due {
            let stage = self.txs.get(&txid).map(|t| t.stage);
            match stage {
                Some(Stage::Delivering(_)) => {
                    self.metrics.retries += 1;
                    self.send_decision_now(now_ms, &txid, participant, out);
                }
                Some(Stage::OnePhase) => self.resend_one_phase(now_ms, &txid, participant, out),
                _ => {}
            }
        }
    }

    pub(super) fn resend_one_phase(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        to: &ParticipantName,
        out: &mut Vec<Output>,
    ) {
        let coordinator = self.cfg.coordinator.clone();
        let Some(p) = self.next_attempt(now_ms, txid, to) else {
            return;
        };
        let (attempt, ops) = (p.attempts, p.ops.clone());
        let tx = self.txs.get(txid);
        let priority = tx.map(|t| t.priority);
        let submitted_by = tx.and_then(|t| t.submitted_by.clone());
        self.metrics.retries += 1;
        out.push(events::retry(txid, to, attempt));
        let ops = ops.unwrap_or(Operations::Sql(Vec::new()));
        send(
            out,
            txid,
            to,
            Message::CommitOnePhase {
                txid: txid.clone(),
                coordinator,
                ops,
                priority,
                epoch: self.cfg.epoch,
                submitted_by,
            },
        );
    }

    /// A participant that is not connected is re-sent to when it reconnects; a slow timer
    /// keeps the transaction from being forgotten meanwhile.
    pub(super) fn park(&mut self, now_ms: u64, txid: &TxId, p: &ParticipantName) {
        let max = self.cfg.retry_max_ms;
        if let Some(ps) = self.txs.get_mut(txid).and_then(|t| t.parts.get_mut(p)) {
            ps.schedule(&mut self.timers, txid, now_ms, max);
        }
    }

    pub(super) fn tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        while let Some((due, txid)) = self.timers.first().cloned() {
            if due > now_ms {
                break;
            }
            self.timers.pop_first();
            // The key may be a client txid whose next attempt is due (its attempt 1, under the
            // same txid, may still be delivering its abort).
            self.start_due_retry(now_ms, &txid, out);
            let Some(tx) = self.txs.get(&txid) else {
                continue;
            };
            match tx.stage {
                Stage::Preparing if tx.prepare_deadline_ms <= now_ms => {
                    let silent: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.vote.is_none())
                        .map(|(n, _)| n.clone())
                        .collect();
                    self.metrics.timeouts += 1;
                    for p in &silent {
                        out.push(events::timeout(&txid, p, Phase::Prepare));
                    }
                    let names: Vec<String> = silent.iter().map(|p| p.to_string()).collect();
                    let why = format!(
                        "prepare timeout: no vote from {} within {} ms",
                        names.join(", "),
                        self.cfg.prepare_timeout_ms
                    );
                    self.decide_abort(now_ms, &txid, why, out);
                }
                Stage::Delivering(_) => {
                    if !tx.replied
                        && tx
                            .decided_us
                            .is_some_and(|d| d / 1000 + self.cfg.ack_wait_ms <= now_ms)
                    {
                        self.reply_waiters(&txid, out);
                    }
                    let due_parts: Vec<(ParticipantName, u32)> = self
                        .txs
                        .get(&txid)
                        .map(|tx| {
                            tx.parts
                                .iter()
                                .filter(|(_, p)| p.owes_ack && p.next_send_ms <= now_ms)
                                .map(|(n, p)| (n.clone(), p.attempts))
                                .collect()
                        })
                        .unwrap_or_default();
                    for (p, attempt) in due_parts {
                        if !self.connected.contains(&p) {
                            self.park(now_ms, &txid, &p);
                            continue;
                        }
                        self.metrics.retries += 1;
                        out.push(events::retry(&txid, &p, attempt + 1));
                        self.send_decision_now(now_ms, &txid, &p, out);
                    }
                }
                Stage::OnePhase => {
                    let due_parts: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.owes_ack && p.next_send_ms <= now_ms)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for p in due_parts {
                        if self.connected.contains(&p) {
                            out.push(events::timeout(&txid, &p, Phase::Commit));
                            self.resend_one_phase(now_ms, &txid, &p, out);
                        } else {
                            self.park(now_ms, &txid, &p);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
