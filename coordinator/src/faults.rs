//! Fault injection for the demo and tests: lose or delay the next message to a participant,
//! cut a participant's connection until restored, crash the coordinator.
//!
//! Refused unless the coordinator was started with `fault_injection = true`. Faults act at the
//! coordinator's edge (its outbox and connection tasks), so the protocol core runs unchanged
//! and has to recover from them the same way it recovers from real ones.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use twopc_protocol::{Message, MessageType, ParticipantName};

/// What to do with one outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercept {
    /// Lose it.
    Drop,
    /// Deliver it late.
    Delay(Duration),
}

impl Intercept {
    /// A sentence for the event stream.
    pub fn describe(&self, to: &ParticipantName) -> String {
        match self {
            Intercept::Drop => format!("dropped the next message to {to}"),
            Intercept::Delay(d) => {
                format!("delayed the next message to {to} by {} ms", d.as_millis())
            }
        }
    }
}

/// The set of armed faults.
#[derive(Debug)]
pub struct Faults {
    enabled: bool,
    next: Mutex<HashMap<ParticipantName, (Intercept, Option<MessageType>)>>,
    partitioned: Mutex<HashSet<ParticipantName>>,
    partition_tx: watch::Sender<u64>,
}

impl Faults {
    /// Fault injection on or off.
    pub fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            next: Mutex::new(HashMap::new()),
            partitioned: Mutex::new(HashSet::new()),
            partition_tx: watch::channel(0).0,
        }
    }

    /// Whether the API may arm faults.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Arms a one-shot fault for the next protocol message (not heartbeats) to `p`, or the
    /// next one of wire type `msg_type` when given.
    pub fn arm(&self, p: ParticipantName, fault: Intercept, msg_type: Option<MessageType>) {
        self.next
            .lock()
            .expect("faults lock")
            .insert(p, (fault, msg_type));
    }

    /// Consumes the armed fault for this message, if any.
    pub fn intercept(&self, to: &ParticipantName, msg: &Message) -> Option<Intercept> {
        let ty = msg.message_type();
        if !self.enabled || ty.is_heartbeat() {
            return None;
        }
        let mut next = self.next.lock().expect("faults lock");
        let (fault, want) = next.get(to)?.clone();
        if want.is_some_and(|t| t != ty) {
            return None;
        }
        next.remove(to);
        Some(fault)
    }

    /// Cuts (`true`) or restores (`false`) the connection to `p`.
    pub fn set_partitioned(&self, p: ParticipantName, cut: bool) {
        {
            let mut set = self.partitioned.lock().expect("faults lock");
            if cut {
                set.insert(p);
            } else {
                set.remove(&p);
            }
        }
        self.partition_tx.send_modify(|v| *v += 1);
    }

    /// Whether `p` is cut off.
    pub fn is_partitioned(&self, p: &ParticipantName) -> bool {
        self.partitioned.lock().expect("faults lock").contains(p)
    }

    /// Notified whenever the partition set changes.
    pub fn watch_partitions(&self) -> watch::Receiver<u64> {
        self.partition_tx.subscribe()
    }
}
