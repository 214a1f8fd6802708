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
//!
//! # Layout
//!
//! * [`incoming`]: reading event-stream frames ([`Incoming`]) and API error bodies.
//! * [`event_log`]: the capped event log with absolute indices ([`EventLog`]).
//! * [`tx_view`]: one transaction as drawn: [`Badge`], [`NodeBadge`], [`TxView`], its outcome.
//! * [`derived`]: the fold over the log ([`Derived`]) and what is held prepared.
//! * [`action`]: every [`Action`] and the small state types it carries.
//! * [`reducer`]: the app state ([`Model`]) and [`Model::reduce`].
//! * `tests`: the model's unit tests, by subject, with event builders shared by other tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use twopc_protocol::api::{
    HeuristicKind, HeuristicReport, Outcome, PhaseTimings, Scope, TransactionResponse,
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
pub use twopc_protocol::api::{ClientIdentity, ParticipantConfig, ParticipantStatus, PublicConfig};

pub mod action;
pub mod derived;
pub mod event_log;
pub mod incoming;
pub mod reducer;
pub mod tx_view;

pub use action::*;
pub use derived::*;
pub use event_log::*;
pub use incoming::*;
pub use reducer::*;
pub use tx_view::*;

#[cfg(test)]
pub(crate) mod tests;
