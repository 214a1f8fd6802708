//! Per-transaction async locks: work for one txid is serialized, different txids run in
//! parallel. Entries live only while someone holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use twopc_protocol::TxId;

type Table = Mutex<HashMap<TxId, Arc<AsyncMutex<()>>>>;

/// A table of per-txid locks.
#[derive(Default)]
pub struct TxLocks {
    table: Arc<Table>,
}

/// Held while working on one txid; releases (and forgets the entry if unused) on drop.
pub struct TxGuard {
    guard: Option<OwnedMutexGuard<()>>,
    txid: TxId,
    table: Arc<Table>,
}

impl TxLocks {
    /// Waits until no one else works on `txid`, then returns the guard.
    pub async fn lock(&self, txid: &TxId) -> TxGuard {
        let m = {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            t.entry(txid.clone()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        TxGuard {
            guard: Some(guard),
            txid: txid.clone(),
            table: self.table.clone(),
        }
    }

    /// Number of txids currently locked or waited for (for tests).
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no txid is locked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for TxGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        // Only the table's own reference left: nobody holds or waits (waiters clone the Arc
        // under this same table lock), so the entry can go.
        if t.get(&self.txid).is_some_and(|m| Arc::strong_count(m) == 1) {
            t.remove(&self.txid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_txid_is_serialized_and_entries_are_dropped() {
        let locks = Arc::new(TxLocks::default());
        let t = TxId::new("t").unwrap();
        let g = locks.lock(&t).await;
        let l2 = locks.clone();
        let t2 = t.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(&t2).await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // Another txid is independent.
        drop(locks.lock(&TxId::new("u").unwrap()).await);
        drop(g);
        waiter.await.unwrap();
        assert!(locks.is_empty());
    }
}
