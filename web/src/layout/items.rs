//! What a diagram is made of: shapes, items, the diagram and its input.

use super::*;

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
    /// The shards of each sharded participant, drawn as one box behind their lanes.
    pub groups: Vec<LaneGroup>,
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
