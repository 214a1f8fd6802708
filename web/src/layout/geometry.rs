//! Lanes and their geometry: which lanes, where they are, arrow heads.

use super::*;

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

/// The lanes of one sharded participant's shards (`bank/pg1`, `bank/pg2`, ...), which the
/// coordinator lists side by side: the diagram boxes them together under the participant's
/// name, since a client addressed them as one.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneGroup {
    /// The logical participant (`bank`).
    pub name: String,
    /// The x of its first and last shard lane.
    pub x_from: f64,
    /// See `x_from`.
    pub x_to: f64,
    /// How many shard lanes.
    pub shards: usize,
}

/// The runs of adjacent participant lanes named `logical/shard` with the same `logical`.
pub fn lane_groups(lanes: &[Lane]) -> Vec<LaneGroup> {
    let mut groups: Vec<LaneGroup> = Vec::new();
    let mut last: Option<&str> = None;
    for lane in lanes {
        let logical = (lane.role == Role::Participant)
            .then(|| lane.name.split_once('/').map(|(l, _)| l))
            .flatten();
        match (logical, groups.last_mut()) {
            (Some(l), Some(g)) if last == Some(l) => {
                g.x_to = lane.x;
                g.shards += 1;
            }
            (Some(l), _) => groups.push(LaneGroup {
                name: l.to_owned(),
                x_from: lane.x,
                x_to: lane.x,
                shards: 1,
            }),
            (None, _) => {}
        }
        last = logical;
    }
    groups
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
