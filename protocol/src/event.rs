//! The coordinator's event stream: every protocol step, as the browser app sees it.
//!
//! The coordinator publishes one [`Event`] per step on its `/v1/events` WebSocket. The web app
//! keeps its own copy of the stream, so pausing and replaying are an index into a list, and
//! draws each event: messages as arrows between lanes, log writes and fsyncs on the log lane,
//! votes and decisions as state badges. `seq` increases by one per event within one
//! coordinator run; a restarted coordinator starts a new run with a new `run` id, which is how
//! the app notices a crash and recovery.
//!
//! ```json
//! {"run": "c1-1700000000000", "seq": 12, "at_ms": 1700000000123, "txid": "t1",
//!  "kind": "message_sent", "to": "bank", "msg_type": "prepare", "summary": "PREPARE t1 (1 sql)"}
//! ```

use crate::api::HeuristicKind;
use crate::ids::TxId;
use crate::message::{Decision, Vote};
use serde::{Deserialize, Serialize};

/// One step the coordinator took or observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Identifies one coordinator process run; changes when the coordinator restarts.
    pub run: String,
    /// Position in this run's stream, from 0, without gaps.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The transaction the event belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<TxId>,
    /// What happened; its `kind` tag is inlined.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which phase a timeout or timing belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for votes.
    Prepare,
    /// Making the decision durable.
    Decide,
    /// Waiting for acks.
    Commit,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The coordinator process started; `recovering` transactions were found in its log.
    CoordinatorStarted {
        /// The coordinator id.
        coordinator: String,
        /// Transactions with a COMMIT and no END in the log, now being driven to completion.
        recovering: u32,
    },
    /// A client submitted a transaction.
    TxBegin {
        /// The participants named by the transaction.
        participants: Vec<String>,
    },
    /// The coordinator sent a message to a participant.
    MessageSent {
        /// The participant.
        to: String,
        /// The message's wire type.
        msg_type: String,
        /// A one-line summary of the payload.
        summary: String,
    },
    /// The coordinator received a message from a participant.
    MessageReceived {
        /// The participant.
        from: String,
        /// The message's wire type.
        msg_type: String,
        /// A one-line summary of the payload.
        summary: String,
    },
    /// A participant voted.
    Vote {
        /// The participant.
        participant: String,
        /// Its vote.
        vote: Vote,
        /// The reason given with a NO.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A record was appended to the decision log (not yet durable).
    LogWrite {
        /// `commit` or `end`.
        record: String,
        /// Log sequence number of the record.
        lsn: u64,
    },
    /// The decision log was fsynced, making `records` appended records durable at once.
    LogFsync {
        /// Records made durable by this fsync (group commit batches many).
        records: u32,
        /// How long the fsync took, in microseconds.
        micros: u64,
    },
    /// The coordinator decided.
    Decision {
        /// Commit or abort.
        decision: Decision,
        /// Why (for an abort: the NO vote's reason, a timeout, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A participant acknowledged the decision.
    Ack {
        /// The participant.
        participant: String,
        /// The decision acknowledged.
        decision: Decision,
    },
    /// A wait ran out.
    Timeout {
        /// The participant that did not answer.
        participant: String,
        /// The phase that timed out.
        phase: Phase,
    },
    /// A message will be sent again (no ack yet).
    Retry {
        /// The participant.
        participant: String,
        /// Which attempt this is (2 for the first retry).
        attempt: u32,
    },
    /// A participant acknowledged the decision with something other than "applied": a
    /// heuristic hazard (see [`crate::api`]); the transaction's outcome becomes heuristic.
    Heuristic {
        /// The participant.
        participant: String,
        /// The decision it was sent.
        decision: Decision,
        /// What it answered.
        result: HeuristicKind,
    },
    /// Every participant acknowledged; the transaction is finished.
    TxEnd {
        /// The outcome.
        decision: Decision,
        /// Milliseconds spent in phase 1 (prepare and votes).
        prepare_ms: f64,
        /// Milliseconds spent making the decision durable.
        decide_ms: f64,
        /// Milliseconds spent in phase 2 (until every ack).
        commit_ms: f64,
        /// Some acknowledgement did not match the decision (see the `heuristic` events): the
        /// outcome is heuristic, not plainly `decision`. Absent when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        heuristic: bool,
    },
    /// The coordinator's connection to a participant came up.
    ParticipantConnected {
        /// The participant.
        participant: String,
        /// Transactions it reported holding prepared.
        in_doubt: u32,
    },
    /// The coordinator's connection to a participant went down.
    ParticipantDisconnected {
        /// The participant.
        participant: String,
        /// Why.
        reason: String,
    },
    /// A participant asked for the decision of a transaction it holds prepared.
    DecisionRequested {
        /// The participant.
        participant: String,
    },
    /// A fault was injected on purpose (demo and tests).
    FaultInjected {
        /// What was injected.
        fault: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_shape() {
        let e = Event {
            run: "c1-1".into(),
            seq: 3,
            at_ms: 10,
            txid: Some(TxId::new("t1").unwrap()),
            kind: EventKind::Vote {
                participant: "bank".into(),
                vote: Vote::Yes,
                reason: None,
            },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "vote");
        assert_eq!(json["vote"], "yes");
        assert_eq!(json["txid"], "t1");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
}
