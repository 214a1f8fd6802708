//! The twopc participant server, generic over the local resource.
//!
//! A participant lets a coordinator run two-phase commit over one local resource. The wire
//! protocol (in `twopc-protocol`) and the server loop that speaks it (here) are the same for
//! every kind of participant; what differs is how a resource stages work durably and settles
//! it, and that is the [`Resource`] trait. The Redis participant implements it with Lua
//! scripts; the Postgres participant (a background worker in `pg_twopc_ext`) implements it
//! with `PREPARE TRANSACTION` over tokio-postgres. This crate depends on neither and never
//! calls into PostgreSQL, so it is safe to run on the worker's tokio threads.
//!
//! ```no_run
//! # async fn demo<R: twopc_participant::Resource>(resource: R) -> Result<(), twopc_participant::ParticipantError> {
//! use twopc_participant::{Server, ServerConfig};
//! let config = ServerConfig::new("cache".parse().unwrap(), "s3cret-token");
//! let running = Server::new(resource, config)?.bind("127.0.0.1:0".parse().unwrap()).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * [`core`]: the participant's protocol rules as a pure state machine (inputs in, outputs out).
//! * [`server`]: the WebSocket server that drives the core: config, connection loop, driver.
//! * [`resource`]: the [`Resource`] trait and the outcomes it returns.
//! * [`auth`]: bearer-token check of the upgrade request (constant-time compare, HTTP 401).
//! * [`memory`]: a non-durable in-memory resource for tests and demos.
//! * [`error`]: [`ParticipantError`], the crate's one error type.

pub mod auth;
pub mod core;
pub mod error;
pub mod memory;
pub mod resource;
pub mod server;

pub use auth::Tokens;
pub use error::ParticipantError;
pub use resource::{
    Blocked, OnePhaseAnswer, OnePhaseContext, OnePhaseOutcome, PrepareContext, PrepareOutcome,
    Resource, Wait,
};
pub use server::{websocket_config, RunningServer, Server, ServerConfig};
pub use twopc_protocol as protocol;
