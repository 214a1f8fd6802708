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
//!
//! # Layout
//!
//! * [`geometry`]: the lanes ([`lane_names`]), sizes and coordinates, arrow heads.
//! * [`items`]: what a diagram is made of ([`Shape`], [`Item`], [`Diagram`], [`DiagramInput`]).
//! * [`style`]: what each event looks like ([`drawable`], [`message_style`], [`item_for`]).
//! * [`select`]: which events are drawn, in causal order ([`select_events`], [`causal_order`]).
//! * [`diagram`](mod@diagram): the layout itself ([`diagram()`]) and the arrival [`Stagger`].
//! * [`tx_list`]: the transaction list ([`recent_txs`], [`human_ms`]).
//! * `tests`: the unit tests.

use crate::model::{Derived, EventLog, NodeBadge, PublicConfig, TxView};
use twopc_protocol::api::HeuristicKind;
use twopc_protocol::{Decision, Event, EventKind, LogRecordKind, MessageType};

pub mod diagram;
pub mod geometry;
pub mod items;
pub mod select;
pub mod style;
pub mod tx_list;

pub use diagram::*;
pub use geometry::*;
pub use items::*;
pub use select::*;
pub use style::*;
pub use tx_list::*;

#[cfg(test)]
mod tests;
