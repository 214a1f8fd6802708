//! The twopc coordinator.
//!
//! It runs the two-phase commit protocol across the participants named in its configuration,
//! keeps the durable decision log, recovers after crashes, and serves the client API, the event
//! stream and the web app.
//!
//! # Layout
//!
//! * [`core`]: the protocol as a pure state machine (inputs in, outputs out, no I/O).
//! * [`metrics`]: counters and latency histograms, Prometheus text.
//!
//! The wire types it speaks live in [`twopc_protocol`].

pub mod core;
pub mod metrics;

pub use twopc_protocol as protocol;
