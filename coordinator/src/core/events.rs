//! The core's event-stream outputs, one constructor per kind of event.
//!
//! The event stream is a view (the browser's protocol lanes, `GET /v1/events`): it carries no
//! protocol state. Building every [`EventKind`] here keeps the transitions readable and gives
//! the event vocabulary one place to change when its fields change.

use super::Output;
use twopc_protocol::api::HeuristicKind;
use twopc_protocol::event::{EventKind, Phase};
use twopc_protocol::message::{Decision, Message, NoClass, Vote};
use twopc_protocol::{CoordinatorId, ParticipantName, TxId};

fn about(txid: &TxId, kind: EventKind) -> Output {
    Output::Event {
        txid: Some(txid.clone()),
        kind,
    }
}

fn general(kind: EventKind) -> Output {
    Output::Event { txid: None, kind }
}

pub(super) fn coordinator_started(coordinator: &CoordinatorId, recovering: u32) -> Output {
    general(EventKind::CoordinatorStarted {
        coordinator: coordinator.to_string(),
        recovering,
    })
}

pub(super) fn participant_connected(participant: &ParticipantName, in_doubt: u32) -> Output {
    general(EventKind::ParticipantConnected {
        participant: participant.to_string(),
        in_doubt,
    })
}

pub(super) fn participant_disconnected(participant: &ParticipantName, reason: &str) -> Output {
    general(EventKind::ParticipantDisconnected {
        participant: participant.to_string(),
        reason: reason.to_string(),
    })
}

/// Attempt `attempt` of a transaction began; `client` is the client's txid for attempt 2 on.
pub(super) fn tx_begin<'a>(
    txid: &TxId,
    participants: impl Iterator<Item = &'a ParticipantName>,
    attempt: u32,
    client: Option<&TxId>,
    submitted_by: Option<&str>,
) -> Output {
    about(
        txid,
        EventKind::TxBegin {
            participants: participants.map(|p| p.to_string()).collect(),
            attempt,
            client: client.cloned(),
            submitted_by: submitted_by.map(str::to_owned),
        },
    )
}

pub(super) fn retry_scheduled(
    txid: &TxId,
    client: &TxId,
    next_attempt: u32,
    backoff_ms: u64,
    reason: String,
) -> Output {
    about(
        txid,
        EventKind::RetryScheduled {
            client: client.clone(),
            next_attempt,
            backoff_ms,
            reason,
        },
    )
}

/// A message arrived; its own txid (if it has one) is the event's.
pub(super) fn message_received(from: &ParticipantName, msg: &Message) -> Output {
    Output::Event {
        txid: msg.txid().cloned(),
        kind: EventKind::MessageReceived {
            from: from.to_string(),
            msg_type: msg.message_type(),
            // A peer's message: its reason may be of any length.
            summary: twopc_protocol::reason::bounded(msg.summary()),
        },
    }
}

pub(super) fn message_sent(txid: &TxId, to: &ParticipantName, msg: &Message) -> Output {
    about(
        txid,
        EventKind::MessageSent {
            to: to.to_string(),
            msg_type: msg.message_type(),
            summary: msg.summary(),
        },
    )
}

pub(super) fn decision_requested(txid: &TxId, participant: &ParticipantName) -> Output {
    about(
        txid,
        EventKind::DecisionRequested {
            participant: participant.to_string(),
        },
    )
}

pub(super) fn vote(
    txid: &TxId,
    participant: &ParticipantName,
    vote: Vote,
    reason: Option<String>,
    class: Option<NoClass>,
) -> Output {
    about(
        txid,
        EventKind::Vote {
            participant: participant.to_string(),
            vote,
            reason,
            class,
        },
    )
}

pub(super) fn decision(txid: &TxId, decision: Decision, reason: Option<String>) -> Output {
    about(txid, EventKind::Decision { decision, reason })
}

pub(super) fn ack(txid: &TxId, participant: &ParticipantName, decision: Decision) -> Output {
    about(
        txid,
        EventKind::Ack {
            participant: participant.to_string(),
            decision,
        },
    )
}

pub(super) fn heuristic(
    txid: &TxId,
    participant: &ParticipantName,
    decision: Decision,
    result: HeuristicKind,
) -> Output {
    about(
        txid,
        EventKind::Heuristic {
            participant: participant.to_string(),
            decision,
            result,
        },
    )
}

pub(super) fn retry(txid: &TxId, participant: &ParticipantName, attempt: u32) -> Output {
    about(
        txid,
        EventKind::Retry {
            participant: participant.to_string(),
            attempt,
        },
    )
}

pub(super) fn timeout(txid: &TxId, participant: &ParticipantName, phase: Phase) -> Output {
    about(
        txid,
        EventKind::Timeout {
            participant: participant.to_string(),
            phase,
        },
    )
}

pub(super) fn tx_end(
    txid: &TxId,
    decision: Decision,
    timings: &twopc_protocol::api::PhaseTimings,
    tx: &super::Tx,
) -> Output {
    about(
        txid,
        EventKind::TxEnd {
            decision,
            prepare_ms: timings.prepare_ms,
            decide_ms: timings.decide_ms,
            commit_ms: timings.commit_ms,
            heuristic: !tx.heuristics.is_empty(),
            attempt: tx.attempt,
            retried: tx.superseded,
        },
    )
}

/// Sends `msg` to `to`, announcing it on the event stream first.
pub(super) fn send(out: &mut Vec<Output>, txid: &TxId, to: &ParticipantName, msg: Message) {
    out.push(message_sent(txid, to, &msg));
    out.push(Output::Send {
        to: to.clone(),
        msg,
    });
}
