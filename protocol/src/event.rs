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
use crate::ids::{CoordinatorId, TxId};
use crate::message::{Decision, NoClass, Vote};
use crate::message_type::MessageType;
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
    /// The coordinator id the event is about when it is not the stream's own: a takeover
    /// instance in this process finishing the transactions of an id it took over (their txids
    /// are that id's, and may equal this coordinator's). Absent for the stream's own events.
    /// (Not `coordinator`: the flattened kinds `coordinator_started` and `takeover` have a
    /// field of that name.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<CoordinatorId>,
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

/// Which kind of record a [`EventKind::LogWrite`] appended to the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRecordKind {
    /// A COMMIT decision (forced: fsynced before any Commit is sent).
    Commit,
    /// An abort (lazy: presumed abort needs none, it only saves work after a restart).
    Abort,
    /// Every participant acknowledged (lazy).
    End,
    /// A checkpoint of the log's state.
    Checkpoint,
}

impl LogRecordKind {
    /// The lower-case wire name (`commit`, `abort`, `end`, `checkpoint`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogRecordKind::Commit => "commit",
            LogRecordKind::Abort => "abort",
            LogRecordKind::End => "end",
            LogRecordKind::Checkpoint => "checkpoint",
        }
    }
}

/// The note a `/v1/events` subscriber gets instead of the events it fell too far behind to
/// receive: `{"lagged": n}`, `n` events skipped (the web app shows "skipped by server").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    /// How many events this subscriber missed.
    pub lagged: u64,
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
    /// A client submitted a transaction, or the coordinator started another attempt of one
    /// (the event's `txid` is then the attempt's own, see [`crate::attempt`]).
    TxBegin {
        /// The participants named by the transaction.
        participants: Vec<String>,
        /// Which attempt this is (1: the client's submission). Absent when 1.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        attempt: u32,
        /// For attempt 2 and later: the client's txid, under which the web app groups the
        /// attempts as one transaction.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<TxId>,
        /// The API client that submitted it (its configured name; absent with an open API).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitted_by: Option<String>,
    },
    /// An attempt was aborted by retryable (`conflict`) NO votes only, and the transaction
    /// will run again as attempt `next_attempt` after `backoff_ms` (the event's `txid` is the
    /// aborted attempt's).
    RetryScheduled {
        /// The client's txid.
        client: TxId,
        /// The attempt that will run next (2 for the first retry).
        next_attempt: u32,
        /// The jittered wait before it starts, in milliseconds.
        backoff_ms: u64,
        /// Why the aborted attempt aborted.
        reason: String,
    },
    /// The coordinator sent a message to a participant.
    MessageSent {
        /// The participant.
        to: String,
        /// The message's wire type.
        msg_type: MessageType,
        /// A one-line summary of the payload.
        summary: String,
    },
    /// The coordinator received a message from a participant.
    MessageReceived {
        /// The participant.
        from: String,
        /// The message's wire type.
        msg_type: MessageType,
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
        /// The class of a NO.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<NoClass>,
    },
    /// A record was appended to the decision log (not yet durable).
    LogWrite {
        /// Which record (`commit`, `abort`, `end`).
        record: LogRecordKind,
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
        /// Which attempt ended (absent when 1).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        attempt: u32,
        /// This attempt aborted and another one runs in its place: the client's transaction
        /// is not over. Absent when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retried: bool,
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
    /// This coordinator took over another coordinator's id (several coordinators on one
    /// PostgreSQL decision log): that one's lease expired, and this one now finishes its
    /// transactions, committing what it logged and aborting the rest.
    Takeover {
        /// The id taken over.
        coordinator: String,
        /// The epoch it is held at now (one more than its last holder's).
        epoch: u64,
        /// Transactions with a logged COMMIT and no END, now being driven to completion.
        recovering: u32,
    },
    /// A taken-over id has nothing left to do, and this coordinator released it (its own
    /// coordinator claims it at once when it comes back).
    TakeoverEnded {
        /// The id released.
        coordinator: String,
        /// The epoch it was held at.
        epoch: u64,
    },
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
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
            on_behalf_of: None,
            kind: EventKind::Vote {
                participant: "bank".into(),
                vote: Vote::Yes,
                reason: None,
                class: None,
            },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "vote");
        assert_eq!(json["vote"], "yes");
        assert_eq!(json["txid"], "t1");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    /// Serializes `e`, checks the exact text, and parses it back to `e`.
    fn pin(e: &Event, json: &str) {
        assert_eq!(serde_json::to_string(e).unwrap(), json);
        assert_eq!(&serde_json::from_str::<Event>(json).unwrap(), e);
    }

    fn ev(kind: EventKind) -> Event {
        Event {
            run: "c1-1".into(),
            seq: 7,
            at_ms: 10,
            txid: Some(TxId::new("t1").unwrap()),
            on_behalf_of: None,
            kind,
        }
    }

    /// A takeover's events and a forwarded event, side by side: the takeover's `coordinator`
    /// field and the forwarded event's `on_behalf_of` must not collide in the flattened JSON.
    #[test]
    fn takeover_and_forwarded_events_pin_their_json() {
        pin(
            &Event {
                txid: None,
                ..ev(EventKind::Takeover {
                    coordinator: "c2".into(),
                    epoch: 2,
                    recovering: 1,
                })
            },
            r#"{"run":"c1-1","seq":7,"at_ms":10,"kind":"takeover","coordinator":"c2","epoch":2,"recovering":1}"#,
        );
        pin(
            &Event {
                on_behalf_of: Some(CoordinatorId::new("c2").unwrap()),
                ..ev(EventKind::Ack {
                    participant: "ledger".into(),
                    decision: Decision::Commit,
                })
            },
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","on_behalf_of":"c2","kind":"ack","participant":"ledger","decision":"commit"}"#,
        );
    }

    #[test]
    fn message_events_pin_their_json() {
        pin(
            &ev(EventKind::MessageSent {
                to: "bank".into(),
                msg_type: MessageType::CommitOnePhase,
                summary: "COMMIT ONE-PHASE t1 (1 sql)".into(),
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"message_sent","to":"bank","msg_type":"commit_one_phase","summary":"COMMIT ONE-PHASE t1 (1 sql)"}"#,
        );
        pin(
            &ev(EventKind::MessageReceived {
                from: "ledger".into(),
                msg_type: MessageType::Vote,
                summary: "VOTE YES t1".into(),
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"message_received","from":"ledger","msg_type":"vote","summary":"VOTE YES t1"}"#,
        );
        // A type this build does not know is refused, not passed through as text.
        let unknown = r#"{"run":"c1-1","seq":7,"at_ms":10,"kind":"message_sent","to":"bank","msg_type":"launch","summary":""}"#;
        assert!(serde_json::from_str::<Event>(unknown).is_err());
    }

    #[test]
    fn log_write_pins_its_json() {
        for (kind, name) in [
            (LogRecordKind::Commit, "commit"),
            (LogRecordKind::Abort, "abort"),
            (LogRecordKind::End, "end"),
            (LogRecordKind::Checkpoint, "checkpoint"),
        ] {
            assert_eq!(kind.as_str(), name);
            pin(
                &ev(EventKind::LogWrite {
                    record: kind,
                    lsn: 42,
                }),
                &format!(
                    r#"{{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"log_write","record":"{name}","lsn":42}}"#
                ),
            );
        }
    }

    #[test]
    fn attempt_events_pin_their_json() {
        // Attempt 1 looks as before retries existed.
        pin(
            &ev(EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["bank".into()],
                attempt: 1,
                client: None,
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"tx_begin","participants":["bank"]}"#,
        );
        pin(
            &ev(EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["bank".into()],
                attempt: 2,
                client: Some(TxId::new("t0").unwrap()),
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"tx_begin","participants":["bank"],"attempt":2,"client":"t0"}"#,
        );
        pin(
            &ev(EventKind::RetryScheduled {
                client: TxId::new("t1").unwrap(),
                next_attempt: 2,
                backoff_ms: 3,
                reason: "participant bank voted no: lock".into(),
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"retry_scheduled","client":"t1","next_attempt":2,"backoff_ms":3,"reason":"participant bank voted no: lock"}"#,
        );
        pin(
            &ev(EventKind::TxEnd {
                decision: Decision::Abort,
                prepare_ms: 1.0,
                decide_ms: 0.0,
                commit_ms: 2.0,
                heuristic: false,
                attempt: 3,
                retried: true,
            }),
            r#"{"run":"c1-1","seq":7,"at_ms":10,"txid":"t1","kind":"tx_end","decision":"abort","prepare_ms":1.0,"decide_ms":0.0,"commit_ms":2.0,"attempt":3,"retried":true}"#,
        );
    }

    #[test]
    fn lagged_note_pins_its_json() {
        let l = Lagged { lagged: 42 };
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"lagged":42}"#);
        assert_eq!(
            serde_json::from_str::<Lagged>(r#"{"lagged": 42}"#).unwrap(),
            l
        );
        assert!(serde_json::from_str::<Lagged>(r#"{"seq":2}"#).is_err());
    }
}
