//! Which events are drawn, and in which order (causal order within a batch).

use super::*;

/// Events without a transaction that matter to a focused one.
fn context_event(ev: &Event) -> bool {
    matches!(
        ev.kind,
        EventKind::FaultInjected { .. }
            | EventKind::CoordinatorStarted { .. }
            | EventKind::Takeover { .. }
            | EventKind::TakeoverEnded { .. }
            | EventKind::ParticipantConnected { .. }
            | EventKind::ParticipantDisconnected { .. }
    )
}

/// The absolute indices of the events to draw (oldest first), and how many matching ones
/// before them were left out.
pub fn select_events(
    log: &EventLog,
    position: u64,
    focus: Option<&TxView>,
    selected: Option<&str>,
    max_rows: usize,
) -> (Vec<u64>, u64) {
    let mut picked: Vec<u64> = Vec::new();
    let mut hidden = 0u64;
    match (selected, focus) {
        (Some(sel), Some(tx)) => {
            // Forward over the transaction's span: its own events, faults and connection
            // changes meanwhile, and the first fsync after its log write.
            let mut fsync_due = false;
            for (i, e) in log.range(tx.first_index, position) {
                // Every attempt of a retried transaction is drawn with it.
                let mine = crate::model::tx_key(e).is_some_and(|k| k == sel || tx.owns(&k));
                let take = if mine {
                    if matches!(e.kind, EventKind::LogWrite { .. }) {
                        fsync_due = true;
                    }
                    true
                } else if e.txid.is_none() {
                    if matches!(e.kind, EventKind::LogFsync { .. }) {
                        std::mem::take(&mut fsync_due)
                    } else {
                        context_event(e) && (i <= tx.last_index || !tx.ended)
                    }
                } else {
                    false
                };
                if take && drawable(e) {
                    picked.push(i);
                }
                if tx.ended && i > tx.last_index && !fsync_due {
                    break;
                }
            }
            if picked.len() > max_rows {
                hidden = (picked.len() - max_rows) as u64;
                picked.drain(..picked.len() - max_rows);
            }
        }
        (Some(_), None) => {}
        (None, _) => {
            for (i, e) in log.range(log.base(), position).rev() {
                if drawable(e) {
                    if picked.len() < max_rows {
                        picked.push(i);
                    } else {
                        hidden = i + 1 - log.base();
                        break;
                    }
                }
            }
            picked.reverse();
        }
    }
    (picked, hidden)
}

/// How far [`causal_order`] looks ahead for a decision's log events.
pub const CAUSAL_LOOKAHEAD: usize = 16;

/// The coordinator reports a COMMIT decision only once the COMMIT record is durable, but the
/// log's write and fsync events reach the stream through a separate channel and often arrive
/// after the decision. Draw them in causal order: a transaction's COMMIT-record write (and the
/// next fsync) move up to just before its COMMIT decision.
pub fn causal_order(log: &EventLog, idx: Vec<u64>) -> Vec<u64> {
    let items: Vec<(u64, Option<&Event>)> = idx.into_iter().map(|i| (i, log.get(i))).collect();
    causal_order_by(items, |(_, e)| *e)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// [`causal_order`] over any list of items that refer to events (`ev` gives the event of an
/// item, if known): the ingest path applies it to each incoming batch.
pub fn causal_order_by<T>(mut idx: Vec<T>, ev: impl Fn(&T) -> Option<&Event>) -> Vec<T> {
    let is_write = |i: &T, tx: &Option<twopc_protocol::TxId>| {
        matches!(ev(i), Some(e) if &e.txid == tx
            && matches!(&e.kind, EventKind::LogWrite { record, .. } if *record == LogRecordKind::Commit))
    };
    let is_fsync = |i: &T| matches!(ev(i).map(|e| &e.kind), Some(EventKind::LogFsync { .. }));
    let mut i = 0;
    while i < idx.len() {
        let tx = match ev(&idx[i]) {
            Some(Event {
                txid,
                kind:
                    EventKind::Decision {
                        decision: Decision::Commit,
                        ..
                    },
                ..
            }) => txid.clone(),
            _ => {
                i += 1;
                continue;
            }
        };
        let end = idx.len().min(i + 1 + CAUSAL_LOOKAHEAD);
        if let Some(j) = (i + 1..end).find(|&j| is_write(&idx[j], &tx)) {
            let end = idx.len().min(j + 1 + CAUSAL_LOOKAHEAD);
            let f = (j + 1..end).find(|&k| is_fsync(&idx[k]));
            let fsync = f.map(|k| idx.remove(k));
            let write = idx.remove(j);
            idx.insert(i, write);
            i += 1;
            if let Some(fs) = fsync {
                idx.insert(i, fs);
                i += 1;
            }
        }
        i += 1;
    }
    idx
}
