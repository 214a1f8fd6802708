//! The wire type of a [`Message`] (its `type` tag) as a value of its own.
//!
//! The event stream says which message went where (`msg_type` of
//! [`EventKind::MessageSent`](crate::EventKind::MessageSent)), and a fault request may name
//! the next message of one type to lose or delay (`msg_type` of
//! [`FaultRequest`](crate::api::FaultRequest)). Both are this closed set, so nobody compares
//! strings: `MessageType::Commit` serializes as `"commit"`, exactly the `type` tag of
//! [`Message::Commit`].

use crate::message::Message;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which message of the protocol, without its payload. Serialized as the message's `type` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// [`Message::Prepare`].
    Prepare,
    /// [`Message::CommitOnePhase`].
    CommitOnePhase,
    /// [`Message::Vote`].
    Vote,
    /// [`Message::Commit`].
    Commit,
    /// [`Message::Abort`].
    Abort,
    /// [`Message::Ack`].
    Ack,
    /// [`Message::DecisionRequest`].
    DecisionRequest,
    /// [`Message::DecisionAnswer`].
    DecisionAnswer,
    /// [`Message::ListPrepared`].
    ListPrepared,
    /// [`Message::InDoubtReport`].
    InDoubtReport,
    /// [`Message::Ping`].
    Ping,
    /// [`Message::Pong`].
    Pong,
    /// [`Message::Error`].
    Error,
}

impl MessageType {
    /// Every message type of this protocol version.
    pub const ALL: [MessageType; 13] = [
        MessageType::Prepare,
        MessageType::CommitOnePhase,
        MessageType::Vote,
        MessageType::Commit,
        MessageType::Abort,
        MessageType::Ack,
        MessageType::DecisionRequest,
        MessageType::DecisionAnswer,
        MessageType::ListPrepared,
        MessageType::InDoubtReport,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::Error,
    ];

    /// The wire name (the `type` tag).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Prepare => "prepare",
            MessageType::CommitOnePhase => "commit_one_phase",
            MessageType::Vote => "vote",
            MessageType::Commit => "commit",
            MessageType::Abort => "abort",
            MessageType::Ack => "ack",
            MessageType::DecisionRequest => "decision_request",
            MessageType::DecisionAnswer => "decision_answer",
            MessageType::ListPrepared => "list_prepared",
            MessageType::InDoubtReport => "in_doubt_report",
            MessageType::Ping => "ping",
            MessageType::Pong => "pong",
            MessageType::Error => "error",
        }
    }

    /// The type with this wire name, if the protocol has one.
    pub fn from_wire(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Connection heartbeats (Ping and Pong), as opposed to protocol steps.
    pub fn is_heartbeat(self) -> bool {
        matches!(self, MessageType::Ping | MessageType::Pong)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Message {
    /// The message's wire type (its `type` tag).
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Prepare { .. } => MessageType::Prepare,
            Message::CommitOnePhase { .. } => MessageType::CommitOnePhase,
            Message::Vote { .. } => MessageType::Vote,
            Message::Commit { .. } => MessageType::Commit,
            Message::Abort { .. } => MessageType::Abort,
            Message::Ack { .. } => MessageType::Ack,
            Message::DecisionRequest { .. } => MessageType::DecisionRequest,
            Message::DecisionAnswer { .. } => MessageType::DecisionAnswer,
            Message::ListPrepared { .. } => MessageType::ListPrepared,
            Message::InDoubtReport { .. } => MessageType::InDoubtReport,
            Message::Ping { .. } => MessageType::Ping,
            Message::Pong { .. } => MessageType::Pong,
            Message::Error { .. } => MessageType::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_type_tag() {
        for t in MessageType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<MessageType>(&json).unwrap(), t);
            assert_eq!(MessageType::from_wire(t.as_str()), Some(t));
        }
        assert_eq!(MessageType::from_wire("launch_missiles"), None);
        assert_eq!(
            serde_json::to_string(&MessageType::CommitOnePhase).unwrap(),
            r#""commit_one_phase""#
        );
    }

    #[test]
    fn matches_the_frame_type_tag() {
        let m = Message::Commit {
            txid: crate::TxId::new("t1").unwrap(),
            coordinator: None,
            epoch: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], m.message_type().as_str());
        assert_eq!(m.type_name(), "commit");
        assert!(MessageType::Ping.is_heartbeat() && !MessageType::Commit.is_heartbeat());
    }
}
