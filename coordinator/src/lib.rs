//! The twopc coordinator.
//!
//! It runs the two-phase commit protocol across the participants named in its configuration,
//! keeps the durable decision log, recovers after crashes, and serves the client API, the event
//! stream and the web app.
//!
//! ```text
//!  HTTP client ──▶ api ──Command──▶ driver (owns core) ──Send──▶ conn (one per participant) ──▶ WS
//!                                     │  ▲                                   │
//!                            ForceCommit  CommitDurable                Received frames
//!                                     ▼  │                                   │
//!                                    log (group commit, fsync) ◀─────────────┘
//! ```
//!
//! # Layout
//!
//! * [`core`]: the protocol as a pure state machine (inputs in, outputs out, no I/O).
//! * [`log`]: the durable decision log (checksummed segments, group commit, checkpoints).
//! * [`driver`]: the task that owns the core and carries out its outputs.
//! * [`conn`]: one WebSocket connection task per participant.
//! * [`api`]: the HTTP API, event stream and web app (and, with clients configured, the
//!   bearer-token check in front of them).
//! * [`faults`]: fault injection for the demo and tests.
//! * [`server`]: wiring and graceful shutdown.
//! * [`config`]: the TOML configuration.
//! * [`shards`]: participants with shards: each shard a participant, operations routed to
//!   them when a transaction is submitted.
//! * [`clients`]: the API's clients: token digests, scopes, participants, rate and in-flight
//!   limits.
//! * [`command_line`]: the command line: argument parsing, `serve`, subcommand dispatch.
//! * [`client`]: the HTTP client subcommands (`submit`, `show`, `in-doubt`).
//! * [`load`]: the bank-transfer load generator (`load`).
//! * [`reshard`]: `reshard --plan`, the keys adding a shard would move.
//! * [`failpoint`]: crash points for the fault tests, armed by an environment variable.
//! * [`metrics`]: counters and latency histograms, OpenMetrics text (`prometheus-client`).
//! * [`strict_json`]: JSON parsing that refuses duplicate keys (client bodies).
//!
//! The wire types it speaks live in [`twopc_protocol`].

pub mod api;
pub mod client;
pub mod clients;
pub mod command_line;
pub mod config;
pub mod conn;
pub mod core;
pub mod driver;
pub mod failpoint;
pub mod faults;
pub mod load;
pub mod log;
pub mod metrics;
pub mod reshard;
pub mod server;
pub mod shards;
pub mod strict_json;
pub mod takeover;

pub use twopc_protocol as protocol;
