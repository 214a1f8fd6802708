//! Coordinator ↔ participant messages and their codec.
//!
//! One WebSocket connection per participant carries every transaction between it and the
//! coordinator. The coordinator dials; the participant authenticates the upgrade request
//! (`Authorization: Bearer <token>`) and then, before anything else, sends an
//! [`Message::InDoubtReport`] listing every transaction it holds prepared, so a coordinator
//! that has just restarted can resolve them.
//!
//! A frame is one JSON text message:
//!
//! ```json
//! {"v": 1, "id": 7, "type": "prepare", "txid": "t1", "coordinator": "c1", "ops": {"redis": []}}
//! ```
//!
//! `v` is the [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION); `id` is a request id chosen by
//! whoever sends a request, echoed by the reply, so replies can be matched while many
//! transactions are in flight. Every message is also idempotent by (txid, type): a duplicated
//! or retried Prepare, Commit or Abort gets the same answer again and changes nothing twice.
//!
//! The flow for one transaction:
//!
//! ```text
//! coordinator                          participant
//!   Prepare{txid, ops}       ───────▶   do the work, make it durable
//!                            ◀───────   Vote{yes | no + reason | read_only}
//!   (all yes: fsync COMMIT)
//!   Commit{txid} / Abort     ───────▶   finish it
//!                            ◀───────   Ack{decision, result}
//!
//!                            ◀───────   DecisionRequest{txid}   (prepared too long)
//!   DecisionAnswer{status}   ───────▶
//! ```
//!
//! [`decode_frame`] never panics: size, JSON syntax, version, unknown type and bad fields each
//! have their own [`DecodeError`], which carries the request id when one could be read so the
//! receiver can answer with a [`Message::Error`] for that request and keep the connection.

use crate::ids::{CoordinatorId, ParticipantName, TxId};
use crate::message_type::MessageType;
use crate::ops::Operations;
use crate::priority::Priority;
use crate::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

/// One frame on the wire: version, request id and the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Protocol version of the sender.
    pub v: u32,
    /// Request id: chosen by the sender of a request, echoed in its reply.
    pub id: u64,
    /// The message itself; its `type` field is inlined into the frame.
    #[serde(flatten)]
    pub msg: Message,
}

impl Frame {
    /// A frame of the current protocol version.
    pub fn new(id: u64, msg: Message) -> Self {
        Frame {
            v: PROTOCOL_VERSION,
            id,
            msg,
        }
    }
}

/// The kind of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    /// The Postgres participant hosted by the pg_twopc_ext background worker.
    Postgres,
    /// The Redis participant service.
    Redis,
}

impl ParticipantKind {
    /// The wire name (`postgres`, `redis`).
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Postgres => "postgres",
            ParticipantKind::Redis => "redis",
        }
    }
}

/// A participant's vote on a Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// Prepared and durable: the participant will commit if told to, even after a crash.
    Yes,
    /// Cannot commit; the participant has already rolled its part back. `reason` says why.
    No,
    /// Nothing to write: the participant holds nothing and takes no part in phase 2.
    ReadOnly,
}

/// What kind of NO a participant voted: whether running the transaction again can succeed.
///
/// Sent with every NO (and every one-phase abort). A transaction that lost a race for a lock
/// is worth another attempt; one whose guard failed, whose SQL is wrong or whose role lacks a
/// privilege fails the same way every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoClass {
    /// Lost to another transaction: a lock-wait bound, a deadlock victim, a serialization
    /// failure (SQLSTATE 40001, 40P01, 55P03), a key locked by a prepared transaction.
    /// Retryable.
    Conflict,
    /// Anything else: a constraint, a guard, an SQL or type error, a permission. Retrying
    /// cannot help.
    Final,
}

impl NoClass {
    /// The wire name (`conflict`, `final`).
    pub fn as_str(self) -> &'static str {
        match self {
            NoClass::Conflict => "conflict",
            NoClass::Final => "final",
        }
    }
}

/// The coordinator's decision for a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Commit everywhere.
    Commit,
    /// Abort everywhere.
    Abort,
}

/// The coordinator's answer to a [`Message::DecisionRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// A COMMIT decision is logged: commit.
    Commit,
    /// Aborted, or never known to this coordinator (presumed abort): roll back.
    Abort,
    /// Still collecting votes: keep the transaction prepared and ask again later.
    Pending,
}

/// What a participant did with a Commit or Abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    /// The prepared transaction was finished now, as decided.
    Applied,
    /// It had already been finished the same way earlier (a retried or duplicated message).
    AlreadyApplied,
    /// The participant holds no record of preparing this transaction. For an Abort that is
    /// the normal presumed-abort case; for a Commit it means the work is not there, and the
    /// participant says so instead of inventing success.
    NotPrepared,
    /// It had already been finished the *other* way (a heuristic outcome an operator forced).
    Conflict,
}

/// Machine-readable reason carried by [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON (or not UTF-8 text).
    Malformed,
    /// The frame's `type` names no message of this protocol version.
    UnknownType,
    /// The frame's version is not spoken here.
    UnsupportedVersion,
    /// Known type, but fields missing or of the wrong type.
    InvalidFields,
    /// The frame exceeded [`MAX_FRAME_BYTES`](crate::MAX_FRAME_BYTES).
    TooLarge,
    /// Too many requests in flight on this connection; retry later.
    Busy,
    /// A valid message the receiver does not accept in this role (a participant sent Prepare).
    Unexpected,
    /// The receiver failed internally; the message had no effect.
    Internal,
    /// The message came from a holder of its coordinator id that has since been replaced: the
    /// participant has seen a higher epoch for the id. It had no effect.
    StaleEpoch,
}

/// A transaction a participant holds prepared, as reported to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedTx {
    /// The global transaction id.
    pub txid: TxId,
    /// The coordinator that asked for it; recovery only touches its own.
    pub coordinator: CoordinatorId,
    /// When it was prepared, in milliseconds since the Unix epoch.
    pub prepared_at_ms: u64,
}

/// Every message of the protocol. Serialized with an inline `"type"` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Coordinator → participant: do `ops` under `txid` and prepare (phase 1).
    Prepare {
        /// The global transaction id.
        txid: TxId,
        /// The coordinator that owns the transaction (part of the Postgres gid).
        coordinator: CoordinatorId,
        /// What to do.
        ops: Operations,
        /// How long the coordinator waits for the vote; the participant may give up earlier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// The transaction's age, kept across retries: decides who may wait for whom on a
        /// lock (absent from older coordinators: then the youngest of all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
        /// The epoch at which the sender holds its coordinator id (PostgreSQL decision log:
        /// raised by every new holder of the id). A participant that has seen a higher epoch
        /// for the id refuses the message: it comes from a holder that was replaced. Absent
        /// with the file log (one holder only) and from older coordinators.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
        /// The API client that submitted the transaction (its configured name), kept for the
        /// participant's records (the extension's history); absent with an open API and from
        /// older coordinators.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitted_by: Option<String>,
    },
    /// Coordinator → participant: the only participant of a transaction; do `ops` and commit
    /// in one step (one-phase commit, no prepare). Answered by an [`Message::Ack`] whose
    /// decision says what happened, with `reason` set when it aborted.
    CommitOnePhase {
        /// The global transaction id.
        txid: TxId,
        /// The coordinator that owns the transaction.
        coordinator: CoordinatorId,
        /// What to do.
        ops: Operations,
        /// The transaction's age (see [`Message::Prepare`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
        /// See [`Message::Prepare`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
        /// See [`Message::Prepare`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitted_by: Option<String>,
    },
    /// Participant → coordinator: the answer to a Prepare.
    Vote {
        /// The global transaction id.
        txid: TxId,
        /// Yes, no or read-only.
        vote: Vote,
        /// Why a NO (a failed guard, the Postgres error message, a lock conflict).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// What kind of NO (absent on YES and READ-ONLY; a NO without it, from an older
        /// participant, counts as final).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<NoClass>,
    },
    /// Coordinator → participant: the decision is COMMIT (it is durable at the coordinator).
    Commit {
        /// The global transaction id.
        txid: TxId,
        /// The coordinator whose transaction it is: the participant settles only what it
        /// prepared for that coordinator (several coordinators may each have run a `txid` of
        /// the same name). Absent from older coordinators: then whichever is prepared.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coordinator: Option<CoordinatorId>,
        /// See [`Message::Prepare`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Coordinator → participant: roll back (a NO vote, a timeout, or recovery).
    Abort {
        /// The global transaction id.
        txid: TxId,
        /// Why, for the participant's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The coordinator whose transaction it is (see [`Message::Commit`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coordinator: Option<CoordinatorId>,
        /// See [`Message::Prepare`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Participant → coordinator: the answer to Commit, Abort or CommitOnePhase.
    Ack {
        /// The global transaction id.
        txid: TxId,
        /// The decision that was acknowledged (or, for one-phase, taken).
        decision: Decision,
        /// What the participant did.
        result: AckResult,
        /// Why a one-phase commit aborted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Participant → coordinator: a transaction has been prepared longer than the
    /// participant's timeout; what was decided?
    DecisionRequest {
        /// The global transaction id.
        txid: TxId,
        /// The coordinator the transaction was prepared for. A coordinator answers only for
        /// the ids it holds, and `pending` for any other: with several coordinators on one
        /// participant, the request may reach one that never heard of the transaction, and
        /// presumed abort there would abort what its owner may have committed. Absent from
        /// older participants (then the receiver answers as the owner, as before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coordinator: Option<CoordinatorId>,
    },
    /// Coordinator → participant: the answer to a DecisionRequest.
    DecisionAnswer {
        /// The global transaction id.
        txid: TxId,
        /// Commit, abort, or still pending.
        status: DecisionStatus,
    },
    /// Coordinator → participant: send an InDoubtReport now.
    ListPrepared {
        /// The asking coordinator's id and epoch (see [`Message::Prepare`]): a participant
        /// that learns a higher epoch here refuses the replaced holder's messages from then
        /// on, even for transactions the new holder has no reason to message it about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coordinator: Option<CoordinatorId>,
        /// See `coordinator`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Participant → coordinator: who I am and every transaction I hold prepared. Sent first
    /// on every connection and in reply to ListPrepared.
    InDoubtReport {
        /// The participant's configured name.
        participant: ParticipantName,
        /// What kind of participant it is.
        kind: ParticipantKind,
        /// Every prepared transaction, whatever coordinator it belongs to.
        prepared: Vec<PreparedTx>,
    },
    /// Either side: are you alive? Answered by Pong with the same nonce.
    Ping {
        /// Echoed in the Pong.
        nonce: u64,
    },
    /// Either side: the answer to Ping.
    Pong {
        /// The nonce of the Ping.
        nonce: u64,
    },
    /// Either side: the request with this frame's id could not be handled.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

impl Message {
    /// The wire name of the message (its `type` tag).
    pub fn type_name(&self) -> &'static str {
        self.message_type().as_str()
    }

    /// The transaction the message is about, if any.
    pub fn txid(&self) -> Option<&TxId> {
        match self {
            Message::Prepare { txid, .. }
            | Message::CommitOnePhase { txid, .. }
            | Message::Vote { txid, .. }
            | Message::Commit { txid, .. }
            | Message::Abort { txid, .. }
            | Message::Ack { txid, .. }
            | Message::DecisionRequest { txid, .. }
            | Message::DecisionAnswer { txid, .. } => Some(txid),
            _ => None,
        }
    }

    /// A one-line summary for the event stream and logs (no payload data beyond counts).
    pub fn summary(&self) -> String {
        match self {
            Message::Prepare { txid, ops, .. } => format!("PREPARE {txid} ({})", ops.summary()),
            Message::CommitOnePhase { txid, ops, .. } => {
                format!("COMMIT ONE-PHASE {txid} ({})", ops.summary())
            }
            Message::Vote {
                txid, vote, reason, ..
            } => {
                let vote = match vote {
                    Vote::Yes => "YES",
                    Vote::No => "NO",
                    Vote::ReadOnly => "READ-ONLY",
                };
                match reason {
                    Some(r) => format!("VOTE {vote} {txid}: {r}"),
                    None => format!("VOTE {vote} {txid}"),
                }
            }
            Message::Commit { txid, .. } => format!("COMMIT {txid}"),
            Message::Abort { txid, .. } => format!("ABORT {txid}"),
            Message::Ack {
                txid,
                decision,
                result,
                ..
            } => {
                format!("ACK {decision:?} {txid} ({result:?})")
            }
            Message::DecisionRequest { txid, .. } => format!("DECISION? {txid}"),
            Message::DecisionAnswer { txid, status } => format!("DECISION {status:?} {txid}"),
            Message::ListPrepared { .. } => "LIST PREPARED".into(),
            Message::InDoubtReport {
                participant,
                prepared,
                ..
            } => {
                format!("IN-DOUBT {participant}: {} prepared", prepared.len())
            }
            Message::Ping { nonce } => format!("PING {nonce}"),
            Message::Pong { nonce } => format!("PONG {nonce}"),
            Message::Error { code, message } => format!("ERROR {code:?}: {message}"),
        }
    }
}

/// Why a frame could not be decoded. None of these is fatal to the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object (syntax error, or valid JSON of another shape).
    #[error("malformed frame: {detail}")]
    Malformed {
        /// The parser's description.
        detail: String,
    },
    /// The `v` field is missing or names a version this build does not speak.
    #[error(
        "unsupported protocol version {got:?}; this peer speaks {}",
        PROTOCOL_VERSION
    )]
    UnsupportedVersion {
        /// The version found, if any.
        got: Option<u64>,
        /// The request id, if one could be read.
        id: Option<u64>,
    },
    /// The `type` field is missing or names no known message.
    #[error("unknown message type {type_name:?}")]
    UnknownType {
        /// The type found ("" when missing).
        type_name: String,
        /// The request id, if one could be read.
        id: Option<u64>,
    },
    /// A known message whose fields are missing, of the wrong type, or invalid.
    #[error("invalid {type_name} message: {detail}")]
    InvalidFields {
        /// The message type.
        type_name: String,
        /// The request id, if one could be read.
        id: Option<u64>,
        /// What is wrong.
        detail: String,
    },
}

impl DecodeError {
    /// The request id of the bad frame, when it could be read, so the reply can name it.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            DecodeError::TooLarge { .. } | DecodeError::Malformed { .. } => None,
            DecodeError::UnsupportedVersion { id, .. }
            | DecodeError::UnknownType { id, .. }
            | DecodeError::InvalidFields { id, .. } => *id,
        }
    }

    /// The error code to send back in a [`Message::Error`].
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::Malformed { .. } => ErrorCode::Malformed,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownType { .. } => ErrorCode::UnknownType,
            DecodeError::InvalidFields { .. } => ErrorCode::InvalidFields,
        }
    }

    /// The reply frame to send for this error (request id 0 when the id is unknown).
    pub fn reply(&self) -> Frame {
        Frame::new(
            self.request_id().unwrap_or(0),
            Message::Error {
                code: self.code(),
                message: self.to_string(),
            },
        )
    }
}

/// Decodes one frame of JSON text. Checks, in order: size, JSON syntax, version, type, fields.
pub fn decode_frame(text: &str) -> Result<Frame, DecodeError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len: text.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
            detail: e.to_string(),
        })?;
    let obj = value.as_object().ok_or_else(|| DecodeError::Malformed {
        detail: "a frame must be a JSON object".into(),
    })?;
    let id = obj.get("id").and_then(|v| v.as_u64());
    let v = obj.get("v").and_then(|v| v.as_u64());
    if v != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(DecodeError::UnsupportedVersion { got: v, id });
    }
    let type_name = obj
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_owned();
    if MessageType::from_wire(&type_name).is_none() {
        return Err(DecodeError::UnknownType { type_name, id });
    }
    if id.is_none() {
        return Err(DecodeError::InvalidFields {
            type_name,
            id,
            detail: "missing or non-integer field `id`".into(),
        });
    }
    Frame::deserialize(value).map_err(|e| DecodeError::InvalidFields {
        type_name,
        id,
        detail: e.to_string(),
    })
}

/// Encodes a frame as JSON text.
pub fn encode_frame(frame: &Frame) -> String {
    // Serializing these types cannot fail: every map key is a string and there are no
    // non-finite floats in the protocol's own types (SQL params are already JSON values).
    serde_json::to_string(frame).unwrap_or_else(|e| {
        format!(
            r#"{{"v":{PROTOCOL_VERSION},"id":{},"type":"error","code":"internal","message":"encode failed: {}"}}"#,
            frame.id,
            e.to_string().replace('"', "'")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    #[test]
    fn decode_errors_are_typed_and_keep_the_request_id() {
        assert!(matches!(
            decode_frame("{not json"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame("[1,2]"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame(""),
            Err(DecodeError::Malformed { .. })
        ));
        assert_eq!(
            decode_frame(r#"{"v":9,"id":3,"type":"ping","nonce":1}"#),
            Err(DecodeError::UnsupportedVersion {
                got: Some(9),
                id: Some(3)
            })
        );
        assert_eq!(
            decode_frame(r#"{"id":3,"type":"ping","nonce":1}"#),
            Err(DecodeError::UnsupportedVersion {
                got: None,
                id: Some(3)
            })
        );
        assert_eq!(
            decode_frame(r#"{"v":1,"id":4,"type":"launch_missiles"}"#),
            Err(DecodeError::UnknownType {
                type_name: "launch_missiles".into(),
                id: Some(4)
            })
        );
        let e = decode_frame(r#"{"v":1,"id":5,"type":"commit"}"#).unwrap_err();
        assert!(
            matches!(e, DecodeError::InvalidFields { id: Some(5), .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("txid"), "{e}");
        let e = decode_frame(r#"{"v":1,"id":6,"type":"commit","txid":""}"#).unwrap_err();
        assert!(e.to_string().contains("must not be empty"), "{e}");
        let e = decode_frame(r#"{"v":1,"type":"ping","nonce":1}"#).unwrap_err();
        assert!(
            matches!(e, DecodeError::InvalidFields { id: None, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let big = format!(
            r#"{{"v":1,"id":1,"type":"error","code":"internal","message":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        let e = decode_frame(&big).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }));
        assert_eq!(
            e.reply().msg,
            Message::Error {
                code: ErrorCode::TooLarge,
                message: e.to_string()
            }
        );
    }

    #[test]
    fn error_reply_names_the_bad_request() {
        let e = decode_frame(r#"{"v":1,"id":42,"type":"nope"}"#).unwrap_err();
        let reply = e.reply();
        assert_eq!(reply.id, 42);
        assert!(matches!(
            reply.msg,
            Message::Error {
                code: ErrorCode::UnknownType,
                ..
            }
        ));
    }

    #[test]
    fn summary_is_compact() {
        let m = Message::Vote {
            txid: tx("t1"),
            vote: Vote::No,
            reason: Some("guard".into()),
            class: None,
        };
        assert_eq!(m.summary(), "VOTE NO t1: guard");
        assert_eq!(m.type_name(), "vote");
        assert_eq!(m.txid(), Some(&tx("t1")));
    }
}
