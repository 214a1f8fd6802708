//! The twopc wire protocol.
//!
//! One crate defines every message that crosses a process boundary in twopc, so the
//! coordinator, both participants, the end-to-end tests and the browser app cannot drift apart:
//!
//! * coordinator ↔ participant: [`Frame`]s carrying a [`Message`], JSON text over a WebSocket.
//!   Every frame carries the [`PROTOCOL_VERSION`] and a request id, so many transactions can be
//!   in flight on one connection and replies are matched to requests by id.
//! * coordinator → browser: [`Event`]s on the coordinator's `/v1/events` stream.
//! * client → coordinator: the HTTP API bodies in [`api`].
//! * the Postgres global transaction identifier (gid) format in [`gid`], which the extension
//!   parses back out of `pg_prepared_xacts` after a crash.
//!
//! The crate does no I/O and depends on no runtime: it builds for `wasm32-unknown-unknown`.
//! Decoding never panics; every way a frame can be wrong has its own [`DecodeError`] variant,
//! and the peer answers it with a [`Message::Error`] instead of dropping the connection.
//!
//! # Layout
//!
//! * [`ids`]: transaction ids, coordinator ids and participant names, validated on construction.
//! * [`gid`]: the Postgres gid derived from (coordinator id, txid) and its inverse.
//! * [`ops`]: the operations a transaction asks a participant to do (SQL or Redis commands).
//! * [`message`]: the wire frame, every message, and the codec with its typed errors.
//! * [`message_type`]: a message's wire type (its `type` tag) as a closed set of its own.
//! * [`event`]: the coordinator's event stream for the browser.
//! * [`api`]: every HTTP API request and response body, and the API error codes.
//! * [`transfer`]: the bank transfer, the sample workload of the load generator and web app.
//! * [`reason`]: the 1 KiB bound on every reason that reaches a client.
//! * [`priority`]: a transaction's age, which breaks wait-for cycles across stores.
//! * [`attempt`]: the wire txid of each attempt of a retried transaction, and its inverse.
//! * [`shard`]: which shard of a sharded participant a key lives on (consistent hashing).
//!
//! Every message has a documented JSON example under `protocol/messages/`; the tests decode
//! each of them, so the examples cannot go stale.

pub mod api;
pub mod attempt;
pub mod event;
pub mod gid;
pub mod ids;
pub mod message;
pub mod message_type;
pub mod ops;
pub mod priority;
pub mod reason;
pub mod shard;
pub mod transfer;

pub use event::{Event, EventKind, LogRecordKind};
pub use ids::{CoordinatorId, IdError, ParticipantName, TxId};
pub use message::{
    decode_frame, encode_frame, AckResult, Decision, DecisionStatus, DecodeError, ErrorCode, Frame,
    Message, NoClass, ParticipantKind, PreparedTx, Vote,
};
pub use message_type::MessageType;
pub use ops::{Operations, RedisGuard, RedisOp, SqlStatement};
pub use priority::Priority;

/// Version of the wire protocol spoken by this build. A peer that receives a frame with another
/// version answers [`ErrorCode::UnsupportedVersion`] and ignores the frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame (in bytes of JSON text) a peer accepts. Transactions are small by design; a
/// bounded frame keeps one misbehaving peer from exhausting memory. WebSocket servers and
/// clients configure their frame and message limits to this value.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
