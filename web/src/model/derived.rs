//! The derived protocol view: a fold over the event log into per-transaction views, node
//! connectivity and counts, and what is held prepared.

use super::*;

/// What the app knows about a node regardless of transactions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStatus {
    /// Connection state as last reported by an event (None: no event yet).
    pub connected: Option<bool>,
    /// In-doubt count reported on its last connection.
    pub reported_in_doubt: u32,
    /// Why it last disconnected.
    pub last_disconnect: Option<String>,
}

/// Counters over the folded events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Transactions seen.
    pub txs: u64,
    /// Finished committed.
    pub committed: u64,
    /// Finished aborted.
    pub aborted: u64,
    /// Finished with a heuristic outcome (counted here, not as committed or aborted).
    pub heuristic: u64,
    /// Messages drawn as arrows (sent + received).
    pub messages: u64,
    /// Coordinator starts seen.
    pub coordinator_starts: u64,
    /// Other coordinators' ids this coordinator took over.
    pub takeovers: u64,
}

/// A fold over the event log.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub(super) txs: HashMap<String, TxView>,
    pub(super) order: VecDeque<String>,
    /// Per-node status (participants).
    pub nodes: BTreeMap<String, NodeStatus>,
    /// The coordinator run of the latest event.
    pub run: Option<String>,
    /// Counters.
    pub counts: Counts,
    /// Recently injected faults (at_ms, description), newest last.
    pub faults: VecDeque<(u64, String)>,
    /// Transactions evicted from this fold (beyond [`MAX_TXS`]).
    pub evicted_txs: u64,
    /// Transactions with a log record written and no fsync seen since.
    pub(super) pending_fsync: Vec<String>,
    /// Absolute index one past the last event folded.
    pub position: u64,
    /// Time of the last event folded.
    pub last_at_ms: u64,
    pub(super) max_txs: usize,
    /// Wire txid of a later attempt → the client txid whose view it belongs to.
    pub(super) attempt_of: HashMap<String, String>,
}

/// The key (and shown id) of the transaction an event belongs to: its txid, or for an event a
/// takeover instance forwarded, the txid and the id it belongs to (`t5 · c2`; the separator is
/// not ASCII, which no txid contains, so the key never meets one of this coordinator's).
pub fn tx_key(ev: &Event) -> Option<String> {
    let txid = ev.txid.as_ref()?.as_str();
    Some(match &ev.on_behalf_of {
        Some(c) => format!("{txid} \u{b7} {c}"),
        None => txid.to_string(),
    })
}

impl Derived {
    /// An empty fold starting at absolute index `position`.
    pub fn starting_at(position: u64) -> Self {
        Derived {
            position,
            max_txs: MAX_TXS,
            ..Default::default()
        }
    }

    /// Folds the retained log up to `to` (exclusive).
    pub fn fold(log: &EventLog, to: u64) -> Self {
        let mut d = Derived::starting_at(log.base());
        for (i, e) in log.range(log.base(), to) {
            d.apply(i, e);
        }
        d
    }

    /// A transaction by id.
    pub fn tx(&self, id: &str) -> Option<&TxView> {
        self.txs.get(id)
    }

    /// Transactions, oldest first.
    pub fn txs(&self) -> impl DoubleEndedIterator<Item = &TxView> {
        self.order.iter().filter_map(|id| self.txs.get(id))
    }

    /// Number of transactions retained.
    pub fn tx_count(&self) -> usize {
        self.order.len()
    }

    /// Transactions neither ended nor aborted-and-acked.
    pub fn in_flight(&self) -> usize {
        self.txs.values().filter(|t| !t.ended).count()
    }

    pub(super) fn tx_mut(&mut self, id: &str, index: u64, at_ms: u64) -> &mut TxView {
        if !self.txs.contains_key(id) {
            self.order.push_back(id.to_string());
            self.txs
                .insert(id.to_string(), TxView::new(id, index, at_ms));
            self.counts.txs += 1;
            let cap = if self.max_txs == 0 {
                MAX_TXS
            } else {
                self.max_txs
            };
            while self.order.len() > cap {
                if let Some(old) = self.order.pop_front() {
                    self.txs.remove(&old);
                    self.evicted_txs += 1;
                }
            }
        }
        let t = self.txs.get_mut(id).expect("inserted above");
        t.last_index = index;
        t.last_at_ms = t.last_at_ms.max(at_ms);
        t
    }

    /// Folds one event (its absolute index `index`).
    pub fn apply(&mut self, index: u64, ev: &Event) {
        self.position = index + 1;
        self.last_at_ms = ev.at_ms;
        self.observe_run(&ev.run);
        let at = ev.at_ms;
        let txid = tx_key(ev);
        match &ev.kind {
            EventKind::CoordinatorStarted { .. } => {
                self.counts.coordinator_starts += 1;
            }
            EventKind::Takeover { .. } => {
                self.counts.takeovers += 1;
            }
            EventKind::ParticipantConnected {
                participant,
                in_doubt,
            } => {
                let n = self.nodes.entry(participant.clone()).or_default();
                n.connected = Some(true);
                n.reported_in_doubt = *in_doubt;
            }
            EventKind::ParticipantDisconnected {
                participant,
                reason,
            } => {
                let n = self.nodes.entry(participant.clone()).or_default();
                n.connected = Some(false);
                n.last_disconnect = Some(reason.clone());
                for t in self.txs.values_mut().filter(|t| !t.ended) {
                    if let Some(p) = t.parts.get_mut(participant) {
                        if p.badge.badge == Badge::Prepared {
                            p.badge = NodeBadge::new(Badge::InDoubt, "prepared, cut off");
                        }
                    }
                }
            }
            EventKind::FaultInjected { fault } => {
                self.faults.push_back((at, fault.clone()));
                while self.faults.len() > MAX_FAULTS {
                    self.faults.pop_front();
                }
            }
            EventKind::LogFsync { .. } => {
                for id in std::mem::take(&mut self.pending_fsync) {
                    if let Some(t) = self.txs.get_mut(&id).filter(|t| t.log_pending) {
                        t.log_pending = false;
                        if t.log.badge == Badge::Working {
                            t.log = NodeBadge::new(Badge::Committed, "COMMIT durable");
                        }
                    }
                }
            }
            _ => {}
        }
        let Some(wire) = txid else { return };
        if let EventKind::TxBegin {
            client: Some(client),
            ..
        } = &ev.kind
        {
            self.attempt_of
                .insert(wire.clone(), client.as_str().to_string());
        }
        let id = self.attempt_of.get(&wire).cloned().unwrap_or(wire.clone());
        let t = self.tx_mut(&id, index, at);
        if let Some(c) = &ev.on_behalf_of {
            t.taken_over_from = Some(c.to_string());
        }
        let begins_attempt = matches!(ev.kind, EventKind::TxBegin { .. });
        if !t.is_current(&wire) && !begins_attempt {
            // An earlier attempt winding down (its abort's acks): the badges follow the current
            // attempt; only the earlier one's own end is noted.
            if let EventKind::TxEnd { decision, .. } = &ev.kind {
                if let Some(a) = t.attempt_mut(&wire) {
                    a.decision = Some(*decision);
                }
            }
            return;
        }
        let mut finished: Option<(Decision, bool)> = None;
        let mut pending = false;
        match &ev.kind {
            EventKind::TxBegin {
                participants,
                attempt,
                ..
            } => {
                if *attempt > 1 {
                    if t.attempts.is_empty() {
                        t.attempts.push(AttemptView {
                            number: 1,
                            txid: t.id.clone(),
                            decision: Some(Decision::Abort),
                            retried: true,
                            reason: t.reason.clone(),
                        });
                    }
                    t.attempts.push(AttemptView {
                        number: *attempt,
                        txid: wire.clone(),
                        decision: None,
                        retried: false,
                        reason: None,
                    });
                    // A fresh attempt: every node starts over.
                    t.decision = None;
                    t.reason = None;
                    t.ended = false;
                    t.coordinator = NodeBadge::new(Badge::Working, format!("attempt {attempt}"));
                    t.log = NodeBadge::idle();
                    for p in t.parts.values_mut() {
                        *p = PartView {
                            badge: NodeBadge::idle(),
                            prepared_at_ms: None,
                        };
                    }
                    t.client =
                        NodeBadge::new(Badge::Working, format!("waiting (attempt {attempt})"));
                } else {
                    t.begin_ms = at;
                    t.client = NodeBadge::new(Badge::Working, "waiting");
                }
                for p in participants {
                    t.part(p);
                }
            }
            EventKind::RetryScheduled {
                next_attempt,
                backoff_ms,
                reason,
                ..
            } => {
                if let Some(a) = t.attempts.last_mut() {
                    a.decision = Some(Decision::Abort);
                    a.retried = true;
                    a.reason = Some(reason.clone());
                }
                t.reason = Some(reason.clone());
                // Not the client's outcome: another attempt follows.
                t.decision = None;
                t.coordinator = NodeBadge::new(
                    Badge::Working,
                    format!("attempt {next_attempt} in {backoff_ms} ms"),
                );
            }
            EventKind::MessageSent { to, msg_type, .. } => {
                let p = t.part(to);
                if matches!(msg_type, MessageType::Prepare | MessageType::CommitOnePhase)
                    && p.badge.badge == Badge::Idle
                {
                    p.badge = NodeBadge::new(Badge::Working, "working");
                }
                if matches!(msg_type, MessageType::Commit | MessageType::Abort) {
                    t.coordinator.text = format!("sending {}", msg_type.as_str().to_uppercase());
                }
            }
            EventKind::MessageReceived { from, .. } => {
                t.part(from);
            }
            EventKind::Vote {
                participant, vote, ..
            } => {
                let p = t.part(participant);
                match vote {
                    Vote::Yes => {
                        p.badge = NodeBadge::new(Badge::Prepared, "voted YES");
                        p.prepared_at_ms = Some(at);
                    }
                    Vote::No => {
                        p.badge = NodeBadge::new(Badge::Aborted, "voted NO");
                        p.prepared_at_ms = None;
                    }
                    Vote::ReadOnly => {
                        p.badge = NodeBadge::new(Badge::Committed, "read-only");
                        p.prepared_at_ms = None;
                    }
                }
            }
            EventKind::LogWrite { record, .. } => match record {
                LogRecordKind::Commit => {
                    t.log = NodeBadge::new(Badge::Working, "COMMIT written");
                    t.log_pending = true;
                    pending = true;
                    // The log's events may reach the stream after the decision itself.
                    if t.decision.is_none() {
                        t.coordinator = NodeBadge::new(Badge::Working, "forcing COMMIT");
                    }
                }
                LogRecordKind::Abort => t.log = NodeBadge::new(Badge::Aborted, "ABORT noted"),
                LogRecordKind::End => t.log.text = format!("{}; END", t.log.text),
                other => {
                    t.log = NodeBadge::new(Badge::Working, format!("{} written", other.as_str()))
                }
            },
            EventKind::Decision { decision, reason } => {
                t.decision = Some(*decision);
                if reason.is_some() {
                    t.reason = reason.clone();
                }
                t.coordinator = match decision {
                    Decision::Commit => NodeBadge::new(Badge::Committed, "decided COMMIT"),
                    Decision::Abort => NodeBadge::new(Badge::Aborted, "decided ABORT"),
                };
            }
            EventKind::Ack {
                participant,
                decision,
            } => {
                let p = t.part(participant);
                p.prepared_at_ms = None;
                p.badge = match decision {
                    Decision::Commit => NodeBadge::new(Badge::Committed, "committed"),
                    Decision::Abort => NodeBadge::new(Badge::Aborted, "rolled back"),
                };
            }
            EventKind::Heuristic {
                participant,
                result,
                ..
            } => {
                t.part(participant).prepared_at_ms = None;
                t.note_heuristic(participant, *result);
                t.coordinator = NodeBadge::new(Badge::Heuristic, "heuristic outcome");
            }
            EventKind::Timeout { participant, phase } => {
                let p = t.part(participant);
                if p.badge.badge == Badge::Prepared {
                    p.badge = NodeBadge::new(Badge::InDoubt, "no answer");
                } else if p.badge.badge == Badge::Working {
                    p.badge = NodeBadge::new(Badge::Working, format!("timed out ({phase:?})"));
                }
            }
            EventKind::Retry { participant, .. } => {
                let p = t.part(participant);
                if p.badge.badge == Badge::Prepared {
                    p.badge = NodeBadge::new(Badge::InDoubt, "awaiting decision");
                }
            }
            EventKind::DecisionRequested { participant } => {
                let p = t.part(participant);
                if !matches!(
                    p.badge.badge,
                    Badge::Committed | Badge::Aborted | Badge::Heuristic
                ) {
                    p.badge = NodeBadge::new(Badge::InDoubt, "asks for decision");
                }
            }
            EventKind::TxEnd { retried: true, .. } => {
                // The current attempt was retried: the next one's events follow.
            }
            EventKind::TxEnd {
                decision,
                prepare_ms,
                decide_ms,
                commit_ms,
                ..
            } => {
                if let Some(a) = t.attempts.last_mut() {
                    a.decision = Some(*decision);
                }
                t.ended = true;
                t.end_ms = Some(at);
                t.decision = Some(*decision);
                let total = t.timings.and_then(|x| x.total_ms);
                t.timings = Some(Timings {
                    prepare_ms: *prepare_ms,
                    decide_ms: *decide_ms,
                    commit_ms: *commit_ms,
                    total_ms: total,
                });
                let b = match decision {
                    _ if !t.heuristics.is_empty() => Badge::Heuristic,
                    Decision::Commit => Badge::Committed,
                    Decision::Abort => Badge::Aborted,
                };
                t.client = if let Some(c) = &t.taken_over_from {
                    // Its client asked the old holder, not this coordinator: it finds the
                    // outcome by asking any coordinator for the id.
                    NodeBadge::new(Badge::Idle, format!("{c}'s client, not told here"))
                } else if t.heuristics.is_empty() {
                    NodeBadge::new(b, format!("told {}", finished_word(*decision)))
                } else {
                    NodeBadge::new(b, "told HEURISTIC")
                };
                t.coordinator = match &t.taken_over_from {
                    Some(c) => NodeBadge::new(b, format!("done for {c}")),
                    None if t.heuristics.is_empty() => NodeBadge::new(b, "done"),
                    None => NodeBadge::new(b, "done: heuristic outcome"),
                };
                finished = Some((*decision, !t.heuristics.is_empty()));
            }
            _ => {}
        }
        if pending {
            self.pending_fsync.push(id);
        }
        match finished {
            Some((_, true)) => self.counts.heuristic += 1,
            Some((Decision::Commit, false)) => self.counts.committed += 1,
            Some((Decision::Abort, false)) => self.counts.aborted += 1,
            None => {}
        }
        if matches!(
            ev.kind,
            EventKind::MessageSent { .. } | EventKind::MessageReceived { .. }
        ) {
            self.counts.messages += 1;
        }
    }

    /// Notes the coordinator run of an event (also of events that are not folded, like
    /// heartbeats): a new run means the coordinator restarted.
    pub fn observe_run(&mut self, run: &str) {
        if self.run.as_deref() != Some(run) {
            if self.run.is_some() {
                self.coordinator_restarted();
            }
            self.run = Some(run.to_string());
        }
    }

    /// A new coordinator run: whatever was in flight is now in the hands of recovery.
    pub(super) fn coordinator_restarted(&mut self) {
        for t in self.txs.values_mut().filter(|t| !t.ended) {
            t.coordinator = NodeBadge::new(Badge::Working, "recovering");
            for p in t.parts.values_mut() {
                if p.badge.badge == Badge::Prepared {
                    p.badge = NodeBadge::new(Badge::InDoubt, "coordinator crashed");
                }
            }
        }
    }

    /// Records the HTTP answer of a transaction this page submitted.
    pub fn note_response(&mut self, resp: &TransactionResponse) {
        if let Some(t) = self.txs.get_mut(resp.id.as_str()) {
            let PhaseTimings {
                prepare_ms,
                decide_ms,
                commit_ms,
                total_ms,
            } = resp.timings;
            if total_ms > 0.0 {
                t.timings = Some(Timings {
                    prepare_ms,
                    decide_ms,
                    commit_ms,
                    total_ms: Some(total_ms),
                });
            }
            if t.reason.is_none() {
                t.reason = resp.reason.clone();
            }
        }
    }
}

impl Derived {
    /// Transactions not finished whose latest event is older than `quiet_ms` (by event time,
    /// against `now_ms`), oldest first, at most `limit`: candidates for a status lookup, since
    /// the page misses the events of a coordinator restart that happen before it reconnects.
    pub fn stale_unfinished(&self, now_ms: u64, quiet_ms: u64, limit: usize) -> Vec<String> {
        self.txs()
            .filter(|t| {
                // A taken-over id's transactions are not this coordinator's to look up: the
                // takeover instance's own events end them.
                !t.ended
                    && t.taken_over_from.is_none()
                    && !t.unknown_to_coordinator
                    && now_ms.saturating_sub(t.last_at_ms) >= quiet_ms
            })
            .take(limit)
            .map(|t| t.id.clone())
            .collect()
    }

    /// Applies what `GET /v1/transactions/{id}` and `GET /v1/participants` say about an
    /// unfinished transaction whose events the page missed: the outcome becomes its decision;
    /// a participant whose connection is up and that owes no ack holds nothing any more, so
    /// its part is resolved; when every part is resolved the transaction is finished. Returns
    /// whether anything changed.
    pub fn resolve(&mut self, resp: &TransactionResponse, statuses: &[ParticipantStatus]) -> bool {
        let decision = match resp.outcome {
            Outcome::Committed => Decision::Commit,
            Outcome::Aborted => Decision::Abort,
            Outcome::InProgress => return false,
            // The answer names the decision with the heuristic outcomes.
            Outcome::HeuristicMixed | Outcome::HeuristicHazard => {
                resp.decision.unwrap_or(Decision::Commit)
            }
        };
        let Some(t) = self.txs.get_mut(resp.id.as_str()) else {
            return false;
        };
        let known = t.heuristics.len();
        for h in &resp.heuristics {
            t.note_heuristic(h.participant.as_str(), h.result);
        }
        let noted = t.heuristics.len() != known;
        if noted {
            t.coordinator = NodeBadge::new(Badge::Heuristic, "heuristic outcome");
        }
        if t.ended {
            return false;
        }
        let (badge, word) = match decision {
            Decision::Commit => (Badge::Committed, "committed"),
            Decision::Abort => (Badge::Aborted, "aborted"),
        };
        let mut changed = noted || t.decision != Some(decision);
        t.decision = Some(decision);
        if t.reason.is_none() {
            t.reason = resp.reason.clone();
        }
        if !matches!(
            t.coordinator.badge,
            Badge::Committed | Badge::Aborted | Badge::Heuristic
        ) {
            t.coordinator = NodeBadge::new(badge, format!("decided {}", word.to_uppercase()));
            changed = true;
        }
        for (name, p) in t.parts.iter_mut() {
            if matches!(
                p.badge.badge,
                Badge::Committed | Badge::Aborted | Badge::Heuristic
            ) {
                continue;
            }
            let settled = statuses
                .iter()
                .any(|s| s.name.as_str() == name && s.connected && s.awaiting_ack == 0);
            if settled {
                p.badge = NodeBadge::new(badge, format!("{word} (while the page was away)"));
                p.prepared_at_ms = None;
                changed = true;
            }
        }
        let all = t.parts.values().all(|p| {
            matches!(
                p.badge.badge,
                Badge::Committed | Badge::Aborted | Badge::Heuristic
            )
        });
        if all {
            t.ended = true;
            t.client = NodeBadge::new(badge, format!("told {}", finished_word(decision)));
            t.coordinator = NodeBadge::new(badge, "done");
            if resp.timings.total_ms > 0.0 {
                let tm = resp.timings;
                t.timings = Some(Timings {
                    prepare_ms: tm.prepare_ms,
                    decide_ms: tm.decide_ms,
                    commit_ms: tm.commit_ms,
                    total_ms: Some(tm.total_ms),
                });
            }
            match decision {
                _ if !t.heuristics.is_empty() => self.counts.heuristic += 1,
                Decision::Commit => self.counts.committed += 1,
                Decision::Abort => self.counts.aborted += 1,
            }
            changed = true;
        }
        changed
    }
}

fn finished_word(d: Decision) -> &'static str {
    match d {
        Decision::Commit => "COMMITTED",
        Decision::Abort => "ABORTED",
    }
}

/// One participant's prepared transaction, for the in-doubt panel.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPrepared {
    /// The participant.
    pub participant: String,
    /// The transaction.
    pub txid: String,
    /// Prepared or in doubt.
    pub badge: Badge,
    /// Why (badge text).
    pub note: String,
    /// How long it has been held prepared, in ms (None: vote time unknown).
    pub held_ms: Option<u64>,
}

/// Every transaction some participant holds prepared without an ack yet, oldest first.
pub fn held_prepared(d: &Derived, now_ms: u64) -> Vec<HeldPrepared> {
    let mut out: Vec<HeldPrepared> = Vec::new();
    for t in d.txs() {
        for name in &t.participants {
            let Some(p) = t.parts.get(name) else { continue };
            if matches!(p.badge.badge, Badge::Prepared | Badge::InDoubt) {
                out.push(HeldPrepared {
                    participant: name.clone(),
                    txid: t.id.clone(),
                    badge: p.badge.badge,
                    note: p.badge.text.clone(),
                    held_ms: p.prepared_at_ms.map(|s| now_ms.saturating_sub(s)),
                });
            }
        }
    }
    out.sort_by_key(|h| std::cmp::Reverse(h.held_ms.unwrap_or(0)));
    out
}
