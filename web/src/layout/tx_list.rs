//! The transaction list: the newest transactions and their durations.

use super::*;

/// The newest `limit` transactions, newest first.
pub fn recent_txs(view: &Derived, limit: usize) -> Vec<&TxView> {
    view.txs().rev().take(limit).collect()
}

/// Formats a duration in ms for humans: "850 ms", "12.3 s", "4 min".
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}
