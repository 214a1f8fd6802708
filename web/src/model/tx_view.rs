//! One transaction as the page draws it: a badge per node, timings, the outcome.

use super::*;

/// The state of one node in one transaction, drawn as a coloured badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Not involved (yet).
    Idle,
    /// Doing the work / waiting.
    Working,
    /// Voted YES: prepared, durable, and uncertain of the outcome.
    Prepared,
    /// Committed (or decided commit).
    Committed,
    /// Aborted (or decided abort).
    Aborted,
    /// Prepared and cut off from the decision (disconnected, timed out, asked for it).
    InDoubt,
    /// The node is down or unreachable.
    Down,
    /// Its acknowledgement did not match the decision (a heuristic outcome): the stores may
    /// disagree and an operator must look.
    Heuristic,
}

impl Badge {
    /// Every badge, in legend order.
    pub const ALL: [Badge; 8] = [
        Badge::Idle,
        Badge::Working,
        Badge::Prepared,
        Badge::InDoubt,
        Badge::Committed,
        Badge::Aborted,
        Badge::Heuristic,
        Badge::Down,
    ];

    /// CSS class suffix (`badge-<class>`), also used for colours in the legend.
    pub fn class(self) -> &'static str {
        match self {
            Badge::Idle => "idle",
            Badge::Working => "working",
            Badge::Prepared => "prepared",
            Badge::Committed => "committed",
            Badge::Aborted => "aborted",
            Badge::InDoubt => "in-doubt",
            Badge::Down => "down",
            Badge::Heuristic => "heuristic",
        }
    }

    /// Text shown in the badge and the legend.
    pub fn label(self) -> &'static str {
        match self {
            Badge::Idle => "idle",
            Badge::Working => "working",
            Badge::Prepared => "PREPARED (uncertain)",
            Badge::Committed => "committed",
            Badge::Aborted => "aborted",
            Badge::InDoubt => "IN DOUBT",
            Badge::Down => "down",
            Badge::Heuristic => "HEURISTIC",
        }
    }
}

/// A badge with a short role-specific text ("COMMIT durable", "voted NO").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBadge {
    /// The state.
    pub badge: Badge,
    /// What it means for this node.
    pub text: String,
}

impl NodeBadge {
    pub(super) fn new(badge: Badge, text: impl Into<String>) -> Self {
        NodeBadge {
            badge,
            text: text.into(),
        }
    }

    pub(super) fn idle() -> Self {
        NodeBadge::new(Badge::Idle, "—")
    }
}

/// One participant's part in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PartView {
    /// Its state.
    pub badge: NodeBadge,
    /// When it voted YES (ms since the epoch), while it holds the transaction prepared.
    pub prepared_at_ms: Option<u64>,
}

/// The phase timings of a finished transaction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Phase 1.
    pub prepare_ms: f64,
    /// Forcing the decision.
    pub decide_ms: f64,
    /// Phase 2.
    pub commit_ms: f64,
    /// Whole transaction as reported to the client, when known.
    pub total_ms: Option<f64>,
}

/// Outcome shown in the transaction list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Still running.
    InProgress,
    /// Decided; not every ack yet.
    Decided(Decision),
    /// Every ack in (tx_end).
    Done(Decision),
    /// Some participant holds it prepared without knowing the outcome.
    InDoubt,
    /// Some participant's acknowledgement did not match the decision: `HeuristicMixed` or
    /// `HeuristicHazard`.
    Heuristic(Outcome),
}

impl TxOutcome {
    /// Text for the list.
    pub fn label(self) -> &'static str {
        match self {
            TxOutcome::InProgress => "in progress",
            TxOutcome::Decided(Decision::Commit) => "commit decided",
            TxOutcome::Decided(Decision::Abort) => "abort decided",
            TxOutcome::Done(Decision::Commit) => "committed",
            TxOutcome::Done(Decision::Abort) => "aborted",
            TxOutcome::InDoubt => "in doubt",
            TxOutcome::Heuristic(Outcome::HeuristicHazard) => "HEURISTIC HAZARD",
            TxOutcome::Heuristic(_) => "HEURISTIC MIXED",
        }
    }

    /// Badge colour for the list.
    pub fn badge(self) -> Badge {
        match self {
            TxOutcome::InProgress => Badge::Working,
            TxOutcome::Decided(Decision::Commit) | TxOutcome::Done(Decision::Commit) => {
                Badge::Committed
            }
            TxOutcome::Decided(Decision::Abort) | TxOutcome::Done(Decision::Abort) => {
                Badge::Aborted
            }
            TxOutcome::InDoubt => Badge::InDoubt,
            TxOutcome::Heuristic(_) => Badge::Heuristic,
        }
    }
}

/// One attempt of a transaction the coordinator retried after `conflict` NO votes.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptView {
    /// Its number, from 1.
    pub number: u32,
    /// Its wire txid (attempt 1: the client's).
    pub txid: String,
    /// How it ended: `None` while it runs.
    pub decision: Option<Decision>,
    /// Aborted and run again (`retry_scheduled`).
    pub retried: bool,
    /// Why it aborted.
    pub reason: Option<String>,
}

/// Everything known about one transaction from the events folded so far. A transaction the
/// coordinator retried is one view: every attempt's events are folded into it (the current
/// attempt's move the badges), and `attempts` lists each attempt with its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TxView {
    /// The transaction id.
    pub id: String,
    /// Participants, in the order they appeared.
    pub participants: Vec<String>,
    /// Absolute index of its first event in the log.
    pub first_index: u64,
    /// Absolute index of its latest event.
    pub last_index: u64,
    /// When it began (its first event), ms since the epoch.
    pub begin_ms: u64,
    /// When it ended (tx_end), if it did.
    pub end_ms: Option<u64>,
    /// The coordinator's decision, once taken.
    pub decision: Option<Decision>,
    /// Why it aborted.
    pub reason: Option<String>,
    /// Every ack in.
    pub ended: bool,
    /// Phase timings (tx_end, or the HTTP answer).
    pub timings: Option<Timings>,
    /// The client's state.
    pub client: NodeBadge,
    /// The coordinator's state.
    pub coordinator: NodeBadge,
    /// The decision log's state.
    pub log: NodeBadge,
    /// Each participant's state.
    pub parts: BTreeMap<String, PartView>,
    /// Time of its latest event.
    pub last_at_ms: u64,
    /// The coordinator did not know it when asked (no more lookups).
    pub unknown_to_coordinator: bool,
    /// Log record written for it and not yet covered by an fsync.
    pub(super) log_pending: bool,
    /// Acknowledgements that did not match the decision (from `heuristic` events or the
    /// coordinator's answer).
    pub heuristics: Vec<HeuristicReport>,
    /// Its attempts, once it was retried (empty for a transaction run once).
    pub attempts: Vec<AttemptView>,
    /// The coordinator id that ran it, when not the page's coordinator: an id this
    /// coordinator took over and finishes (its events are forwarded with that id).
    pub taken_over_from: Option<String>,
}

impl TxView {
    pub(super) fn new(id: &str, index: u64, at_ms: u64) -> Self {
        TxView {
            id: id.to_string(),
            participants: Vec::new(),
            first_index: index,
            last_index: index,
            begin_ms: at_ms,
            end_ms: None,
            decision: None,
            reason: None,
            ended: false,
            timings: None,
            client: NodeBadge::idle(),
            coordinator: NodeBadge::new(Badge::Working, "preparing"),
            log: NodeBadge::idle(),
            parts: BTreeMap::new(),
            last_at_ms: at_ms,
            unknown_to_coordinator: false,
            log_pending: false,
            heuristics: Vec::new(),
            attempts: Vec::new(),
            taken_over_from: None,
        }
    }

    /// How many attempts have run (1 unless retried).
    pub fn attempt_count(&self) -> usize {
        self.attempts.len().max(1)
    }

    /// Whether events about wire txid `txid` belong to this transaction.
    pub fn owns(&self, txid: &str) -> bool {
        self.id == txid || self.attempts.iter().any(|a| a.txid == txid)
    }

    /// Whether `txid` is this transaction's current attempt (the one its badges follow).
    pub(super) fn is_current(&self, txid: &str) -> bool {
        self.attempts
            .last()
            .map_or(self.id == txid, |a| a.txid == txid)
    }

    /// The attempt running under wire txid `txid`, if it was retried.
    pub(super) fn attempt_mut(&mut self, txid: &str) -> Option<&mut AttemptView> {
        self.attempts.iter_mut().find(|a| a.txid == txid)
    }

    /// One line per attempt for the list's tooltip: "1 aborted (retried), 2 committed".
    pub fn attempts_summary(&self) -> String {
        self.attempts
            .iter()
            .map(|a| {
                let how = match (a.decision, a.retried) {
                    (_, true) => "aborted, retried",
                    (Some(Decision::Commit), _) => "committed",
                    (Some(Decision::Abort), _) => "aborted",
                    (None, _) => "running",
                };
                format!("attempt {}: {how}", a.number)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Records one heuristic acknowledgement (once per participant) and marks its node.
    pub(super) fn note_heuristic(&mut self, participant: &str, result: HeuristicKind) {
        let what = match result {
            HeuristicKind::Conflict => "HEURISTIC: conflict",
            HeuristicKind::NotPrepared => "HEURISTIC: no record",
        };
        self.part(participant).badge = NodeBadge::new(Badge::Heuristic, what);
        if !self
            .heuristics
            .iter()
            .any(|h| h.participant.as_str() == participant)
        {
            if let Ok(name) = participant.parse() {
                self.heuristics.push(HeuristicReport {
                    participant: name,
                    result,
                });
            }
        }
    }

    pub(super) fn part(&mut self, name: &str) -> &mut PartView {
        if !self.parts.contains_key(name) {
            self.participants.push(name.to_string());
        }
        self.parts.entry(name.to_string()).or_insert(PartView {
            badge: NodeBadge::idle(),
            prepared_at_ms: None,
        })
    }

    /// The badge of a node (`client`, `coordinator`, `log` or a participant name).
    pub fn badge_of(&self, node: &str) -> NodeBadge {
        match node {
            "client" => self.client.clone(),
            "coordinator" => self.coordinator.clone(),
            "log" => self.log.clone(),
            p => self
                .parts
                .get(p)
                .map(|v| v.badge.clone())
                .unwrap_or_else(NodeBadge::idle),
        }
    }

    /// The outcome for the list.
    pub fn outcome(&self) -> TxOutcome {
        if let (Some(d), false) = (self.decision, self.heuristics.is_empty()) {
            return TxOutcome::Heuristic(Outcome::of(d, &self.heuristics));
        }
        if self.parts.values().any(|p| p.badge.badge == Badge::InDoubt) && !self.ended {
            return TxOutcome::InDoubt;
        }
        match (self.decision, self.ended) {
            (Some(d), true) => TxOutcome::Done(d),
            (Some(d), false) => TxOutcome::Decided(d),
            (None, _) => TxOutcome::InProgress,
        }
    }
}
