//! What the app knows: the recorded event log, what it means per transaction, and the
//! state of the timeline (live or replaying).
//!
//! Everything here is plain Rust with no browser dependency, so it is unit-tested on the host.
//!
//! * [`EventLog`]: the coordinator's events as received, capped at [`MAX_EVENTS`]; indices are
//!   absolute (they keep counting when old events are evicted).
//! * [`Derived`]: a fold over the log: one [`TxView`] per transaction with a [`Badge`] per node,
//!   node connectivity, counts. Folding event by event is how both live mode (incrementally, as
//!   events arrive) and replay (up to the cursor) work.
//! * [`Model`] + [`Action`]: the app state and its reducer. The Yew layer wraps the model in
//!   a `Reducible`; every state change goes through [`Model::reduce`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use twopc_protocol::api::{
    HeuristicKind, HeuristicReport, Outcome, PhaseTimings, TransactionResponse,
};
use twopc_protocol::event::Lagged;
use twopc_protocol::{Decision, Event, EventKind, LogRecordKind, MessageType, Vote};

/// Events retained in the browser; older ones are evicted (and counted).
pub const MAX_EVENTS: usize = 20_000;
/// Transactions retained in the derived state (the list shows the newest of them).
pub const MAX_TXS: usize = 1_000;
/// Notices (API answers, errors) kept on screen.
pub const MAX_NOTICES: usize = 6;
/// Fault descriptions remembered from the event stream.
pub const MAX_FAULTS: usize = 20;
/// Replay speeds; the default is 1x.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Index of 1x in [`SPEEDS`].
pub const DEFAULT_SPEED: usize = 2;
/// Milliseconds per replayed event at 1x.
pub const STEP_MS_AT_1X: f64 = 500.0;
/// Paced live mode: milliseconds per event while the view catches up with the tail, at 1x.
pub const LIVE_STEP_MS_AT_1X: f64 = 160.0;
/// Paced live mode: further behind the tail than this many events, the view jumps to it.
pub const LIVE_LAG_MAX: u64 = 48;

/// The coordinator's `GET /v1/config`, `GET /v1/participants` rows, as the API defines them.
pub use twopc_protocol::api::{ParticipantConfig, ParticipantStatus, PublicConfig};

/// One text frame from `/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A protocol step.
    Event(Box<Event>),
    /// The browser fell behind and the coordinator skipped this many events.
    Lagged(u64),
}

/// The text of a non-2xx API answer, e.g.
/// `403 faults_disabled: fault injection is disabled; start the coordinator with ...`.
pub fn error_text(status: u16, body: &str) -> String {
    match serde_json::from_str::<twopc_protocol::api::ApiError>(body) {
        Ok(e) => format!("{status} {}: {}", e.error, e.message),
        Err(_) if body.is_empty() => format!("HTTP {status}"),
        Err(_) => format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
    }
}

/// Connection heartbeats (ping/pong messages): not recorded, only counted.
pub fn is_heartbeat(ev: &Event) -> bool {
    matches!(&ev.kind,
        EventKind::MessageSent { msg_type, .. } | EventKind::MessageReceived { msg_type, .. }
            if msg_type.is_heartbeat())
}

/// Parses one text frame of the event stream.
pub fn parse_incoming(text: &str) -> Result<Incoming, String> {
    // Events are by far the most frequent frame: decode them directly (no Value detour).
    match serde_json::from_str::<Event>(text) {
        Ok(e) => Ok(Incoming::Event(Box::new(e))),
        Err(err) => serde_json::from_str::<Lagged>(text)
            .map(|l| Incoming::Lagged(l.lagged))
            .map_err(|_| err.to_string()),
    }
}

/// How long to wait before handing the next batch to the app, given the size of the last
/// one: every animation frame while traffic is light, less often under load so that the page
/// spends its time drawing rather than re-rendering per frame.
pub fn batch_interval_ms(last_batch: usize) -> u32 {
    match last_batch {
        0..=20 => 0,
        21..=100 => 100,
        101..=500 => 200,
        _ => 400,
    }
}

/// The recorded event stream, capped. Indices are absolute: the first event ever received is
/// 0, and an index stays valid (or becomes "evicted") as the log rolls.
#[derive(Debug, Clone)]
pub struct EventLog {
    events: VecDeque<Event>,
    base: u64,
    cap: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_cap(MAX_EVENTS)
    }
}

impl EventLog {
    /// An empty log keeping at most `cap` events.
    pub fn with_cap(cap: usize) -> Self {
        EventLog {
            events: VecDeque::new(),
            base: 0,
            cap: cap.max(1),
        }
    }

    /// Appends an event, evicting the oldest beyond the cap; returns its absolute index.
    pub fn push(&mut self, ev: Event) -> u64 {
        let idx = self.end();
        self.events.push_back(ev);
        while self.events.len() > self.cap {
            self.events.pop_front();
            self.base += 1;
        }
        idx
    }

    /// Absolute index of the oldest retained event.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the absolute index of the newest event (= events ever received).
    pub fn end(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// Events retained.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events evicted so far.
    pub fn evicted(&self) -> u64 {
        self.base
    }

    /// The event at an absolute index, if retained.
    pub fn get(&self, idx: u64) -> Option<&Event> {
        idx.checked_sub(self.base)
            .and_then(|i| self.events.get(usize::try_from(i).ok()?))
    }

    /// Retained events in `[from, to)` (absolute, clamped), with their indices.
    pub fn range(&self, from: u64, to: u64) -> impl DoubleEndedIterator<Item = (u64, &Event)> {
        let from = from.clamp(self.base, self.end());
        let to = to.clamp(from, self.end());
        let (a, b) = ((from - self.base) as usize, (to - self.base) as usize);
        self.events
            .range(a..b)
            .enumerate()
            .map(move |(i, e)| (from + i as u64, e))
    }
}

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
    fn new(badge: Badge, text: impl Into<String>) -> Self {
        NodeBadge {
            badge,
            text: text.into(),
        }
    }

    fn idle() -> Self {
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

/// Everything known about one transaction from the events folded so far.
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
    log_pending: bool,
    /// Acknowledgements that did not match the decision (from `heuristic` events or the
    /// coordinator's answer).
    pub heuristics: Vec<HeuristicReport>,
}

impl TxView {
    fn new(id: &str, index: u64, at_ms: u64) -> Self {
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
        }
    }

    /// Records one heuristic acknowledgement (once per participant) and marks its node.
    fn note_heuristic(&mut self, participant: &str, result: HeuristicKind) {
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

    fn part(&mut self, name: &str) -> &mut PartView {
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
}

/// A fold over the event log.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    txs: HashMap<String, TxView>,
    order: VecDeque<String>,
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
    pending_fsync: Vec<String>,
    /// Absolute index one past the last event folded.
    pub position: u64,
    /// Time of the last event folded.
    pub last_at_ms: u64,
    max_txs: usize,
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

    fn tx_mut(&mut self, id: &str, index: u64, at_ms: u64) -> &mut TxView {
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
        let txid = ev.txid.as_ref().map(|t| t.as_str().to_string());
        match &ev.kind {
            EventKind::CoordinatorStarted { .. } => {
                self.counts.coordinator_starts += 1;
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
        let Some(id) = txid else { return };
        let t = self.tx_mut(&id, index, at);
        let mut finished: Option<(Decision, bool)> = None;
        let mut pending = false;
        match &ev.kind {
            EventKind::TxBegin { participants } => {
                t.begin_ms = at;
                t.client = NodeBadge::new(Badge::Working, "waiting");
                for p in participants {
                    t.part(p);
                }
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
                other => t.log = NodeBadge::new(Badge::Working, format!("{other} written")),
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
            EventKind::TxEnd {
                decision,
                prepare_ms,
                decide_ms,
                commit_ms,
                ..
            } => {
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
                t.client = if t.heuristics.is_empty() {
                    NodeBadge::new(b, format!("told {}", finished_word(*decision)))
                } else {
                    NodeBadge::new(b, "told HEURISTIC")
                };
                t.coordinator = if t.heuristics.is_empty() {
                    NodeBadge::new(b, "done")
                } else {
                    NodeBadge::new(b, "done: heuristic outcome")
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
    fn coordinator_restarted(&mut self) {
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
                !t.ended
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

/// State of the `/v1/events` connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SocketState {
    /// Opening.
    #[default]
    Connecting,
    /// Receiving events.
    Open,
    /// Dropped; reconnecting after this many ms.
    Retrying(u32),
}

impl SocketState {
    /// Short text for the status bar.
    pub fn label(&self) -> String {
        match self {
            SocketState::Connecting => "connecting…".into(),
            SocketState::Open => "live".into(),
            SocketState::Retrying(ms) => {
                format!("disconnected, retrying in {:.1} s", *ms as f64 / 1000.0)
            }
        }
    }
}

/// Severity of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Informational.
    Info,
    /// Something the user asked for failed.
    Error,
}

/// A line in the notices area.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Unique id (a key for rendering).
    pub id: u64,
    /// Severity.
    pub level: Level,
    /// Text.
    pub text: String,
}

/// A running (or finished) preset scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRun {
    /// The scenario's slug.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Steps done so far.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Narration lines so far.
    pub narration: Vec<String>,
    /// Finished (or cancelled).
    pub finished: bool,
    /// Generation number (a newer run supersedes an older one).
    pub generation: u64,
}

/// Every way the state changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A batch of frames from the event stream (one animation frame's worth).
    Ingest(Vec<Incoming>),
    /// `GET /v1/config` answered.
    ConfigLoaded(PublicConfig),
    /// `GET /v1/participants` answered.
    ParticipantsLoaded(Vec<ParticipantStatus>),
    /// The event socket changed state.
    Socket(SocketState),
    /// Space: pause when live or playing; play when paused.
    TogglePlay,
    /// Step the cursor by this many events (pauses).
    Step(i64),
    /// Move the cursor to an absolute index (pauses).
    Seek(u64),
    /// Follow the tail again.
    GoLive,
    /// One replay tick (while playing).
    Tick,
    /// Faster replay.
    SpeedUp,
    /// Slower replay.
    SpeedDown,
    /// Focus the diagram on a transaction (None: everything).
    Select(Option<String>),
    /// The page submitted a transaction.
    Submitted {
        /// Its id.
        id: String,
        /// What it was ("transfer", "failing transfer").
        label: String,
    },
    /// The answer to a submitted transaction.
    SubmitAnswered(Result<TransactionResponse, String>),
    /// `GET /v1/transactions/{id}` for an unfinished transaction whose events were missed.
    TxLookedUp(TransactionResponse),
    /// That lookup failed with 4xx: the coordinator does not know the transaction.
    TxUnknown(String),
    /// The answer to a fault request (its description, or the API's error text).
    FaultAnswered(Result<String, String>),
    /// Show a notice.
    Notify(Level, String),
    /// A scenario starts.
    ScenarioStart {
        /// Slug.
        name: String,
        /// Title.
        title: String,
        /// Steps.
        total: usize,
        /// Generation.
        generation: u64,
    },
    /// A scenario step ran, with its narration.
    ScenarioStep {
        /// Generation of the run.
        generation: u64,
        /// Narration (empty: none).
        text: String,
    },
    /// A scenario finished or was stopped.
    ScenarioEnd {
        /// Generation of the run.
        generation: u64,
    },
    /// Open or close the help overlay.
    ToggleHelp,
    /// Close overlays.
    Escape,
}

/// The app state.
#[derive(Debug, Clone)]
pub struct Model {
    /// `GET /v1/config`, once loaded.
    pub config: Option<PublicConfig>,
    /// `GET /v1/participants`, last answer.
    pub statuses: Vec<ParticipantStatus>,
    /// The recorded stream.
    pub log: EventLog,
    /// The fold of the whole log (live state).
    pub live: Derived,
    replay: Option<Derived>,
    /// None: live (follow the tail). Some(i): showing the state before event i.
    pub cursor: Option<u64>,
    /// Paced live mode: the view walks to the tail one event per tick (so a burst of events,
    /// like a whole 2PC arriving within milliseconds, plays out step by step), and jumps to
    /// the tail when more than [`LIVE_LAG_MAX`] events behind.
    pub paced: bool,
    /// Paced live mode: the position shown.
    follow: u64,
    /// Paced live mode: the fold at `follow` while it is behind the tail.
    trail: Option<Derived>,
    /// Replaying (the cursor advances on each tick).
    pub playing: bool,
    /// Index into [`SPEEDS`].
    pub speed: usize,
    /// The transaction the diagram focuses on.
    pub selected: Option<String>,
    /// The event socket.
    pub socket: SocketState,
    /// Events the coordinator skipped because the page fell behind.
    pub lagged: u64,
    /// Frames that were not events (or failed to parse).
    pub bad_frames: u64,
    /// Ping/pong events received (not recorded: they carry no protocol state).
    pub heartbeats: u64,
    /// Absolute index of the first event of the latest ingested batch.
    pub batch_start: u64,
    /// Size of the latest ingested batch.
    pub batch_len: u64,
    /// Notices, newest last.
    pub notices: VecDeque<Notice>,
    next_notice: u64,
    /// The latest fault-API error (shown next to the fault buttons).
    pub fault_error: Option<String>,
    /// The running or last scenario.
    pub scenario: Option<ScenarioRun>,
    /// Help overlay open.
    pub help: bool,
    /// Transactions submitted from this page: id → label.
    pub submitted: HashMap<String, String>,
    /// Total time of the page's transactions as answered by the coordinator (the answer may
    /// arrive before the transaction's events).
    pub answered_ms: HashMap<String, f64>,
}

impl Default for Model {
    fn default() -> Self {
        Model::with_log(EventLog::default())
    }
}

impl Model {
    /// A model around a given (empty) log; tests use small caps.
    pub fn with_log(log: EventLog) -> Self {
        Model {
            config: None,
            statuses: Vec::new(),
            live: Derived::starting_at(log.base()),
            log,
            replay: None,
            cursor: None,
            paced: false,
            follow: 0,
            trail: None,
            playing: false,
            speed: DEFAULT_SPEED,
            selected: None,
            socket: SocketState::Connecting,
            lagged: 0,
            bad_frames: 0,
            heartbeats: 0,
            batch_start: 0,
            batch_len: 0,
            notices: VecDeque::new(),
            next_notice: 0,
            fault_error: None,
            scenario: None,
            help: false,
            submitted: HashMap::new(),
            answered_ms: HashMap::new(),
        }
    }

    /// True when following the tail.
    pub fn is_live(&self) -> bool {
        self.cursor.is_none()
    }

    /// The absolute index the view shows the state before (the end of the log when live).
    pub fn position(&self) -> u64 {
        self.cursor.unwrap_or_else(|| self.live_position())
    }

    /// The position live mode shows: the tail, or (paced) the step it has walked to.
    pub fn live_position(&self) -> u64 {
        if self.paced {
            self.follow.clamp(self.log.base(), self.log.end())
        } else {
            self.log.end()
        }
    }

    /// Paced live mode is walking towards the tail (live ticks are due).
    pub fn catching_up(&self) -> bool {
        self.cursor.is_none() && self.paced && self.follow < self.log.end()
    }

    /// Milliseconds between live ticks while catching up.
    pub fn live_tick_ms(&self) -> u32 {
        (LIVE_STEP_MS_AT_1X / self.speed_factor()).round().max(1.0) as u32
    }

    /// Whether a tick timer should run, and its period.
    pub fn ticker(&self) -> Option<u32> {
        if self.cursor.is_some() && self.playing {
            Some(self.tick_ms())
        } else if self.catching_up() {
            Some(self.live_tick_ms())
        } else {
            None
        }
    }

    fn snap_to_tail(&mut self) {
        self.follow = self.log.end();
        self.trail = None;
    }

    /// The fold the view draws: the live one, or the one at the replay cursor.
    pub fn view(&self) -> &Derived {
        match (&self.cursor, &self.replay, &self.trail) {
            (Some(_), Some(r), _) => r,
            (None, _, Some(t)) if self.catching_up() => t,
            _ => &self.live,
        }
    }

    /// Current replay speed factor.
    pub fn speed_factor(&self) -> f64 {
        SPEEDS[self.speed.min(SPEEDS.len() - 1)]
    }

    /// Milliseconds between replay ticks at the current speed.
    pub fn tick_ms(&self) -> u32 {
        (STEP_MS_AT_1X / self.speed_factor()).round().max(1.0) as u32
    }

    /// Adds a notice.
    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.next_notice += 1;
        self.notices.push_back(Notice {
            id: self.next_notice,
            level,
            text: text.into(),
        });
        while self.notices.len() > MAX_NOTICES {
            self.notices.pop_front();
        }
    }

    fn set_cursor(&mut self, to: Option<u64>) {
        match to {
            None => {
                self.cursor = None;
                self.playing = false;
                self.replay = None;
                self.snap_to_tail();
            }
            Some(c) => {
                let c = c.clamp(self.log.base(), self.log.end());
                self.cursor = Some(c);
                // Extend the cached fold forwards when possible, else refold from the base.
                let reuse = matches!(&self.replay, Some(r) if r.position <= c && r.position >= self.log.base());
                if reuse {
                    let r = self.replay.as_mut().expect("checked");
                    let from = r.position;
                    for (i, e) in self.log.range(from, c) {
                        r.apply(i, e);
                    }
                    r.position = c;
                } else {
                    let mut r = Derived::fold(&self.log, c);
                    r.position = c;
                    self.replay = Some(r);
                }
            }
        }
    }

    /// Applies an action.
    pub fn reduce(&mut self, action: Action) {
        match action {
            Action::Ingest(batch) => self.ingest(batch),
            Action::ConfigLoaded(c) => self.config = Some(c),
            Action::ParticipantsLoaded(s) => self.statuses = s,
            Action::Socket(s) => {
                if s == SocketState::Open && self.socket != SocketState::Open {
                    if matches!(self.socket, SocketState::Retrying(_)) {
                        self.notify(Level::Info, "event stream reconnected");
                    }
                } else if matches!(s, SocketState::Retrying(_)) && self.socket == SocketState::Open
                {
                    self.notify(
                        Level::Error,
                        "event stream dropped (coordinator down?); reconnecting",
                    );
                }
                self.socket = s;
            }
            Action::TogglePlay => match self.cursor {
                None => {
                    let at = self.position();
                    self.set_cursor(Some(at));
                    self.playing = false;
                }
                Some(_) if self.playing => self.playing = false,
                Some(c) => {
                    if c >= self.log.end() {
                        self.set_cursor(None);
                    } else {
                        self.playing = true;
                    }
                }
            },
            Action::Step(n) => {
                let pos = self.position() as i64;
                let target = (pos + n).max(0) as u64;
                self.set_cursor(Some(target));
                self.playing = false;
            }
            Action::Seek(i) => {
                self.set_cursor(Some(i));
                self.playing = false;
            }
            Action::GoLive => self.set_cursor(None),
            Action::Tick => {
                if let (Some(c), true) = (self.cursor, self.playing) {
                    if c + 1 >= self.log.end() {
                        self.set_cursor(None);
                    } else {
                        self.set_cursor(Some(c + 1));
                    }
                } else if self.catching_up() {
                    self.live_step();
                }
            }
            Action::SpeedUp => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
            Action::SpeedDown => self.speed = self.speed.saturating_sub(1),
            Action::Select(s) => self.selected = s,
            Action::Submitted { id, label } => {
                self.notify(Level::Info, format!("submitted {label} {id}"));
                self.submitted.insert(id.clone(), label);
                self.selected = Some(id);
            }
            Action::SubmitAnswered(Ok(resp)) => {
                if self.answered_ms.len() >= MAX_TXS {
                    self.answered_ms.clear();
                }
                if resp.timings.total_ms > 0.0 {
                    self.answered_ms
                        .insert(resp.id.to_string(), resp.timings.total_ms);
                }
                self.live.note_response(&resp);
                if let Some(r) = self.replay.as_mut() {
                    r.note_response(&resp);
                }
                let outcome = match resp.outcome {
                    Outcome::Committed => "committed".to_string(),
                    Outcome::Aborted => "aborted".to_string(),
                    Outcome::InProgress => "still in progress".to_string(),
                    Outcome::HeuristicMixed | Outcome::HeuristicHazard => {
                        let who: Vec<String> = resp
                            .heuristics
                            .iter()
                            .map(|h| format!("{} answered {:?}", h.participant, h.result))
                            .collect();
                        format!(
                            "{} ({:?} decided; {}): the stores may disagree",
                            TxOutcome::Heuristic(resp.outcome).label(),
                            resp.decision.unwrap_or(Decision::Commit),
                            who.join(", ")
                        )
                    }
                };
                let level = if resp.heuristics.is_empty() {
                    Level::Info
                } else {
                    Level::Error
                };
                let why = resp
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.notify(
                    level,
                    format!(
                        "{} {outcome} in {:.1} ms{why}",
                        resp.id, resp.timings.total_ms
                    ),
                );
            }
            Action::SubmitAnswered(Err(e)) => self.notify(Level::Error, e),
            Action::TxUnknown(id) => {
                if let Some(t) = self.live.txs.get_mut(&id) {
                    t.unknown_to_coordinator = true;
                }
            }
            Action::TxLookedUp(resp) => {
                if self.live.resolve(&resp, &self.statuses) {
                    if let Some(t) = self.live.tx(resp.id.as_str()).filter(|t| t.ended) {
                        let text = format!(
                            "{} {} (learnt from GET /v1/transactions: its last events \
                             happened while the page was disconnected)",
                            t.id,
                            t.outcome().label()
                        );
                        self.notify(Level::Info, text);
                    }
                }
            }
            Action::FaultAnswered(Ok(desc)) => {
                self.fault_error = None;
                self.notify(Level::Info, format!("fault: {desc}"));
            }
            Action::FaultAnswered(Err(e)) => {
                self.fault_error = Some(e.clone());
                self.notify(Level::Error, e);
            }
            Action::Notify(level, text) => self.notify(level, text),
            Action::ScenarioStart {
                name,
                title,
                total,
                generation,
            } => {
                self.scenario = Some(ScenarioRun {
                    name,
                    title,
                    step: 0,
                    total,
                    narration: Vec::new(),
                    finished: false,
                    generation,
                });
            }
            Action::ScenarioStep { generation, text } => {
                if let Some(s) = self
                    .scenario
                    .as_mut()
                    .filter(|s| s.generation == generation)
                {
                    s.step = (s.step + 1).min(s.total);
                    if !text.is_empty() {
                        s.narration.push(text);
                    }
                }
            }
            Action::ScenarioEnd { generation } => {
                if let Some(s) = self
                    .scenario
                    .as_mut()
                    .filter(|s| s.generation == generation)
                {
                    s.finished = true;
                }
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::Escape => self.help = false,
        }
    }

    /// Paced live mode: one event forward.
    fn live_step(&mut self) {
        let next = self.follow + 1;
        if next >= self.log.end() || self.follow < self.log.base() {
            self.snap_to_tail();
            return;
        }
        if let (Some(t), Some(e)) = (self.trail.as_mut(), self.log.get(self.follow)) {
            t.apply(self.follow, e);
            self.follow = next;
        } else {
            self.snap_to_tail();
        }
    }

    fn ingest(&mut self, batch: Vec<Incoming>) {
        let events = batch
            .iter()
            .filter(|i| matches!(i, Incoming::Event(_)))
            .count() as u64;
        if self.paced && self.cursor.is_none() && events > 0 {
            let lag = self.log.end() - self.follow.min(self.log.end()) + events;
            if lag > LIVE_LAG_MAX {
                // Too far behind (load): show the tail.
                self.follow = self.log.end() + events;
                self.trail = None;
            } else if self.trail.is_none() {
                // Caught up until now: walk from here, with the fold as it is.
                self.follow = self.log.end();
                self.trail = Some(self.live.clone());
            }
        }
        self.batch_start = self.log.end();
        // The log's write/fsync events reach the stream after the decision they enabled;
        // record them in causal order (within a batch).
        let batch = crate::layout::causal_order_by(batch, |i| match i {
            Incoming::Event(e) => Some(&**e),
            Incoming::Lagged(_) => None,
        });
        let mut n = 0;
        for inc in batch {
            match inc {
                Incoming::Event(ev) if is_heartbeat(&ev) => {
                    self.heartbeats += 1;
                    self.live.observe_run(&ev.run);
                }
                Incoming::Event(ev) => {
                    let ev = *ev;
                    let i = self.log.push(ev);
                    if let Some(e) = self.log.get(i) {
                        self.live.apply(i, e);
                    }
                    n += 1;
                }
                Incoming::Lagged(k) => {
                    self.lagged += k;
                }
            }
        }
        self.batch_len = n;
        if let Some(c) = self.cursor {
            if c < self.log.base() {
                // The replay position was evicted: move to the oldest retained event.
                self.set_cursor(Some(self.log.base()));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use twopc_protocol::event::Phase;
    use twopc_protocol::TxId;

    pub fn ev(seq: u64, txid: Option<&str>, kind: EventKind) -> Event {
        Event {
            run: "c1-1".into(),
            seq,
            at_ms: 1_000 + seq,
            txid: txid.map(|t| TxId::new(t).unwrap()),
            kind,
        }
    }

    pub fn sent(to: &str, t: &str) -> EventKind {
        EventKind::MessageSent {
            to: to.into(),
            msg_type: MessageType::from_wire(t).expect("a message type"),
            summary: format!("{} t1", t.to_uppercase()),
        }
    }

    pub fn recv(from: &str, t: &str, summary: &str) -> EventKind {
        EventKind::MessageReceived {
            from: from.into(),
            msg_type: MessageType::from_wire(t).expect("a message type"),
            summary: summary.into(),
        }
    }

    /// A full happy-path transaction t1 over bank and ledger.
    pub fn happy(txid: &str) -> Vec<Event> {
        let t = Some(txid);
        let kinds = vec![
            EventKind::TxBegin {
                participants: vec!["bank".into(), "ledger".into()],
            },
            sent("bank", "prepare"),
            sent("ledger", "prepare"),
            recv("bank", "vote", "VOTE YES t1"),
            EventKind::Vote {
                participant: "bank".into(),
                vote: Vote::Yes,
                reason: None,
            },
            recv("ledger", "vote", "VOTE YES t1"),
            EventKind::Vote {
                participant: "ledger".into(),
                vote: Vote::Yes,
                reason: None,
            },
            EventKind::LogWrite {
                record: LogRecordKind::Commit,
                lsn: 1,
            },
            EventKind::LogFsync {
                records: 1,
                micros: 130,
            },
            EventKind::Decision {
                decision: Decision::Commit,
                reason: None,
            },
            sent("bank", "commit"),
            sent("ledger", "commit"),
            recv("bank", "ack", "ACK Commit t1 (Applied)"),
            EventKind::Ack {
                participant: "bank".into(),
                decision: Decision::Commit,
            },
            recv("ledger", "ack", "ACK Commit t1 (Applied)"),
            EventKind::Ack {
                participant: "ledger".into(),
                decision: Decision::Commit,
            },
            EventKind::TxEnd {
                decision: Decision::Commit,
                prepare_ms: 1.5,
                decide_ms: 0.2,
                commit_ms: 1.0,
                heuristic: false,
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                // LogFsync carries no txid.
                let tx = if matches!(k, EventKind::LogFsync { .. }) {
                    None
                } else {
                    t
                };
                ev(i as u64, tx, k)
            })
            .collect()
    }

    fn ingest_all(m: &mut Model, evs: Vec<Event>) {
        m.reduce(Action::Ingest(
            evs.into_iter()
                .map(|e| Incoming::Event(Box::new(e)))
                .collect(),
        ));
    }

    #[test]
    fn parses_events_and_lagged_notes() {
        let e = r#"{"run":"c1-1","seq":3,"at_ms":5,"txid":"t1","kind":"vote","participant":"bank","vote":"no","reason":"guard"}"#;
        match parse_incoming(e).unwrap() {
            Incoming::Event(ev) => {
                assert_eq!(ev.seq, 3);
                assert!(matches!(ev.kind, EventKind::Vote { vote: Vote::No, .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_incoming(r#"{"lagged": 42}"#).unwrap(),
            Incoming::Lagged(42)
        );
        assert!(parse_incoming("not json").is_err());
        assert_eq!(batch_interval_ms(1), 0);
        assert!(batch_interval_ms(1000) > batch_interval_ms(50));
        assert!(parse_incoming(r#"{"kind":"nope"}"#).is_err());
    }

    #[test]
    fn api_errors_are_shown_verbatim() {
        let body = r#"{"error":"faults_disabled","message":"fault injection is disabled; start the coordinator with fault_injection = true"}"#;
        assert_eq!(
            error_text(403, body),
            "403 faults_disabled: fault injection is disabled; start the coordinator with fault_injection = true"
        );
        assert_eq!(error_text(502, ""), "HTTP 502");
        assert_eq!(error_text(500, "oops"), "HTTP 500: oops");
    }

    #[test]
    fn log_caps_and_keeps_absolute_indices() {
        let mut log = EventLog::with_cap(3);
        for i in 0..5 {
            assert_eq!(
                log.push(ev(
                    i,
                    None,
                    EventKind::LogFsync {
                        records: 1,
                        micros: 1
                    }
                )),
                i
            );
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.base(), 2);
        assert_eq!(log.end(), 5);
        assert_eq!(log.evicted(), 2);
        assert!(log.get(1).is_none());
        assert_eq!(log.get(4).unwrap().seq, 4);
        let idx: Vec<u64> = log.range(0, 10).map(|(i, _)| i).collect();
        assert_eq!(idx, vec![2, 3, 4]);
        let idx: Vec<u64> = log.range(3, 4).map(|(i, _)| i).collect();
        assert_eq!(idx, vec![3]);
    }

    #[test]
    fn happy_path_badges() {
        let evs = happy("t1");
        let mut d = Derived::starting_at(0);
        // After both votes: both participants prepared (uncertain), coordinator working.
        for (i, e) in evs.iter().enumerate().take(7) {
            d.apply(i as u64, e);
        }
        let t = d.tx("t1").unwrap();
        assert_eq!(t.parts["bank"].badge.badge, Badge::Prepared);
        assert_eq!(t.parts["ledger"].badge.badge, Badge::Prepared);
        assert_eq!(t.parts["bank"].prepared_at_ms, Some(1_004));
        assert_eq!(t.coordinator.badge, Badge::Working);
        assert_eq!(t.outcome(), TxOutcome::InProgress);
        // Log write then fsync.
        d.apply(7, &evs[7]);
        assert_eq!(d.tx("t1").unwrap().log.badge, Badge::Working);
        d.apply(8, &evs[8]);
        assert_eq!(d.tx("t1").unwrap().log.badge, Badge::Committed);
        assert_eq!(d.tx("t1").unwrap().log.text, "COMMIT durable");
        d.apply(9, &evs[9]);
        assert_eq!(
            d.tx("t1").unwrap().outcome(),
            TxOutcome::Decided(Decision::Commit)
        );
        for (i, e) in evs.iter().enumerate().skip(10) {
            d.apply(i as u64, e);
        }
        let t = d.tx("t1").unwrap();
        assert_eq!(t.outcome(), TxOutcome::Done(Decision::Commit));
        assert_eq!(t.client.badge, Badge::Committed);
        assert_eq!(t.parts["ledger"].badge.badge, Badge::Committed);
        assert_eq!(t.parts["ledger"].prepared_at_ms, None);
        assert_eq!(t.timings.unwrap().prepare_ms, 1.5);
        assert_eq!(d.counts.committed, 1);
        assert_eq!(d.counts.messages, 8);
        assert_eq!(
            t.participants,
            vec!["bank".to_string(), "ledger".to_string()]
        );
    }

    /// A `heuristic` event makes the transaction's outcome heuristic, its participant's
    /// badge HEURISTIC, and it stays so after tx_end (never shown as plain "committed").
    #[test]
    fn a_heuristic_ack_is_shown_as_a_heuristic_outcome() {
        let mut d = Derived::starting_at(0);
        let mut evs = happy("t1");
        let end = evs.len() - 1; // tx_end
        evs.insert(
            end,
            ev(
                end as u64,
                Some("t1"),
                EventKind::Heuristic {
                    participant: "ledger".into(),
                    decision: Decision::Commit,
                    result: HeuristicKind::Conflict,
                },
            ),
        );
        for (i, e) in evs.iter().enumerate() {
            d.apply(i as u64, e);
        }
        let t = d.tx("t1").unwrap();
        assert_eq!(t.outcome(), TxOutcome::Heuristic(Outcome::HeuristicMixed));
        assert_eq!(t.outcome().label(), "HEURISTIC MIXED");
        assert_eq!(t.outcome().badge(), Badge::Heuristic);
        assert_eq!(t.parts["ledger"].badge.badge, Badge::Heuristic);
        assert_eq!(t.parts["bank"].badge.badge, Badge::Committed);
        assert_eq!(t.client.badge, Badge::Heuristic);
        assert_eq!(t.coordinator.badge, Badge::Heuristic);
        assert_eq!((d.counts.committed, d.counts.heuristic), (0, 1));
        // The coordinator's answer carries them too (a page that missed the event).
        let mut d = Derived::starting_at(0);
        let evs = happy("t2");
        for (i, e) in evs[..10].iter().enumerate() {
            d.apply(i as u64, e);
        }
        let resp = TransactionResponse {
            id: TxId::new("t2").unwrap(),
            outcome: Outcome::HeuristicHazard,
            reason: None,
            timings: PhaseTimings::default(),
            decision: Some(Decision::Commit),
            heuristics: vec![HeuristicReport {
                participant: "bank".parse().unwrap(),
                result: HeuristicKind::NotPrepared,
            }],
        };
        assert!(d.resolve(&resp, &[]));
        let t = d.tx("t2").unwrap();
        assert_eq!(t.outcome(), TxOutcome::Heuristic(Outcome::HeuristicHazard));
        assert_eq!(t.outcome().label(), "HEURISTIC HAZARD");
        assert_eq!(t.parts["bank"].badge.badge, Badge::Heuristic);
    }

    #[test]
    fn no_vote_aborts() {
        let mut d = Derived::starting_at(0);
        let t = Some("t2");
        let evs = [
            ev(
                0,
                t,
                EventKind::TxBegin {
                    participants: vec!["bank".into(), "ledger".into()],
                },
            ),
            ev(1, t, sent("bank", "prepare")),
            ev(2, t, sent("ledger", "prepare")),
            ev(
                3,
                t,
                EventKind::Vote {
                    participant: "ledger".into(),
                    vote: Vote::No,
                    reason: Some("guard".into()),
                },
            ),
            ev(
                4,
                t,
                EventKind::Decision {
                    decision: Decision::Abort,
                    reason: Some("participant ledger voted no: guard".into()),
                },
            ),
            ev(
                5,
                t,
                EventKind::Vote {
                    participant: "bank".into(),
                    vote: Vote::Yes,
                    reason: None,
                },
            ),
        ];
        for (i, e) in evs.iter().enumerate() {
            d.apply(i as u64, e);
        }
        let tx = d.tx("t2").unwrap();
        assert_eq!(tx.parts["ledger"].badge.badge, Badge::Aborted);
        assert_eq!(tx.coordinator.badge, Badge::Aborted);
        assert_eq!(tx.parts["bank"].badge.badge, Badge::Prepared);
        assert!(tx.reason.as_deref().unwrap().contains("voted no"));
        assert_eq!(tx.outcome(), TxOutcome::Decided(Decision::Abort));
    }

    #[test]
    fn disconnect_timeouts_and_restart_make_prepared_in_doubt() {
        let evs = happy("t1");
        let mut d = Derived::starting_at(0);
        for (i, e) in evs.iter().enumerate().take(7) {
            d.apply(i as u64, e);
        }
        d.apply(
            7,
            &ev(
                7,
                None,
                EventKind::ParticipantDisconnected {
                    participant: "ledger".into(),
                    reason: "partition".into(),
                },
            ),
        );
        let t = d.tx("t1").unwrap();
        assert_eq!(t.parts["ledger"].badge.badge, Badge::InDoubt);
        assert_eq!(t.parts["bank"].badge.badge, Badge::Prepared);
        assert_eq!(d.nodes["ledger"].connected, Some(false));
        assert_eq!(t.outcome(), TxOutcome::InDoubt);
        // A new coordinator run: the rest of the prepared participants are in doubt too.
        let mut e = ev(
            0,
            None,
            EventKind::CoordinatorStarted {
                coordinator: "c1".into(),
                recovering: 1,
            },
        );
        e.run = "c1-2".into();
        d.apply(8, &e);
        let t = d.tx("t1").unwrap();
        assert_eq!(t.parts["bank"].badge.badge, Badge::InDoubt);
        assert_eq!(t.coordinator.text, "recovering");
        assert_eq!(d.counts.coordinator_starts, 1);
        // Timeout on a prepared participant, decision request.
        let mut d = Derived::starting_at(0);
        for (i, e) in evs.iter().enumerate().take(7) {
            d.apply(i as u64, e);
        }
        d.apply(
            7,
            &ev(
                7,
                Some("t1"),
                EventKind::Timeout {
                    participant: "bank".into(),
                    phase: Phase::Commit,
                },
            ),
        );
        d.apply(
            8,
            &ev(
                8,
                Some("t1"),
                EventKind::DecisionRequested {
                    participant: "ledger".into(),
                },
            ),
        );
        let t = d.tx("t1").unwrap();
        assert_eq!(t.parts["bank"].badge.badge, Badge::InDoubt);
        assert_eq!(t.parts["ledger"].badge.badge, Badge::InDoubt);
        let held = held_prepared(&d, 2_000);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].held_ms, Some(2_000 - 1_004));
        // The ack resolves it.
        d.apply(
            9,
            &ev(
                9,
                Some("t1"),
                EventKind::Ack {
                    participant: "bank".into(),
                    decision: Decision::Commit,
                },
            ),
        );
        assert_eq!(held_prepared(&d, 2_000).len(), 1);
    }

    #[test]
    fn lookups_resolve_transactions_whose_events_were_missed() {
        use twopc_protocol::api::{Outcome, PhaseTimings};
        let evs = happy("t1");
        let mut m = Model::default();
        ingest_all(&mut m, evs[..10].to_vec());
        assert_eq!(
            m.live.stale_unfinished(1_009 + 500, 1_000, 10),
            Vec::<String>::new()
        );
        assert_eq!(
            m.live.stale_unfinished(1_009 + 1_000, 1_000, 10),
            vec!["t1".to_string()]
        );
        let resp = |outcome| TransactionResponse {
            id: TxId::new("t1").unwrap(),
            outcome,
            reason: None,
            timings: PhaseTimings {
                prepare_ms: 1.0,
                decide_ms: 1.0,
                commit_ms: 1.0,
                total_ms: 3.0,
            },
            decision: None,
            heuristics: Vec::new(),
        };
        let st = |name: &str, connected, awaiting_ack| ParticipantStatus {
            name: name.parse().unwrap(),
            connected,
            reported_prepared: 0,
            foreign_prepared: 0,
            awaiting_ack,
            kind: twopc_protocol::ParticipantKind::Redis,
            url: String::new(),
        };
        // Still running: nothing changes.
        assert!(!m.live.clone().resolve(&resp(Outcome::InProgress), &[]));
        // Committed, but ledger still owes its ack: only bank is resolved.
        m.statuses = vec![st("bank", true, 0), st("ledger", true, 1)];
        m.reduce(Action::TxLookedUp(resp(Outcome::Committed)));
        let t = m.live.tx("t1").unwrap();
        assert_eq!(t.parts["bank"].badge.badge, Badge::Committed);
        assert_eq!(t.parts["ledger"].badge.badge, Badge::Prepared);
        assert!(!t.ended);
        // Later every participant is settled: finished.
        m.statuses = vec![st("bank", true, 0), st("ledger", true, 0)];
        m.reduce(Action::TxLookedUp(resp(Outcome::Committed)));
        let t = m.live.tx("t1").unwrap();
        assert!(t.ended);
        assert_eq!(t.outcome(), TxOutcome::Done(Decision::Commit));
        assert_eq!(t.timings.unwrap().total_ms, Some(3.0));
        assert_eq!(m.live.counts.committed, 1);
        assert!(m
            .notices
            .back()
            .unwrap()
            .text
            .contains("while the page was disconnected"));
        // Unknown ones are not asked about again.
        ingest_all(&mut m, happy("t2")[..3].to_vec());
        assert_eq!(
            m.live.stale_unfinished(10_000, 1_000, 10),
            vec!["t2".to_string()]
        );
        m.reduce(Action::TxUnknown("t2".into()));
        assert!(m.live.stale_unfinished(10_000, 1_000, 10).is_empty());
        // Finished transactions are left alone.
        assert!(!m.live.resolve(&resp(Outcome::Aborted), &m.statuses.clone()));
    }

    #[test]
    fn derived_caps_transactions() {
        let mut d = Derived::starting_at(0);
        d.max_txs = 3;
        for i in 0..5u64 {
            let id = format!("t{i}");
            d.apply(
                i,
                &ev(
                    i,
                    Some(&id),
                    EventKind::TxBegin {
                        participants: vec!["bank".into()],
                    },
                ),
            );
        }
        assert_eq!(d.tx_count(), 3);
        assert_eq!(d.evicted_txs, 2);
        assert!(d.tx("t0").is_none());
        assert_eq!(d.txs().next().unwrap().id, "t2");
        assert_eq!(d.counts.txs, 5);
    }

    #[test]
    fn replay_cursor_steps_seeks_and_goes_live() {
        let mut m = Model::default();
        ingest_all(&mut m, happy("t1"));
        assert!(m.is_live());
        assert_eq!(m.position(), 17);
        // Pause freezes at the tail.
        m.reduce(Action::TogglePlay);
        assert_eq!(m.cursor, Some(17));
        assert!(!m.playing);
        // New events do not move a paused cursor.
        ingest_all(&mut m, happy("t2"));
        assert_eq!(m.position(), 17);
        assert_eq!(m.view().tx("t2"), None);
        assert!(m.live.tx("t2").is_some());
        // Step back into t1: before the fsync (index 8), the log record is only written.
        m.reduce(Action::Seek(8));
        assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Working);
        m.reduce(Action::Step(1));
        assert_eq!(m.position(), 9);
        assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Committed);
        m.reduce(Action::Step(-5));
        assert_eq!(m.position(), 4);
        assert_eq!(
            m.view().tx("t1").unwrap().parts["bank"].badge.badge,
            Badge::Working
        );
        // Clamps at both ends.
        m.reduce(Action::Step(-100));
        assert_eq!(m.position(), 0);
        assert!(m.view().tx("t1").is_none());
        m.reduce(Action::Step(1000));
        assert_eq!(m.position(), 34);
        // Play from near the end: ticks advance, then live again.
        m.reduce(Action::Seek(32));
        m.reduce(Action::TogglePlay);
        assert!(m.playing);
        m.reduce(Action::Tick);
        assert_eq!(m.position(), 33);
        m.reduce(Action::Tick);
        assert!(m.is_live());
        // Space when paused at the tail goes live.
        m.reduce(Action::TogglePlay);
        m.reduce(Action::TogglePlay);
        assert!(m.is_live());
        // Step back from live.
        m.reduce(Action::Step(-1));
        assert_eq!(m.cursor, Some(33));
        m.reduce(Action::GoLive);
        assert!(m.is_live());
    }

    #[test]
    fn ingest_records_log_events_before_the_decision() {
        let mut evs = happy("t1");
        let write = evs.remove(7);
        let fsync = evs.remove(7);
        evs.insert(10, write);
        evs.insert(11, fsync);
        let mut m = Model::default();
        ingest_all(&mut m, evs);
        let kinds: Vec<String> = m
            .log
            .range(6, 10)
            .map(|(_, e)| {
                serde_json::to_value(&e.kind).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, ["vote", "log_write", "log_fsync", "decision"]);
    }

    #[test]
    fn paced_live_mode_walks_to_the_tail() {
        let mut m = Model {
            paced: true,
            ..Model::default()
        };
        ingest_all(&mut m, happy("t1"));
        assert!(m.is_live());
        assert!(m.catching_up());
        assert_eq!(m.position(), 0);
        assert_eq!(m.ticker(), Some(160));
        assert!(m.view().tx("t1").is_none());
        assert_eq!(
            m.live.counts.committed, 1,
            "the live fold is complete at once"
        );
        m.reduce(Action::Tick);
        assert_eq!(m.position(), 1);
        assert_eq!(m.view().tx("t1").unwrap().client.badge, Badge::Working);
        for _ in 0..7 {
            m.reduce(Action::Tick);
        }
        assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Working);
        // Pausing freezes where the view is, not at the tail.
        m.reduce(Action::TogglePlay);
        assert_eq!(m.cursor, Some(8));
        assert_eq!(m.ticker(), None);
        m.reduce(Action::GoLive);
        assert!(!m.catching_up());
        assert_eq!(m.position(), 17);
        // A second transaction walks again; ticks past the end stop.
        ingest_all(&mut m, happy("t2"));
        assert_eq!(m.position(), 17);
        for _ in 0..40 {
            m.reduce(Action::Tick);
        }
        assert_eq!(m.position(), 34);
        assert!(!m.catching_up());
        assert_eq!(
            m.view().tx("t2").unwrap().outcome(),
            TxOutcome::Done(Decision::Commit)
        );
        // Too far behind: jump to the tail.
        let mut burst = Vec::new();
        for k in 0..3 {
            burst.extend(happy(&format!("b{k}")));
        }
        ingest_all(&mut m, burst);
        assert!(!m.catching_up());
        assert_eq!(m.position(), m.log.end());
        assert_eq!(m.ticker(), None);
    }

    #[test]
    fn replay_cursor_follows_eviction() {
        let mut m = Model::with_log(EventLog::with_cap(10));
        ingest_all(&mut m, happy("t1"));
        assert_eq!(m.log.base(), 7);
        m.reduce(Action::Seek(0));
        assert_eq!(m.cursor, Some(7));
        ingest_all(&mut m, happy("t2"));
        assert_eq!(m.cursor, Some(24));
        assert_eq!(m.log.evicted(), 24);
        // The live fold saw everything even though the log rolled.
        assert_eq!(m.live.counts.committed, 2);
    }

    #[test]
    fn speed_and_ticks() {
        let mut m = Model::default();
        assert_eq!(m.speed_factor(), 1.0);
        assert_eq!(m.tick_ms(), 500);
        m.reduce(Action::SpeedUp);
        assert_eq!(m.tick_ms(), 250);
        for _ in 0..20 {
            m.reduce(Action::SpeedUp);
        }
        assert_eq!(m.speed_factor(), 16.0);
        for _ in 0..20 {
            m.reduce(Action::SpeedDown);
        }
        assert_eq!(m.speed_factor(), 0.25);
        assert_eq!(m.tick_ms(), 2000);
    }

    #[test]
    fn lagged_notices_submissions_and_scenarios() {
        let mut m = Model::default();
        m.reduce(Action::Ingest(vec![
            Incoming::Lagged(7),
            Incoming::Lagged(3),
        ]));
        assert_eq!(m.lagged, 10);
        m.reduce(Action::Submitted {
            id: "web-1".into(),
            label: "transfer".into(),
        });
        assert_eq!(m.selected.as_deref(), Some("web-1"));
        m.reduce(Action::FaultAnswered(Err("403 faults_disabled: no".into())));
        assert_eq!(m.fault_error.as_deref(), Some("403 faults_disabled: no"));
        for i in 0..10 {
            m.reduce(Action::Notify(Level::Info, format!("n{i}")));
        }
        assert_eq!(m.notices.len(), MAX_NOTICES);
        assert_eq!(m.notices.back().unwrap().text, "n9");
        m.reduce(Action::ScenarioStart {
            name: "happy".into(),
            title: "Happy".into(),
            total: 2,
            generation: 1,
        });
        m.reduce(Action::ScenarioStep {
            generation: 1,
            text: "one".into(),
        });
        m.reduce(Action::ScenarioStep {
            generation: 0,
            text: "stale".into(),
        });
        m.reduce(Action::ScenarioEnd { generation: 1 });
        let s = m.scenario.as_ref().unwrap();
        assert_eq!(s.narration, vec!["one".to_string()]);
        assert!(s.finished);
        m.reduce(Action::Socket(SocketState::Open));
        m.reduce(Action::Socket(SocketState::Retrying(500)));
        assert!(m.notices.back().unwrap().text.contains("dropped"));
    }
}
