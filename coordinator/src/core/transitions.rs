//! The transitions of a transaction: submission, votes, the decision, acknowledgements, and
//! its retirement into the outcome cache.

use super::events::{self, send};
use super::{
    ClientTx, Core, LazyRecord, Output, PartState, RecordedOutcome, RequestId, Stage, SubmitError,
    Tx,
};
use std::collections::BTreeMap;
use twopc_protocol::api::{HeuristicKind, HeuristicReport};
use twopc_protocol::message::{AckResult, Decision, DecisionStatus, NoClass, Vote};
use twopc_protocol::{Operations, ParticipantName, Priority, TxId};

/// One attempt to start: the client's transaction as submitted, and which attempt it is.
pub(super) struct Attempt {
    pub(super) client: TxId,
    pub(super) number: u32,
    pub(super) first_us: u64,
    pub(super) body_hash: u64,
    pub(super) participants: BTreeMap<ParticipantName, Operations>,
    pub(super) priority: Priority,
    pub(super) waiters: Vec<RequestId>,
    pub(super) submitted_by: Option<String>,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn submit(
        &mut self,
        now_ms: u64,
        req: RequestId,
        txid: TxId,
        body_hash: u64,
        participants: BTreeMap<ParticipantName, Operations>,
        (priority, submitted_by): (Priority, Option<String>),
        out: &mut Vec<Output>,
    ) {
        // A transaction being retried answers under its client txid, whichever attempt runs.
        let running = match self.clients.get_mut(&txid) {
            Some(ClientTx::Backoff(b)) => {
                if b.body_hash != body_hash {
                    out.push(Output::Reply {
                        req,
                        result: Err(SubmitError::IdConflict { txid }),
                    });
                } else {
                    b.waiters.push(req);
                }
                return;
            }
            Some(ClientTx::Running(wire)) => Some(wire.clone()),
            // An attempt that was retried (still delivering its abort) is no longer the
            // client's transaction: its outcome is in the cache.
            None if self.txs.get(&txid).is_some_and(|t| t.superseded) => None,
            None => Some(txid.clone()),
        };
        if let Some(tx) = running.and_then(|w| self.txs.get_mut(&w)) {
            if tx.presumed {
                // The id ran here before a restart that lost it undecided, and a participant
                // still holds it prepared: that run is aborted (presumed abort), and the
                // resubmission is told so once the record says it too (a further one waits
                // with it: nobody has been answered yet).
                tx.presumed = false;
                tx.replied = false;
                tx.body_hash = body_hash;
                tx.waiters.push(req);
                tx.abort_unlogged = true;
                tx.submitted_by = submitted_by;
                // From here on it is a client's transaction: begun (for the event stream and
                // the metrics) as it ends.
                self.metrics.started += 1;
                out.push(events::tx_begin(
                    &txid,
                    participants.keys(),
                    tx.attempt,
                    None,
                    tx.submitted_by.as_deref(),
                ));
                out.push(Output::ForceAbort {
                    txid: txid.clone(),
                    body_hash,
                    reason: tx.reason.clone(),
                    client: None,
                });
                return;
            }
            if tx.body_hash != body_hash {
                out.push(Output::Reply {
                    req,
                    result: Err(SubmitError::IdConflict { txid }),
                });
            } else if tx.replied {
                let resp = tx.response(self.clock_us);
                out.push(Output::Reply {
                    req,
                    result: Ok(resp),
                });
            } else {
                tx.waiters.push(req);
            }
            return;
        }
        if let Some(o) = self.outcomes.get(&txid) {
            let result = if o.body_hash == body_hash {
                Ok(o.response(&txid))
            } else {
                Err(SubmitError::IdConflict { txid })
            };
            out.push(Output::Reply { req, result });
            return;
        }
        self.metrics.started += 1;
        let attempt = Attempt {
            client: txid.clone(),
            number: 1,
            first_us: self.clock_us,
            body_hash,
            participants,
            priority,
            waiters: vec![req],
            submitted_by,
        };
        self.start_attempt(now_ms, txid, attempt, out);
    }

    /// Starts attempt `a` under the wire txid `txid`: Prepare (or CommitOnePhase) to every
    /// participant, or an abort at once when one is not connected.
    pub(super) fn start_attempt(
        &mut self,
        now_ms: u64,
        txid: TxId,
        a: Attempt,
        out: &mut Vec<Output>,
    ) {
        let client = (a.number > 1).then_some(&a.client);
        // A retried attempt is always prepared in order, whatever `ordered_prepare` says: its
        // predecessor lost a conflict, often a deadlock across the stores, and prepared all at
        // once it could take the same locks in the same crossed order again (it did: a retry
        // 3 ms later re-formed the cycle before the older transaction had its keys back). In
        // order it waits behind the older one in the first store instead.
        let retry = a.number > 1;
        out.push(events::tx_begin(
            &txid,
            a.participants.keys(),
            a.number,
            client,
            a.submitted_by.as_deref(),
        ));
        let one_phase = a.participants.len() == 1;
        let parts: BTreeMap<ParticipantName, PartState> = a
            .participants
            .into_iter()
            .map(|(p, ops)| (p, PartState::new(ops)))
            .collect();
        let mut tx = Tx::new(
            a.client,
            a.number,
            a.first_us,
            a.body_hash,
            parts,
            a.waiters,
            now_ms,
            self.cfg.prepare_timeout_ms,
            a.priority,
            a.submitted_by,
        );
        let missing: Vec<String> = tx
            .parts
            .keys()
            .filter(|p| !self.connected.contains(*p))
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() && !one_phase {
            // Nobody was asked anything: abort without sending a single message. (Not for a
            // one-phase transaction: its participant decides alone and this coordinator keeps
            // no record before it does, so the id may be a resubmission whose first attempt
            // committed there before a crash here. It waits for the participant instead: the
            // CommitOnePhase goes out when it connects, and its answer, `already_applied`
            // included, is the outcome.)
            let why = format!("participant(s) not connected: {}", missing.join(", "));
            for p in tx.parts.values_mut() {
                p.vote = Some(Vote::No);
            }
            self.txs.insert(txid.clone(), tx);
            self.decide_abort(now_ms, &txid, why, out);
            return;
        }
        // Asked before this one joins `txs`: idle means no other attempt in any stage, and no
        // client transaction waiting to run its next attempt (which would start in order,
        // possibly overtaking this one at the first store).
        let idle = self.txs.is_empty() && self.clients.is_empty() && self.cfg.parallel_when_idle;
        let ordered = ((self.cfg.ordered_prepare && !idle) || retry) && !one_phase;
        // Behind a lone attempt prepared all at once that still waits for votes, a two-phase
        // attempt is held: asked first, it could take a lock at the first store before the
        // lone one and then wait for the lone one's lock at the next (a cycle only giving way
        // breaks). Held, it asks nobody until `release_held`. A one-phase transaction locks at
        // one store only and waits for nothing elsewhere, so it closes no cycle.
        let held = !one_phase && self.parallel.is_some();
        if held {
            self.timers
                .insert((now_ms + self.cfg.parallel_hold_ms, txid.clone()));
        } else if self.cfg.ordered_prepare && !ordered && !one_phase {
            self.parallel = Some((txid.clone(), now_ms));
        }
        for (name, p) in tx.parts.iter_mut() {
            if held {
                break;
            }
            if one_phase {
                p.owes_ack = true;
                p.next_send_ms = now_ms + self.cfg.prepare_timeout_ms;
            }
            let msg = p.ask(
                (&self.cfg.coordinator, self.cfg.epoch),
                &txid,
                one_phase,
                self.cfg.prepare_timeout_ms,
                (tx.priority, tx.submitted_by.as_deref()),
            );
            send(out, &txid, name, msg);
            if ordered {
                // The others are asked one by one as the votes come in (`vote`).
                break;
            }
        }
        let due = if one_phase {
            now_ms + self.cfg.prepare_timeout_ms
        } else {
            tx.prepare_deadline_ms
        };
        self.timers.insert((due, txid.clone()));
        self.txs.insert(txid, tx);
    }

    /// Ends the hold behind the lone attempt prepared all at once (`parallel_when_idle`) once
    /// it has every vote (or was decided, or is gone), or `parallel_hold_ms` after it started:
    /// every held attempt then asks its first participant, oldest priority first, and the
    /// rest in order as the votes come in. Run after every input.
    pub(super) fn release_held(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let Some((lone, since)) = &self.parallel else {
            return;
        };
        let voting = self.txs.get(lone).is_some_and(|t| {
            t.stage == Stage::Preparing && t.parts.values().any(|p| p.vote.is_none())
        });
        if voting && now_ms < since + self.cfg.parallel_hold_ms {
            return;
        }
        self.parallel = None;
        let mut held: Vec<(Priority, TxId)> = self
            .txs
            .iter()
            .filter(|(_, t)| t.held())
            .map(|(id, t)| (t.priority, id.clone()))
            .collect();
        held.sort();
        for (_, txid) in held {
            let Some(tx) = self.txs.get_mut(&txid) else {
                continue;
            };
            let left = tx.prepare_deadline_ms.saturating_sub(now_ms).max(1);
            let (priority, submitted_by) = (tx.priority, tx.submitted_by.clone());
            if let Some((name, p)) = tx.parts.iter_mut().next() {
                let msg = p.ask(
                    (&self.cfg.coordinator, self.cfg.epoch),
                    &txid,
                    false,
                    left,
                    (priority, submitted_by.as_deref()),
                );
                let name = name.clone();
                send(out, &txid, &name, msg);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn vote(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        vote: Vote,
        reason: Option<String>,
        class: Option<NoClass>,
        out: &mut Vec<Output>,
    ) {
        // A NO without a class (an older participant) cannot be known to be retryable.
        let class = (vote == Vote::No).then(|| class.unwrap_or(NoClass::Final));
        out.push(events::vote(&txid, from, vote, reason.clone(), class));
        let Some(tx) = self.txs.get_mut(&txid) else {
            // A vote for a transaction this coordinator has finished or never knew: if it
            // prepared, it must not stay prepared (presumed abort unless COMMIT was logged).
            if vote == Vote::Yes {
                let msg = match self.decision_status(&txid) {
                    DecisionStatus::Commit => self.decision_message(&txid, Decision::Commit, None),
                    _ => self.decision_message(&txid, Decision::Abort, Some("late vote".into())),
                };
                send(out, &txid, from, msg);
            }
            return;
        };
        let Some(part) = tx.parts.get_mut(from) else {
            // A YES from a participant this abort does not know of yet (a presumed abort that
            // only another participant reported): it must not stay prepared either.
            if vote == Vote::Yes && tx.stage == Stage::Delivering(Decision::Abort) {
                self.deliver_to_newcomer(now_ms, &txid, from, out);
            }
            return;
        };
        match tx.stage {
            Stage::Preparing => {
                if part.vote.is_some() {
                    return; // duplicate vote
                }
                part.vote = Some(vote);
                if vote == Vote::No {
                    tx.abort_class = class;
                    self.metrics.observe_no(class.unwrap_or(NoClass::Final));
                    let why = format!(
                        "participant {from} voted no: {}",
                        reason.unwrap_or_else(|| "no reason given".into())
                    );
                    self.decide_abort(now_ms, &txid, why, out);
                    return;
                }
                if let Some((next, p)) = tx.parts.iter_mut().find(|(_, p)| !p.asked) {
                    // Ordered prepare: the next participant's turn, with what is left of the
                    // prepare timeout.
                    let left = tx.prepare_deadline_ms.saturating_sub(now_ms).max(1);
                    let msg = p.ask(
                        (&self.cfg.coordinator, self.cfg.epoch),
                        &txid,
                        false,
                        left,
                        (tx.priority, tx.submitted_by.as_deref()),
                    );
                    send(out, &txid, next, msg);
                    return;
                }
                if tx.parts.values().all(|p| p.vote.is_some()) {
                    tx.prepared_us = Some(self.clock_us);
                    let yes: Vec<ParticipantName> = tx
                        .parts
                        .iter()
                        .filter(|(_, p)| p.vote == Some(Vote::Yes))
                        .map(|(n, _)| n.clone())
                        .collect();
                    if yes.is_empty() {
                        // Everyone read-only: nothing to decide durably, nothing to deliver.
                        // The stage says "decided" so that retire() answers the client now
                        // (it only answers decided transactions; left at Preparing, the client
                        // heard nothing until its own timeout).
                        self.committed_without_log(&txid, "all read-only", out);
                    } else {
                        tx.stage = Stage::Deciding;
                        out.push(Output::ForceCommit {
                            txid: txid.clone(),
                            participants: yes,
                            body_hash: tx.body_hash,
                            client: (tx.client != txid).then(|| tx.client.clone()),
                        });
                    }
                }
            }
            Stage::Delivering(Decision::Abort) if vote == Vote::Yes => {
                // Prepared after we had already decided abort: roll it back too.
                part.owes_ack = true;
                part.vote = Some(vote);
                self.send_decision_now(now_ms, &txid, from, out);
            }
            _ => {}
        }
    }

    pub(super) fn commit_durable(&mut self, now_ms: u64, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if tx.stage != Stage::Deciding {
            return;
        }
        tx.stage = Stage::Delivering(Decision::Commit);
        tx.decided_us = Some(self.clock_us);
        out.push(events::decision(txid, Decision::Commit, None));
        let names: Vec<ParticipantName> = tx
            .parts
            .iter_mut()
            .filter(|(_, p)| p.vote == Some(Vote::Yes))
            .map(|(n, p)| {
                p.owes_ack = true;
                n.clone()
            })
            .collect();
        for n in names {
            self.send_decision_now(now_ms, txid, &n, out);
        }
        // Answer the client after the acks or after ack_wait_ms, whichever comes first.
        self.timers
            .insert((now_ms + self.cfg.ack_wait_ms, txid.clone()));
    }

    pub(super) fn decide_abort(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        why: String,
        out: &mut Vec<Output>,
    ) {
        // Abort reasons reach the client, the events and the log; some embed a participant's.
        let why = twopc_protocol::reason::bounded(why);
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if matches!(tx.stage, Stage::Delivering(_)) {
            return;
        }
        tx.stage = Stage::Delivering(Decision::Abort);
        tx.prepared_us.get_or_insert(self.clock_us);
        tx.decided_us = Some(self.clock_us);
        tx.reason = Some(why.clone());
        out.push(events::decision(txid, Decision::Abort, Some(why)));
        if !self.retry_instead(now_ms, txid, out) {
            // Only the client's outcome is logged: an attempt that is retried is not one, and
            // presumed abort answers for it. The client's is forced before it is answered.
            let Some(tx) = self.txs.get_mut(txid) else {
                return;
            };
            tx.abort_unlogged = true;
            out.push(Output::ForceAbort {
                txid: txid.clone(),
                body_hash: tx.body_hash,
                reason: tx.reason.clone(),
                client: (tx.client != *txid).then(|| tx.client.clone()),
            });
        }
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        // Everyone who may hold it prepared gets an Abort: YES voters and those who have not
        // voted (their Prepare may still be in flight). NO and read-only voters hold nothing.
        // (A participant never asked, in an ordered prepare, holds nothing either.)
        let names: Vec<ParticipantName> = tx
            .parts
            .iter_mut()
            .filter(|(_, p)| p.asked && matches!(p.vote, None | Some(Vote::Yes)))
            .map(|(n, p)| {
                p.owes_ack = true;
                n.clone()
            })
            .collect();
        // Presumed abort: the participants need no record, so the Aborts go out now (the
        // client hears once the record is durable; at once for a retried attempt, which
        // answers nobody).
        self.reply_waiters(txid, out);
        for n in names {
            self.send_decision_now(now_ms, txid, &n, out);
        }
        self.maybe_end(txid, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn ack(
        &mut self,
        now_ms: u64,
        from: &ParticipantName,
        txid: TxId,
        decision: Decision,
        result: AckResult,
        reason: Option<String>,
        out: &mut Vec<Output>,
    ) {
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        match tx.stage {
            Stage::OnePhase => {
                let Some(p) = tx.parts.get_mut(from) else {
                    return;
                };
                p.owes_ack = false;
                tx.prepared_us = Some(self.clock_us);
                tx.decided_us = Some(self.clock_us);
                if decision == Decision::Commit && result != AckResult::NotPrepared {
                    out.push(events::ack(&txid, from, decision));
                    out.push(Output::LogLazy(LazyRecord::OnePhaseCommitted {
                        txid: txid.clone(),
                        participant: from.clone(),
                        body_hash: tx.body_hash,
                    }));
                    self.committed_without_log(&txid, "one-phase commit", out);
                } else {
                    let why = format!(
                        "participant {from} aborted the one-phase commit: {}",
                        reason.unwrap_or_else(|| format!("{result:?}"))
                    );
                    for p in tx.parts.values_mut() {
                        p.vote = Some(Vote::No);
                    }
                    self.decide_abort(now_ms, &txid, why, out);
                }
            }
            Stage::Delivering(d) if d == decision => {
                let Some(p) = tx.parts.get_mut(from) else {
                    return;
                };
                if !p.owes_ack {
                    return;
                }
                p.owes_ack = false;
                out.push(events::ack(&txid, from, decision));
                // Anything but "applied" (or "already applied", a repeat) means the
                // participant's state does not match the decision: a heuristic hazard an
                // operator must look at. Counted, published, and in the client's outcome;
                // never a silent success. (`not_prepared` after an ABORT is ordinary presumed
                // abort: the participant holds nothing, as decided.)
                let hazard = match (d, result) {
                    (_, AckResult::Conflict) => Some(HeuristicKind::Conflict),
                    (Decision::Commit, AckResult::NotPrepared) => Some(HeuristicKind::NotPrepared),
                    _ => None,
                };
                if let Some(kind) = hazard {
                    self.metrics.heuristic_hazards += 1;
                    tx.heuristics.push(HeuristicReport {
                        participant: from.clone(),
                        result: kind,
                    });
                    out.push(events::heuristic(&txid, from, decision, kind));
                }
                self.maybe_end(&txid, out);
            }
            _ => {}
        }
    }

    pub(super) fn maybe_end(&mut self, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get(txid) else { return };
        let Stage::Delivering(d) = tx.stage else {
            return;
        };
        if tx.parts.values().any(|p| p.owes_ack) || tx.abort_unlogged {
            return;
        }
        // An abort needs no END (presumed abort), unless it carries heuristics to keep.
        if d == Decision::Commit || !tx.heuristics.is_empty() {
            out.push(Output::LogLazy(LazyRecord::End {
                txid: txid.clone(),
                heuristics: tx.heuristics.clone(),
            }));
        }
        self.retire(txid, d, out);
    }

    /// Committed with nothing for this coordinator to force or deliver (every vote read-only,
    /// or the one participant committed by itself): decided and over at once.
    fn committed_without_log(&mut self, txid: &TxId, why: &str, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        tx.decided_us = Some(self.clock_us);
        tx.stage = Stage::Delivering(Decision::Commit);
        out.push(events::decision(txid, Decision::Commit, Some(why.into())));
        self.retire(txid, Decision::Commit, out);
    }

    /// The transaction is over: answer waiters, move its outcome to the outcome cache, forget
    /// its state.
    pub(super) fn retire(&mut self, txid: &TxId, d: Decision, out: &mut Vec<Output>) {
        self.reply_waiters(txid, out);
        let Some(tx) = self.txs.remove(txid) else {
            return;
        };
        if tx.presumed {
            return; // nobody's transaction: nothing to remember or count
        }
        let timings = tx.timings(self.clock_us);
        out.push(events::tx_end(txid, d, &timings, &tx));
        if tx.superseded {
            return;
        }
        self.metrics.observe_end(d, &timings);
        if d == Decision::Commit {
            self.metrics.observe_attempts(tx.attempt);
        }
        let outcome = RecordedOutcome {
            decision: d,
            body_hash: tx.body_hash,
            reason: tx.reason,
            abort_class: tx.abort_class,
            timings,
            heuristics: tx.heuristics,
            attempts: tx.attempt,
            decided_by: None,
            submitted_by: tx.submitted_by,
        };
        if tx.client != *txid {
            self.clients.remove(&tx.client);
            // A participant that asks about this attempt must hear its decision.
            if d == Decision::Commit {
                self.outcomes.remember(txid.clone(), outcome.clone());
            }
            let for_client = RecordedOutcome {
                decided_by: Some(txid.clone()),
                ..outcome
            };
            self.outcomes.remember(tx.client, for_client);
        } else {
            self.outcomes.remember(txid.clone(), outcome);
        }
    }

    pub(super) fn reply_waiters(&mut self, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if !matches!(tx.stage, Stage::Delivering(_)) {
            return;
        }
        if tx.superseded {
            return; // its waiters moved on to the next attempt
        }
        if tx.abort_unlogged {
            return; // answered when the ABORT record is durable
        }
        tx.replied = true;
        let resp = tx.response(self.clock_us);
        for req in tx.waiters.drain(..) {
            out.push(Output::Reply {
                req,
                result: Ok(resp.clone()),
            });
        }
    }

    pub(super) fn disconnected(
        &mut self,
        now_ms: u64,
        participant: ParticipantName,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        self.connected.remove(&participant);
        out.push(events::participant_disconnected(&participant, &reason));
        // Fail fast: a transaction still collecting votes from it cannot commit soon.
        let victims: Vec<TxId> = self
            .txs
            .iter()
            .filter(|(_, tx)| {
                matches!(tx.stage, Stage::Preparing)
                    && tx.parts.get(&participant).is_some_and(|p| p.vote.is_none())
            })
            .map(|(t, _)| t.clone())
            .collect();
        for txid in victims {
            let why = format!("participant {participant} disconnected before voting ({reason})");
            self.decide_abort(now_ms, &txid, why, out);
        }
    }

    pub(super) fn commit_failed(&mut self, txid: &TxId, error: &str, out: &mut Vec<Output>) {
        if self
            .txs
            .get(txid)
            .is_some_and(|t| t.stage == Stage::Deciding)
        {
            // Not an abort: the COMMIT record may be on disk after all, and the next
            // process would then commit what this one had aborted.
            out.push(Output::Halt {
                reason: format!(
                    "the COMMIT record of {txid} may or may not be durable ({error}); halting so that recovery decides from the log"
                ),
            });
        }
    }

    /// The client's ABORT record is durable: answer it, and retire the transaction if every
    /// Abort was acknowledged meanwhile.
    pub(super) fn abort_durable(&mut self, txid: &TxId, out: &mut Vec<Output>) {
        let Some(tx) = self.txs.get_mut(txid) else {
            return;
        };
        if !tx.abort_unlogged {
            return;
        }
        tx.abort_unlogged = false;
        self.reply_waiters(txid, out);
        self.maybe_end(txid, out);
    }

    pub(super) fn abort_failed(&mut self, txid: &TxId, error: &str, out: &mut Vec<Output>) {
        if self.txs.get(txid).is_some_and(|t| t.abort_unlogged) {
            // The Aborts are out and stay right (presumed abort); what cannot be given is an
            // answer the log keeps. The next process answers the id from what the log holds.
            out.push(Output::Halt {
                reason: format!(
                    "the ABORT record of {txid} could not be made durable ({error}); halting before the client is told"
                ),
            });
        }
    }

    pub(super) fn unsendable(
        &mut self,
        now_ms: u64,
        to: ParticipantName,
        txid: TxId,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        let unvoted = tx.parts.get(&to).is_some_and(|p| p.vote.is_none());
        if matches!(tx.stage, Stage::Preparing | Stage::OnePhase) && unvoted {
            // It never received the message, so it holds nothing: like a NO vote (and
            // a one-phase participant owes no ack for what it never got).
            if let Some(p) = tx.parts.get_mut(&to) {
                p.vote = Some(Vote::No);
                p.owes_ack = false;
            }
            let why = format!("the message to participant {to} could not be sent: {reason}");
            self.decide_abort(now_ms, &txid, why, out);
        }
    }
}
