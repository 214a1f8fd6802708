//! The twopc Redis participant.
//!
//! A stateless service that speaks the wire protocol to the coordinator and keeps every piece
//! of participant state (staged writes, key locks, prepared records) inside Redis itself, so a
//! killed participant process recovers everything from Redis. Arrives with the Participants
//! issue.

pub use twopc_protocol as protocol;
