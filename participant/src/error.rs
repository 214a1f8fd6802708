//! The crate's one error type.

use std::net::SocketAddr;

/// Everything the participant server (and a [`Resource`](crate::Resource)) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The configuration is unusable (an empty token, a zero in-flight limit, ...).
    #[error("invalid participant configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Accepting or reading the listening socket failed.
    #[error("listener I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The local resource (Redis, Postgres, ...) failed; the request had no effect that the
    /// resource knows of, and the peer gets an `internal` error reply and may retry.
    #[error("resource error: {0}")]
    Resource(String),
    /// The server task panicked or was cancelled before it finished.
    #[error("participant server task failed: {0}")]
    Task(String),
}

impl ParticipantError {
    /// A [`ParticipantError::Resource`] from anything displayable.
    pub fn resource(e: impl std::fmt::Display) -> Self {
        ParticipantError::Resource(e.to_string())
    }
}
