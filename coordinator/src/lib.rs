//! The twopc coordinator.
//!
//! It runs the two-phase commit protocol across the participants named in its configuration,
//! keeps the durable decision log, recovers after crashes, and serves the client API, the event
//! stream and the web app. The engine, log, API and CLI arrive with the coordinator issue; the
//! wire types it speaks already live in [`twopc_protocol`].

pub use twopc_protocol as protocol;
