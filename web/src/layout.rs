//! Layout of the message diagram: lanes, rows, arrows and marks, computed from the event log.
//!
//! The diagram is a sequence diagram in the Maelstrom style: one vertical lane per node
//! (client, decision log, coordinator, each participant), time flowing downwards, one row per
//! drawn event. A message the coordinator sent is an arrow from the coordinator's lane to the
//! participant's; a message it received is an arrow the other way; log writes point at the log
//! lane and fsyncs, decisions, timeouts and retries are marks on a lane; faults and coordinator
//! restarts are banners across every lane. Only the last [`MAX_ROWS`] drawable events up to
//! the cursor are laid out, so the page stays cheap to render under load.
//!
//! Everything here is pure and unit-tested; the Yew component only turns [`Diagram`] into SVG.

use crate::model::{Derived, EventLog, NodeBadge, PublicConfig, TxView};
use twopc_protocol::api::HeuristicKind;
use twopc_protocol::{Decision, Event, EventKind, LogRecordKind, MessageType};

/// Horizontal distance between lanes (SVG user units).
pub const LANE_GAP: f64 = 170.0;
/// Space left of the first lane and right of the last one.
pub const MARGIN_X: f64 = 86.0;
/// Height of the lane headers (name and badge).
pub const HEADER_H: f64 = 72.0;
/// Height of one row.
pub const ROW_H: f64 = 23.0;
/// How far an arrow drops while it crosses lanes: messages take time.
pub const SLANT: f64 = 18.0;
/// Rows drawn at most.
pub const MAX_ROWS: usize = 22;
/// Arrowhead length and half-width.
pub const HEAD_LEN: f64 = 9.0;
/// Arrowhead half-width.
pub const HEAD_HALF: f64 = 4.5;
/// With more new events than this in one frame, new arrows are not staggered.
pub const MAX_STAGGER: usize = 24;

/// What a lane stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client that submitted the transaction.
    Client,
    /// The coordinator's decision log.
    Log,
    /// The coordinator.
    Coordinator,
    /// A participant.
    Participant,
}

/// One lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// Node name: `client`, `log`, `coordinator` or the participant's name.
    pub name: String,
    /// Text in the header.
    pub title: String,
    /// What it is.
    pub role: Role,
    /// Its x coordinate.
    pub x: f64,
    /// Its badge for the focused transaction.
    pub badge: NodeBadge,
    /// False when the node is known to be down / disconnected.
    pub up: bool,
}

/// The lane names in display order: client, log, coordinator, then participants (configured
/// ones in configuration order, then any others seen in events, by name).
pub fn lane_names(config: Option<&PublicConfig>, view: &Derived) -> Vec<(String, Role)> {
    let mut out = vec![
        ("client".to_string(), Role::Client),
        ("log".to_string(), Role::Log),
        ("coordinator".to_string(), Role::Coordinator),
    ];
    let mut parts: Vec<String> = config
        .map(|c| c.participants.iter().map(|p| p.name.to_string()).collect())
        .unwrap_or_default();
    let mut extra: Vec<String> = view
        .nodes
        .keys()
        .cloned()
        .chain(view.txs().flat_map(|t| t.participants.iter().cloned()))
        .filter(|n| !parts.contains(n))
        .collect();
    extra.sort();
    extra.dedup();
    parts.extend(extra);
    for p in parts {
        // A participant named like a fixed lane would collide; give it its own lane anyway.
        out.push((p, Role::Participant));
    }
    out
}

/// The x coordinate of lane `i`.
pub fn lane_x(i: usize) -> f64 {
    MARGIN_X + i as f64 * LANE_GAP
}

/// Diagram width for `lanes` lanes.
pub fn diagram_width(lanes: usize) -> f64 {
    2.0 * MARGIN_X + lanes.saturating_sub(1) as f64 * LANE_GAP
}

/// Diagram height (fixed, so the page does not jump).
pub fn diagram_height() -> f64 {
    HEADER_H + MAX_ROWS as f64 * ROW_H + SLANT + 12.0
}

/// The y coordinate of row `row` (the top of its arrow).
pub fn row_y(row: usize) -> f64 {
    HEADER_H + 10.0 + row as f64 * ROW_H
}

/// The three points of an arrowhead whose tip is at `(x2, y2)`, coming from `(x1, y1)`.
pub fn arrow_head(x1: f64, y1: f64, x2: f64, y2: f64) -> [(f64, f64); 3] {
    let (dx, dy) = (x2 - x1, y2 - y1);
    let len = (dx * dx + dy * dy).sqrt();
    if len < f64::EPSILON {
        return [(x2, y2); 3];
    }
    let (ux, uy) = (dx / len, dy / len);
    let (bx, by) = (x2 - ux * HEAD_LEN, y2 - uy * HEAD_LEN);
    let (nx, ny) = (-uy * HEAD_HALF, ux * HEAD_HALF);
    [(x2, y2), (bx + nx, by + ny), (bx - nx, by - ny)]
}

/// What an item is.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// An arrow between two lanes; coordinates are relative to the row's y.
    Arrow {
        /// Lane index it starts at.
        from: usize,
        /// Lane index it points at.
        to: usize,
        /// Start x.
        x1: f64,
        /// End x.
        x2: f64,
        /// End y (start y is 0).
        y2: f64,
        /// Arrowhead polygon.
        head: [(f64, f64); 3],
    },
    /// A mark on one lane.
    Mark {
        /// Lane index.
        lane: usize,
        /// Its x.
        x: f64,
    },
    /// A banner across all lanes.
    Banner,
}

/// Kinds of items, for styling and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A protocol message (PREPARE, VOTE, COMMIT, ABORT, ACK, DECISION?, ...).
    Message,
    /// The client's request and the answer.
    Client,
    /// A log record append.
    LogWrite,
    /// Anything drawn as a mark.
    Mark,
    /// Faults and restarts.
    Banner,
}

/// One drawn event.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Absolute index of the event in the log (the render key).
    pub index: u64,
    /// Row number.
    pub row: usize,
    /// The row's y.
    pub y: f64,
    /// Geometry.
    pub shape: Shape,
    /// Kind.
    pub kind: ItemKind,
    /// Text drawn next to it.
    pub label: String,
    /// CSS class (`msg-prepare`, `msg-vote-no`, `mark-fsync`, ...).
    pub class: String,
    /// The payload summary shown on hover.
    pub tooltip: String,
    /// The transaction.
    pub txid: Option<String>,
    /// Milliseconds since the first drawn event.
    pub rel_ms: u64,
    /// Rank among the items that arrived in the latest batch (for staggered animation).
    pub new_rank: Option<usize>,
}

/// The whole diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagram {
    /// viewBox width.
    pub width: f64,
    /// viewBox height.
    pub height: f64,
    /// Lanes.
    pub lanes: Vec<Lane>,
    /// Items, oldest first.
    pub items: Vec<Item>,
    /// The transaction whose badges are shown.
    pub focus: Option<String>,
    /// Older events that match the focus but are scrolled out (a lower bound when not
    /// focused: the scan stops at the first one).
    pub hidden_before: u64,
}

/// What the diagram is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct DiagramInput<'a> {
    /// The recorded stream.
    pub log: &'a EventLog,
    /// The fold at `position`.
    pub view: &'a Derived,
    /// The configuration, if loaded.
    pub config: Option<&'a PublicConfig>,
    /// Draw events before this absolute index.
    pub position: u64,
    /// Focus on this transaction.
    pub selected: Option<&'a str>,
    /// Absolute index of the first event of the latest batch (live mode only).
    pub batch_start: Option<u64>,
    /// Whether the coordinator is reachable (the event stream is open).
    pub coordinator_up: bool,
    /// Rows to draw at most.
    pub max_rows: usize,
}

fn upper(msg_type: MessageType) -> String {
    msg_type.as_str().replace('_', " ").to_uppercase()
}

/// The label and CSS class of a protocol message arrow.
pub fn message_style(msg_type: MessageType, summary: &str) -> (String, String) {
    match msg_type {
        MessageType::Prepare => ("PREPARE".into(), "msg-prepare".into()),
        MessageType::Commit => ("COMMIT".into(), "msg-commit".into()),
        MessageType::Abort => ("ABORT".into(), "msg-abort".into()),
        MessageType::CommitOnePhase => ("COMMIT 1PC".into(), "msg-commit".into()),
        MessageType::Vote => {
            if summary.contains("VOTE NO") {
                ("VOTE NO".into(), "msg-vote-no".into())
            } else if summary.contains("READ-ONLY") {
                ("VOTE READ-ONLY".into(), "msg-vote-yes".into())
            } else {
                ("VOTE YES".into(), "msg-vote-yes".into())
            }
        }
        MessageType::Ack => {
            if summary.contains("Abort") {
                ("ACK ABORT".into(), "msg-ack-abort".into())
            } else {
                ("ACK COMMIT".into(), "msg-ack-commit".into())
            }
        }
        MessageType::DecisionRequest => ("DECISION?".into(), "msg-decision-request".into()),
        MessageType::DecisionAnswer => {
            let l = summary
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let l = if l.is_empty() {
                "DECISION".into()
            } else {
                l.to_uppercase()
            };
            (l, "msg-decision-answer".into())
        }
        other => (upper(other), "msg-other".into()),
    }
}

fn result_word(r: HeuristicKind) -> &'static str {
    match r {
        HeuristicKind::Conflict => "conflict",
        HeuristicKind::NotPrepared => "no record",
    }
}

/// Whether an event is drawn at all (pings and votes/acks already drawn as arrows are not).
pub fn drawable(ev: &Event) -> bool {
    match &ev.kind {
        EventKind::MessageSent { msg_type, .. } | EventKind::MessageReceived { msg_type, .. } => {
            !msg_type.is_heartbeat()
        }
        EventKind::Vote { .. } | EventKind::Ack { .. } | EventKind::DecisionRequested { .. } => {
            false
        }
        _ => true,
    }
}

/// The shape, kind, label, class and tooltip of one event, given lane indices.
pub fn item_for(
    ev: &Event,
    lane_of: &dyn Fn(&str) -> Option<usize>,
) -> Option<(Shape, ItemKind, String, String, String)> {
    if !drawable(ev) {
        return None;
    }
    let client = lane_of("client")?;
    let log = lane_of("log")?;
    let coord = lane_of("coordinator")?;
    let txid = ev.txid.as_ref().map(|t| t.as_str()).unwrap_or("");
    let arrow = |from: usize, to: usize| {
        let (x1, x2) = (lane_x(from), lane_x(to));
        Shape::Arrow {
            from,
            to,
            x1,
            x2,
            y2: SLANT,
            head: arrow_head(x1, 0.0, x2, SLANT),
        }
    };
    let mark = |lane: usize| Shape::Mark {
        lane,
        x: lane_x(lane),
    };
    Some(match &ev.kind {
        EventKind::TxBegin { participants } => (
            arrow(client, coord),
            ItemKind::Client,
            "BEGIN".into(),
            "msg-begin".into(),
            format!("client submits {txid} to {}", participants.join(", ")),
        ),
        EventKind::MessageSent {
            to,
            msg_type,
            summary,
        } => {
            let p = lane_of(to)?;
            let (label, class) = message_style(*msg_type, summary);
            (
                arrow(coord, p),
                ItemKind::Message,
                label,
                class,
                format!("coordinator → {to}: {summary}"),
            )
        }
        EventKind::MessageReceived {
            from,
            msg_type,
            summary,
        } => {
            let p = lane_of(from)?;
            let (label, class) = message_style(*msg_type, summary);
            (
                arrow(p, coord),
                ItemKind::Message,
                label,
                class,
                format!("{from} → coordinator: {summary}"),
            )
        }
        EventKind::LogWrite { record, lsn } => (
            arrow(coord, log),
            ItemKind::LogWrite,
            format!("append {}", record.as_str().to_uppercase()),
            format!("log-write log-{record}"),
            format!("decision log: append {} record for {txid} at lsn {lsn} (not yet durable)", record.as_str().to_uppercase()),
        ),
        EventKind::LogFsync { records, micros } => (
            mark(log),
            ItemKind::Mark,
            format!("fsync ×{records} ({micros} µs)"),
            "mark-fsync".into(),
            format!("decision log fsync: {records} record(s) made durable in {micros} µs (group commit)"),
        ),
        EventKind::Decision { decision, reason } => {
            let (label, class) = match decision {
                Decision::Commit => ("DECIDE COMMIT", "mark-decide-commit"),
                Decision::Abort => ("DECIDE ABORT", "mark-decide-abort"),
            };
            (
                mark(coord),
                ItemKind::Mark,
                label.into(),
                class.into(),
                format!(
                    "coordinator decides {:?} for {txid}{}",
                    decision,
                    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
            )
        }
        EventKind::Timeout { participant, phase } => (
            mark(coord),
            ItemKind::Mark,
            format!("timeout {participant}"),
            "mark-timeout".into(),
            format!("no answer from {participant} in phase {phase:?} for {txid}"),
        ),
        EventKind::Retry {
            participant,
            attempt,
        } => (
            mark(coord),
            ItemKind::Mark,
            format!("retry → {participant} #{attempt}"),
            "mark-retry".into(),
            format!("re-sending the decision for {txid} to {participant} (attempt {attempt})"),
        ),
        EventKind::Heuristic {
            participant,
            decision,
            result,
        } => {
            let said = match result {
                HeuristicKind::Conflict => "had finished it the other way",
                HeuristicKind::NotPrepared => "had no record of it",
            };
            (
                // On the coordinator's lane, which found it (a label on the rightmost
                // participant's lane would run off the diagram).
                mark(coord),
                ItemKind::Mark,
                format!("HEURISTIC: {participant} {}", result_word(*result)),
                "mark-heuristic".into(),
                format!(
                    "{participant} acknowledged the {decision:?} of {txid} but {said}: a \
                     heuristic outcome, the stores may disagree"
                ),
            )
        }
        EventKind::TxEnd {
            decision,
            prepare_ms,
            decide_ms,
            commit_ms,
            heuristic,
        } => {
            let (label, class) = match decision {
                _ if *heuristic => ("HEURISTIC", "msg-end-heuristic"),
                Decision::Commit => ("COMMITTED", "msg-end-commit"),
                Decision::Abort => ("ABORTED", "msg-end-abort"),
            };
            (
                arrow(coord, client),
                ItemKind::Client,
                label.into(),
                class.into(),
                format!(
                    "{txid} finished {label}: prepare {prepare_ms:.1} ms, decide {decide_ms:.1} ms, commit {commit_ms:.1} ms"
                ),
            )
        }
        EventKind::ParticipantConnected {
            participant,
            in_doubt,
        } => (
            mark(lane_of(participant)?),
            ItemKind::Mark,
            format!("connected ({in_doubt} in doubt)"),
            "mark-connected".into(),
            format!("{participant} connected and reported {in_doubt} prepared transaction(s)"),
        ),
        EventKind::ParticipantDisconnected {
            participant,
            reason,
        } => (
            mark(lane_of(participant)?),
            ItemKind::Mark,
            "disconnected".into(),
            "mark-disconnected".into(),
            format!("{participant} disconnected: {reason}"),
        ),
        EventKind::FaultInjected { fault } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("⚡ {fault}"),
            "banner-fault".into(),
            format!("fault injected: {fault}"),
        ),
        EventKind::CoordinatorStarted {
            coordinator,
            recovering,
        } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("coordinator {coordinator} started, recovering {recovering}"),
            "banner-start".into(),
            format!(
                "coordinator {coordinator} started (run {}); {recovering} committed transaction(s) to finish from its log",
                ev.run
            ),
        ),
        EventKind::Vote { .. } | EventKind::Ack { .. } | EventKind::DecisionRequested { .. } => {
            return None
        }
    })
}

/// Events without a transaction that matter to a focused one.
fn context_event(ev: &Event) -> bool {
    matches!(
        ev.kind,
        EventKind::FaultInjected { .. }
            | EventKind::CoordinatorStarted { .. }
            | EventKind::ParticipantConnected { .. }
            | EventKind::ParticipantDisconnected { .. }
    )
}

/// The absolute indices of the events to draw (oldest first), and how many matching ones
/// before them were left out.
pub fn select_events(
    log: &EventLog,
    position: u64,
    focus: Option<&TxView>,
    selected: Option<&str>,
    max_rows: usize,
) -> (Vec<u64>, u64) {
    let mut picked: Vec<u64> = Vec::new();
    let mut hidden = 0u64;
    match (selected, focus) {
        (Some(sel), Some(tx)) => {
            // Forward over the transaction's span: its own events, faults and connection
            // changes meanwhile, and the first fsync after its log write.
            let mut fsync_due = false;
            for (i, e) in log.range(tx.first_index, position) {
                let mine = e.txid.as_ref().map(|t| t.as_str()) == Some(sel);
                let take = if mine {
                    if matches!(e.kind, EventKind::LogWrite { .. }) {
                        fsync_due = true;
                    }
                    true
                } else if e.txid.is_none() {
                    if matches!(e.kind, EventKind::LogFsync { .. }) {
                        std::mem::take(&mut fsync_due)
                    } else {
                        context_event(e) && (i <= tx.last_index || !tx.ended)
                    }
                } else {
                    false
                };
                if take && drawable(e) {
                    picked.push(i);
                }
                if tx.ended && i > tx.last_index && !fsync_due {
                    break;
                }
            }
            if picked.len() > max_rows {
                hidden = (picked.len() - max_rows) as u64;
                picked.drain(..picked.len() - max_rows);
            }
        }
        (Some(_), None) => {}
        (None, _) => {
            for (i, e) in log.range(log.base(), position).rev() {
                if drawable(e) {
                    if picked.len() < max_rows {
                        picked.push(i);
                    } else {
                        hidden = i + 1 - log.base();
                        break;
                    }
                }
            }
            picked.reverse();
        }
    }
    (picked, hidden)
}

/// How far [`causal_order`] looks ahead for a decision's log events.
pub const CAUSAL_LOOKAHEAD: usize = 16;

/// The coordinator reports a COMMIT decision only once the COMMIT record is durable, but the
/// log's write and fsync events reach the stream through a separate channel and often arrive
/// after the decision. Draw them in causal order: a transaction's COMMIT-record write (and the
/// next fsync) move up to just before its COMMIT decision.
pub fn causal_order(log: &EventLog, idx: Vec<u64>) -> Vec<u64> {
    let items: Vec<(u64, Option<&Event>)> = idx.into_iter().map(|i| (i, log.get(i))).collect();
    causal_order_by(items, |(_, e)| *e)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// [`causal_order`] over any list of items that refer to events (`ev` gives the event of an
/// item, if known): the ingest path applies it to each incoming batch.
pub fn causal_order_by<T>(mut idx: Vec<T>, ev: impl Fn(&T) -> Option<&Event>) -> Vec<T> {
    let is_write = |i: &T, tx: &Option<twopc_protocol::TxId>| {
        matches!(ev(i), Some(e) if &e.txid == tx
            && matches!(&e.kind, EventKind::LogWrite { record, .. } if *record == LogRecordKind::Commit))
    };
    let is_fsync = |i: &T| matches!(ev(i).map(|e| &e.kind), Some(EventKind::LogFsync { .. }));
    let mut i = 0;
    while i < idx.len() {
        let tx = match ev(&idx[i]) {
            Some(Event {
                txid,
                kind:
                    EventKind::Decision {
                        decision: Decision::Commit,
                        ..
                    },
                ..
            }) => txid.clone(),
            _ => {
                i += 1;
                continue;
            }
        };
        let end = idx.len().min(i + 1 + CAUSAL_LOOKAHEAD);
        if let Some(j) = (i + 1..end).find(|&j| is_write(&idx[j], &tx)) {
            let end = idx.len().min(j + 1 + CAUSAL_LOOKAHEAD);
            let f = (j + 1..end).find(|&k| is_fsync(&idx[k]));
            let fsync = f.map(|k| idx.remove(k));
            let write = idx.remove(j);
            idx.insert(i, write);
            i += 1;
            if let Some(fs) = fsync {
                idx.insert(i, fs);
                i += 1;
            }
        }
        i += 1;
    }
    idx
}

/// Lays out the diagram.
pub fn diagram(input: DiagramInput<'_>) -> Diagram {
    let names = lane_names(input.config, input.view);
    let lane_of = |n: &str| -> Option<usize> {
        // Fixed lanes first; participants by name after them.
        match n {
            "client" => Some(0),
            "log" => Some(1),
            "coordinator" => Some(2),
            _ => names
                .iter()
                .skip(3)
                .position(|(name, _)| name == n)
                .map(|i| i + 3),
        }
    };
    let focus_tx = input.selected.and_then(|s| input.view.tx(s));
    let (indices, hidden_before) = select_events(
        input.log,
        input.position,
        focus_tx,
        input.selected,
        input.max_rows,
    );
    let indices = causal_order(input.log, indices);
    let mut items = Vec::with_capacity(indices.len());
    let first_ms = indices
        .first()
        .and_then(|i| input.log.get(*i))
        .map(|e| e.at_ms)
        .unwrap_or(0);
    let mut new_rank = 0usize;
    for i in indices {
        let Some(ev) = input.log.get(i) else { continue };
        let Some((shape, kind, label, class, tooltip)) = item_for(ev, &lane_of) else {
            continue;
        };
        let row = items.len();
        let rank = match input.batch_start {
            Some(b) if i >= b => {
                new_rank += 1;
                Some(new_rank - 1)
            }
            _ => None,
        };
        items.push(Item {
            index: i,
            row,
            y: row_y(row),
            shape,
            kind,
            label,
            class,
            tooltip,
            txid: ev.txid.as_ref().map(|t| t.as_str().to_string()),
            rel_ms: ev.at_ms.saturating_sub(first_ms),
            new_rank: rank,
        });
    }
    if new_rank > MAX_STAGGER {
        for it in &mut items {
            it.new_rank = it.new_rank.map(|_| 0);
        }
    }
    // Badges: the selected transaction, else the latest drawn one.
    let focus = input.selected.map(str::to_string).or_else(|| {
        items
            .iter()
            .rev()
            .find_map(|it| it.txid.clone())
            .filter(|t| input.view.tx(t).is_some())
    });
    let focus_view = focus.as_deref().and_then(|f| input.view.tx(f));
    let lanes = names
        .iter()
        .enumerate()
        .map(|(i, (name, role))| {
            let badge = focus_view
                .map(|t| t.badge_of(name))
                .unwrap_or_else(|| NodeBadge {
                    badge: crate::model::Badge::Idle,
                    text: "—".into(),
                });
            let up = match role {
                Role::Coordinator | Role::Log => input.coordinator_up,
                Role::Client => true,
                Role::Participant => input
                    .view
                    .nodes
                    .get(name)
                    .and_then(|n| n.connected)
                    .unwrap_or(true),
            };
            let title = match role {
                Role::Log => "decision log".to_string(),
                _ => name.clone(),
            };
            Lane {
                name: name.clone(),
                title,
                role: *role,
                x: lane_x(i),
                badge,
                up,
            }
        })
        .collect::<Vec<_>>();
    Diagram {
        width: diagram_width(lanes.len()),
        height: diagram_height(),
        lanes,
        items,
        focus,
        hidden_before,
    }
}

/// Queues the draw-in animations of newly drawn items, so that messages that arrive together
/// (a whole 2PC often takes a few milliseconds) are drawn one after another, in order, like a
/// slowed-down replay. Each item gets its delay once, when first seen; the queue never runs
/// more than [`Stagger::MAX_BACKLOG_MS`] behind (under load, new items then animate at once).
#[derive(Debug, Clone, Default)]
pub struct Stagger {
    delays: std::collections::HashMap<u64, (f64, f64)>,
    next_start: f64,
}

impl Stagger {
    /// Longest queue of pending animations.
    pub const MAX_BACKLOG_MS: f64 = 2_000.0;

    /// The animation delay (ms) of each drawn item, by absolute index. `now_ms` is a clock,
    /// `step_ms` the gap between two queued animations. Items not drawn any more are forgotten.
    pub fn assign(&mut self, drawn: &[u64], now_ms: f64, step_ms: f64) -> Vec<f64> {
        let fresh = drawn
            .iter()
            .filter(|i| !self.delays.contains_key(i))
            .count();
        let jump = fresh > MAX_STAGGER;
        // Many at once: squeeze them into the backlog limit rather than dropping the order.
        let step_ms = if fresh > 0 {
            step_ms.min(Self::MAX_BACKLOG_MS / fresh as f64)
        } else {
            step_ms
        };
        self.delays.retain(|i, _| drawn.contains(i));
        if self.next_start < now_ms {
            self.next_start = now_ms;
        }
        drawn
            .iter()
            .map(|i| {
                if let Some((created, delay)) = self.delays.get(i) {
                    // Keep the original start time: the delay is relative to first render.
                    return (created + delay - now_ms).max(0.0).min(*delay);
                }
                let delay = if jump || self.next_start - now_ms > Self::MAX_BACKLOG_MS {
                    0.0
                } else {
                    let d = self.next_start - now_ms;
                    self.next_start += step_ms;
                    d
                };
                self.delays.insert(*i, (now_ms, delay));
                delay
            })
            .collect()
    }
}

/// The newest `limit` transactions, newest first.
pub fn recent_txs(view: &Derived, limit: usize) -> Vec<&TxView> {
    view.txs().rev().take(limit).collect()
}

/// Formats a duration in ms for humans: "850 ms", "12.3 s", "4 min".
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{ev, happy, recv, sent};
    use crate::model::{Badge, EventLog, ParticipantConfig};
    use twopc_protocol::ParticipantKind;

    fn config() -> PublicConfig {
        PublicConfig {
            coordinator_id: "c1".parse().unwrap(),
            fault_injection: true,
            prepare_timeout_ms: 5000,
            participants: vec![
                ParticipantConfig {
                    name: "bank".parse().unwrap(),
                    kind: ParticipantKind::Postgres,
                    url: String::new(),
                },
                ParticipantConfig {
                    name: "ledger".parse().unwrap(),
                    kind: ParticipantKind::Redis,
                    url: String::new(),
                },
            ],
        }
    }

    fn setup(evs: Vec<Event>) -> (EventLog, Derived) {
        let mut log = EventLog::default();
        for e in evs {
            log.push(e);
        }
        let d = Derived::fold(&log, log.end());
        (log, d)
    }

    fn input<'a>(
        log: &'a EventLog,
        d: &'a Derived,
        cfg: &'a PublicConfig,
        sel: Option<&'a str>,
    ) -> DiagramInput<'a> {
        DiagramInput {
            log,
            view: d,
            config: Some(cfg),
            position: log.end(),
            selected: sel,
            batch_start: None,
            coordinator_up: true,
            max_rows: MAX_ROWS,
        }
    }

    #[test]
    fn lanes_are_ordered_and_spaced() {
        let cfg = config();
        let mut d = Derived::starting_at(0);
        d.apply(
            0,
            &ev(
                0,
                Some("t9"),
                EventKind::TxBegin {
                    participants: vec!["zeta".into(), "bank".into()],
                },
            ),
        );
        let names: Vec<String> = lane_names(Some(&cfg), &d)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            vec!["client", "log", "coordinator", "bank", "ledger", "zeta"]
        );
        assert_eq!(lane_x(0), MARGIN_X);
        assert_eq!(lane_x(3) - lane_x(2), LANE_GAP);
        assert_eq!(diagram_width(6), 2.0 * MARGIN_X + 5.0 * LANE_GAP);
        assert_eq!(row_y(2) - row_y(1), ROW_H);
        assert!(diagram_height() > row_y(MAX_ROWS - 1) + SLANT);
    }

    #[test]
    fn arrow_heads_point_along_the_arrow() {
        let [tip, a, b] = arrow_head(0.0, 0.0, 100.0, 0.0);
        assert_eq!(tip, (100.0, 0.0));
        assert!((a.0 - (100.0 - HEAD_LEN)).abs() < 1e-9 && (a.1 - HEAD_HALF).abs() < 1e-9);
        assert!((b.1 + HEAD_HALF).abs() < 1e-9);
        // Right-to-left arrows have their base to the right of the tip.
        let [tip, a, _] = arrow_head(300.0, 0.0, 100.0, SLANT);
        assert_eq!(tip, (100.0, SLANT));
        assert!(a.0 > 100.0 && a.1 < SLANT);
        assert_eq!(arrow_head(1.0, 1.0, 1.0, 1.0), [(1.0, 1.0); 3]);
    }

    #[test]
    fn events_become_arrows_and_marks() {
        let cfg = config();
        let (log, d) = setup(happy("t1"));
        let dg = diagram(input(&log, &d, &cfg, None));
        // 17 events; 4 votes/acks are not drawn separately.
        assert_eq!(dg.items.len(), 13);
        let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "BEGIN",
                "PREPARE",
                "PREPARE",
                "VOTE YES",
                "VOTE YES",
                "append COMMIT",
                "fsync ×1 (130 µs)",
                "DECIDE COMMIT",
                "COMMIT",
                "COMMIT",
                "ACK COMMIT",
                "ACK COMMIT",
                "COMMITTED"
            ]
        );
        // PREPARE to ledger: coordinator lane (2) → ledger lane (4), dropping by SLANT.
        match &dg.items[2].shape {
            Shape::Arrow {
                from,
                to,
                x1,
                x2,
                y2,
                head,
            } => {
                assert_eq!((*from, *to), (2, 4));
                assert_eq!(*x1, lane_x(2));
                assert_eq!(*x2, lane_x(4));
                assert_eq!(*y2, SLANT);
                assert_eq!(head[0], (lane_x(4), SLANT));
            }
            other => panic!("{other:?}"),
        }
        // VOTE from bank: bank (3) → coordinator (2).
        assert!(matches!(
            dg.items[3].shape,
            Shape::Arrow { from: 3, to: 2, .. }
        ));
        assert_eq!(dg.items[3].class, "msg-vote-yes");
        assert!(dg.items[3]
            .tooltip
            .contains("bank → coordinator: VOTE YES t1"));
        // Fsync is a mark on the log lane; the write an arrow to it.
        assert!(matches!(
            dg.items[5].shape,
            Shape::Arrow { from: 2, to: 1, .. }
        ));
        assert!(matches!(dg.items[6].shape, Shape::Mark { lane: 1, .. }));
        assert_eq!(dg.items[4].y, row_y(4));
        assert_eq!(dg.items[12].rel_ms, 16);
        // Badges of the latest transaction.
        assert_eq!(dg.focus.as_deref(), Some("t1"));
        let badge = |n: &str| dg.lanes.iter().find(|l| l.name == n).unwrap().badge.badge;
        assert_eq!(badge("bank"), Badge::Committed);
        assert_eq!(badge("log"), Badge::Committed);
        assert_eq!(badge("client"), Badge::Committed);
    }

    #[test]
    fn message_styles() {
        assert_eq!(
            message_style(MessageType::Vote, "VOTE NO t1: guard").1,
            "msg-vote-no"
        );
        assert_eq!(
            message_style(MessageType::Ack, "ACK Abort t1 (Applied)").0,
            "ACK ABORT"
        );
        assert_eq!(
            message_style(MessageType::DecisionRequest, "DECISION? t1").0,
            "DECISION?"
        );
        assert_eq!(
            message_style(MessageType::DecisionAnswer, "DECISION Commit t1").0,
            "DECISION COMMIT"
        );
        assert_eq!(
            message_style(MessageType::ListPrepared, "LIST PREPARED").0,
            "LIST PREPARED"
        );
        assert!(!drawable(&ev(0, None, recv("bank", "pong", "PONG"))));
    }

    #[test]
    fn rows_are_capped_and_focus_filters() {
        let cfg = config();
        let mut evs = happy("t1");
        let mut t2 = happy("t2");
        for (i, e) in t2.iter_mut().enumerate() {
            e.seq = 100 + i as u64;
        }
        // Interleave a fault and t2 after t1.
        evs.push(ev(
            50,
            None,
            EventKind::FaultInjected {
                fault: "partitioned ledger".into(),
            },
        ));
        evs.extend(t2);
        let (log, d) = setup(evs);
        let dg = diagram(input(&log, &d, &cfg, None));
        assert_eq!(dg.items.len(), MAX_ROWS);
        assert_eq!(
            dg.hidden_before, 6,
            "t1 up to its second vote (index 5) is scrolled out"
        );
        assert_eq!(dg.items.last().unwrap().label, "COMMITTED");
        assert_eq!(dg.focus.as_deref(), Some("t2"));
        // Focus on t1: only its 13 items (the fault came after it ended).
        let dg = diagram(input(&log, &d, &cfg, Some("t1")));
        assert_eq!(dg.items.len(), 13);
        assert!(dg
            .items
            .iter()
            .all(|i| i.txid.as_deref() == Some("t1") || i.class == "mark-fsync"));
        assert_eq!(dg.focus.as_deref(), Some("t1"));
        // Unknown selection: nothing drawn.
        let dg = diagram(input(&log, &d, &cfg, Some("nope")));
        assert!(dg.items.is_empty());
    }

    #[test]
    fn focus_includes_faults_during_an_unfinished_tx() {
        let cfg = config();
        let mut evs: Vec<Event> = happy("t1").into_iter().take(7).collect();
        evs.push(ev(
            7,
            None,
            EventKind::FaultInjected {
                fault: "partitioned ledger".into(),
            },
        ));
        evs.push(ev(
            8,
            None,
            EventKind::ParticipantDisconnected {
                participant: "ledger".into(),
                reason: "partition".into(),
            },
        ));
        evs.push(ev(9, Some("other"), sent("bank", "prepare")));
        let (log, d) = setup(evs);
        let dg = diagram(input(&log, &d, &cfg, Some("t1")));
        let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels[labels.len() - 2..],
            ["⚡ partitioned ledger", "disconnected"]
        );
        let ledger = dg.lanes.iter().find(|l| l.name == "ledger").unwrap();
        assert!(!ledger.up);
        assert_eq!(ledger.badge.badge, Badge::InDoubt);
    }

    #[test]
    fn new_items_are_ranked_for_staggering() {
        let cfg = config();
        let (log, d) = setup(happy("t1"));
        let mut inp = input(&log, &d, &cfg, None);
        inp.batch_start = Some(10);
        let dg = diagram(inp);
        let ranks: Vec<Option<usize>> = dg.items.iter().map(|i| i.new_rank).collect();
        // Events 10.. are COMMIT, COMMIT, ACK, (ack), ACK, (ack), END.
        assert_eq!(ranks[..8], [None; 8]);
        assert_eq!(ranks[8..], [Some(0), Some(1), Some(2), Some(3), Some(4)]);
        inp.batch_start = Some(0);
        inp.max_rows = 100;
        let mut evs = vec![];
        for k in 0..3 {
            evs.extend(happy(&format!("t{k}")));
        }
        let (log, d) = setup(evs);
        inp.log = &log;
        inp.view = &d;
        inp.position = log.end();
        let dg = diagram(inp);
        assert!(
            dg.items.iter().all(|i| i.new_rank == Some(0)),
            "too many to stagger"
        );
    }

    #[test]
    fn replay_position_limits_what_is_drawn() {
        let cfg = config();
        let (log, _) = setup(happy("t1"));
        let d = Derived::fold(&log, 4);
        let mut inp = input(&log, &d, &cfg, None);
        inp.position = 4;
        let dg = diagram(inp);
        assert_eq!(dg.items.len(), 4);
        let bank = dg.lanes.iter().find(|l| l.name == "bank").unwrap();
        assert_eq!(bank.badge.badge, Badge::Working);
    }

    #[test]
    fn recent_and_human() {
        let (_, d) = setup([happy("a"), happy("b")].concat());
        let r = recent_txs(&d, 1);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, "b");
        assert_eq!(human_ms(850), "850 ms");
        assert_eq!(human_ms(12_345), "12.3 s");
        assert_eq!(human_ms(600_000), "10 min");
    }

    #[test]
    fn stagger_queues_new_items_in_order() {
        let mut st = Stagger::default();
        // Three items arrive at once: 0, 100, 200 ms.
        assert_eq!(
            st.assign(&[1, 2, 3], 1000.0, 100.0),
            vec![0.0, 100.0, 200.0]
        );
        // 50 ms later two more arrive: they queue behind (300 and 400 ms after t=1000).
        let d = st.assign(&[1, 2, 3, 4, 5], 1050.0, 100.0);
        assert_eq!(d[3..], [250.0, 350.0]);
        // Already-started items keep their remaining delay, never growing.
        assert_eq!(d[0], 0.0);
        assert_eq!(d[2], 150.0);
        // A jump (many new items at once) animates everything immediately.
        let many: Vec<u64> = (100..100 + MAX_STAGGER as u64 + 1).collect();
        assert!(st.assign(&many, 2000.0, 100.0).iter().all(|d| *d == 0.0));
        // Many at once are squeezed into the backlog limit, in order.
        let mut st = Stagger::default();
        let ids: Vec<u64> = (0..20).collect();
        let d = st.assign(&ids, 0.0, 200.0);
        assert_eq!(d[1], 100.0);
        assert_eq!(d[19], 1900.0);
        // A queue already at its limit is not extended.
        let mut more = ids.clone();
        more.push(999);
        assert_eq!(*st.assign(&more, 0.0, 200.0).last().unwrap(), 2000.0);
        more.push(1000);
        assert_eq!(*st.assign(&more, 0.0, 200.0).last().unwrap(), 0.0);
    }

    #[test]
    fn log_events_are_drawn_before_the_commit_decision() {
        // As the coordinator streams them: decision first, then the log's write and fsync.
        let mut evs = happy("t1");
        let write = evs.remove(7);
        let fsync = evs.remove(7);
        // evs[7] is now the decision; put write + fsync after the two COMMIT sends.
        evs.insert(10, write);
        evs.insert(11, fsync);
        let cfg = config();
        let (log, d) = setup(evs);
        let dg = diagram(input(&log, &d, &cfg, None));
        let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels[5..10],
            [
                "append COMMIT",
                "fsync ×1 (130 µs)",
                "DECIDE COMMIT",
                "COMMIT",
                "COMMIT"
            ]
        );
        // Already causal: unchanged.
        let (log, _) = setup(happy("t1"));
        let all: Vec<u64> = (0..log.end()).collect();
        assert_eq!(causal_order(&log, all.clone()), all);
    }
}
