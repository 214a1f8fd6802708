//! The twopc browser app.
//!
//! A Yew (client-side rendered) app served by the coordinator at `/`. It subscribes to the
//! coordinator's `/v1/events` WebSocket, keeps the event log, and animates every protocol
//! phase as a message diagram with replay, fault injection and self-narrating scenarios. It
//! shares its wire types with the rest of the system through [`twopc_protocol`].
//!
//! The crate is split so that the logic is testable on the host.
//!
//! # Layout
//!
//! * [`model`]: what the app knows: event-stream parsing, the event log, the derived protocol
//!   view, the app state and its reducer (`Model` + `Action`), each in its own module.
//! * [`layout`]: the diagram from the log: lanes and geometry, event styles, event selection
//!   and causal order, the layout itself, the transaction list.
//! * [`scenarios`]: sample transactions, fault requests (the protocol's API types) and the
//!   preset scenarios.
//! * [`keys`]: keyboard shortcuts.
//! * `app` (wasm32 only): the reducer state, the side effects, one file per component, and the
//!   WebSocket and HTTP plumbing.
//!
//! `cargo test -p twopc-web --lib` runs the logic's tests on the host.

pub mod keys;
pub mod layout;
pub mod model;
pub mod scenarios;

#[cfg(target_arch = "wasm32")]
pub mod app;
