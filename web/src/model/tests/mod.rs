//! The model's tests, by subject; the event builders here are shared with the layout and
//! scenario tests.

use super::*;
use twopc_protocol::event::Phase;
use twopc_protocol::TxId;

pub fn ev(seq: u64, txid: Option<&str>, kind: EventKind) -> Event {
    Event {
        run: "c1-1".into(),
        seq,
        at_ms: 1_000 + seq,
        txid: txid.map(|t| TxId::new(t).unwrap()),
        on_behalf_of: None,
        kind,
    }
}

pub fn sent(to: &str, t: &str) -> EventKind {
    EventKind::MessageSent {
        to: to.into(),
        msg_type: MessageType::from_wire(t).expect("a message type"),
        summary: format!("{} t1", t.to_uppercase()),
    }
}

pub fn recv(from: &str, t: &str, summary: &str) -> EventKind {
    EventKind::MessageReceived {
        from: from.into(),
        msg_type: MessageType::from_wire(t).expect("a message type"),
        summary: summary.into(),
    }
}

/// A full happy-path transaction t1 over bank and ledger.
pub fn happy(txid: &str) -> Vec<Event> {
    let t = Some(txid);
    let kinds = vec![
        EventKind::TxBegin {
            submitted_by: None,
            participants: vec!["bank".into(), "ledger".into()],
            attempt: 1,
            client: None,
        },
        sent("bank", "prepare"),
        sent("ledger", "prepare"),
        recv("bank", "vote", "VOTE YES t1"),
        EventKind::Vote {
            participant: "bank".into(),
            vote: Vote::Yes,
            reason: None,
            class: None,
        },
        recv("ledger", "vote", "VOTE YES t1"),
        EventKind::Vote {
            participant: "ledger".into(),
            vote: Vote::Yes,
            reason: None,
            class: None,
        },
        EventKind::LogWrite {
            record: LogRecordKind::Commit,
            lsn: 1,
        },
        EventKind::LogFsync {
            records: 1,
            micros: 130,
        },
        EventKind::Decision {
            decision: Decision::Commit,
            reason: None,
        },
        sent("bank", "commit"),
        sent("ledger", "commit"),
        recv("bank", "ack", "ACK Commit t1 (Applied)"),
        EventKind::Ack {
            participant: "bank".into(),
            decision: Decision::Commit,
        },
        recv("ledger", "ack", "ACK Commit t1 (Applied)"),
        EventKind::Ack {
            participant: "ledger".into(),
            decision: Decision::Commit,
        },
        EventKind::TxEnd {
            decision: Decision::Commit,
            prepare_ms: 1.5,
            decide_ms: 0.2,
            commit_ms: 1.0,
            heuristic: false,
            attempt: 1,
            retried: false,
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            // LogFsync carries no txid.
            let tx = if matches!(k, EventKind::LogFsync { .. }) {
                None
            } else {
                t
            };
            ev(i as u64, tx, k)
        })
        .collect()
}

fn ingest_all(m: &mut Model, evs: Vec<Event>) {
    m.reduce(Action::Ingest(
        evs.into_iter()
            .map(|e| Incoming::Event(Box::new(e)))
            .collect(),
    ));
}

mod derived;
mod incoming;
mod timeline;
