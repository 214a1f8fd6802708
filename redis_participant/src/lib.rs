//! The twopc Redis participant.
//!
//! A stateless service that speaks the twopc wire protocol to the coordinator (through the
//! shared [`twopc_participant`] server) and keeps every piece of participant state (staged
//! writes, key locks, prepared records, outcomes) inside Redis itself, written atomically by
//! one Lua script per step. Kill the process with `kill -9`, start it again, and it knows
//! every prepared transaction, because it reads them from Redis. See the crate README for the
//! key layout and the atomicity argument.
//!
//! # Layout
//!
//! * [`resource`]: [`RedisResource`], the [`twopc_participant::Resource`] over Redis, and the
//!   Lua scripts it runs (`src/lua/`).
//! * [`config`]: flags, `TWOPC_REDIS_*` environment variables and the TOML file.
//! * [`cli`]: the binary's entry point.

pub mod cli;
pub mod config;
pub mod resource;

pub use resource::{RedisResource, Retention};
pub use twopc_protocol as protocol;

/// Everything the Redis participant binary can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RedisParticipantError {
    /// The configuration is missing something or has a bad value.
    #[error("configuration error: {0}")]
    Config(String),
    /// The participant server failed (bind, resource, ...).
    #[error(transparent)]
    Participant(#[from] twopc_participant::ParticipantError),
    /// Signal handling or another OS-level operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
