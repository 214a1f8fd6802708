//! The twopc browser app.
//!
//! A Yew (client-side rendered) app served by the coordinator at `/`. It subscribes to the
//! coordinator's `/v1/events` WebSocket, keeps the event log, and animates every protocol
//! phase as a message diagram with replay, fault injection and self-narrating scenarios. It
//! shares its wire types with the rest of the system through [`twopc_protocol`].
//!
//! The crate is split so that the logic is testable on the host:
//!
//! * [`model`]: the event log, the fold of events into per-transaction state, and the app
//!   state with its reducer (`Model` + `Action`).
//! * [`layout`]: the diagram's geometry (lanes, rows, arrows, marks) from the log.
//! * [`scenarios`]: sample transactions, fault requests and preset scenarios.
//! * [`keys`]: keyboard shortcuts.
//! * `app` (wasm32 only): the Yew components, the WebSocket and HTTP plumbing.
//!
//! `cargo test -p twopc-web --lib` runs the logic's tests on the host.

pub mod keys;
pub mod layout;
pub mod model;
pub mod scenarios;

#[cfg(target_arch = "wasm32")]
pub mod app;
