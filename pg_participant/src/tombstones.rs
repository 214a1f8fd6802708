//! Txids this process voted NO on or was told to abort: a late or duplicated Prepare for one
//! of them (a delayed frame, a retransmission) votes NO instead of preparing work the
//! coordinator has already given up on. Bounded; lost on restart, when the dead tracking row
//! of a rolled-back attempt (`already_aborted`) or the coordinator's presumed abort takes over.
//!
//! # Why this and not only the extension
//!
//! "Was this gid seen here before?" is the extension's question (`twopc.run_and_prepare()`
//! asks it first, from shared memory and the tracking rows). This set holds only what
//! PostgreSQL has no record of: an Abort that overtook its Prepare (nothing ran, nothing can
//! be written without a transaction), a Prepare refused before any SQL ran, and a NO from a
//! failure before the extension wrote its tracking row (a bad identity or role, which a
//! repeat could get past once the cause is fixed; a NO must stay final).
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use twopc_protocol::TxId;

/// Most tombstones kept (oldest forgotten first).
const MAX_TOMBSTONES: usize = 100_000;

/// The set, with its insertion order for forgetting the oldest.
#[derive(Default)]
pub(crate) struct Tombstones(Mutex<(HashSet<TxId>, VecDeque<TxId>)>);

impl Tombstones {
    /// Remembers `txid`.
    pub(crate) fn insert(&self, txid: &TxId) {
        let mut t = self.0.lock().expect("tombstones");
        if t.0.insert(txid.clone()) {
            t.1.push_back(txid.clone());
            while t.1.len() > MAX_TOMBSTONES {
                if let Some(old) = t.1.pop_front() {
                    t.0.remove(&old);
                }
            }
        }
    }

    /// Whether `txid` is remembered.
    pub(crate) fn contains(&self, txid: &TxId) -> bool {
        self.0.lock().expect("tombstones").0.contains(txid)
    }
}
