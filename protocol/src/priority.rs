//! A transaction's age, for deadlock avoidance across stores.
//!
//! Neither PostgreSQL nor Redis can see a wait-for cycle that runs through the other: T1
//! holds a Postgres row and waits for a Redis key that T2 holds, while T2 waits in Postgres for
//! T1's row. The participants break such cycles by age (see the participant core's
//! "Lock waits" rules): a transaction may wait as long as the lock-wait bound for a younger
//! one, but only briefly for an older one. Every cycle has a member that waits for an older
//! one, so every cycle is broken within that brief grace, and the oldest transaction of all is
//! never the one given up: it only ever waits for younger ones. That needs an age every party
//! agrees on, assigned once and kept across the coordinator's retries: this [`Priority`].
//!
//! The coordinator stamps it when a client's transaction is first accepted: the wall-clock
//! millisecond in the high bits and a per-coordinator sequence number in the low
//! [`SEQ_BITS`], so two transactions accepted in the same millisecond still differ. Equal
//! priorities (two coordinators, one millisecond) are ordered by txid ([`older`]).

use crate::TxId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Low bits of a [`Priority`] that hold the coordinator's sequence number.
pub const SEQ_BITS: u32 = 12;

/// How old a transaction is: smaller is older, and older wins (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub u64);

impl Priority {
    /// The priority of a transaction first accepted at `unix_ms`, the `seq`-th of its
    /// millisecond at its coordinator (only the low [`SEQ_BITS`] of `seq` count).
    pub fn at(unix_ms: u64, seq: u64) -> Priority {
        Priority((unix_ms << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1)))
    }

    /// The wall-clock millisecond it was assigned at.
    pub fn unix_ms(self) -> u64 {
        self.0 >> SEQ_BITS
    }
}

/// How transaction `a` (with priority `pa`) compares in age with `b` (`pb`): `Less` when `a`
/// is older. A transaction without a priority (from a coordinator that sends none) counts as
/// younger than every one with a priority; ties are broken by txid, so two different
/// transactions are never equal.
pub fn older(a: (&TxId, Option<Priority>), b: (&TxId, Option<Priority>)) -> Ordering {
    let key = |p: Option<Priority>| p.map_or(u64::MAX, |p| p.0);
    key(a.1).cmp(&key(b.1)).then_with(|| a.0.cmp(b.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    #[test]
    fn earlier_is_older_and_sequence_breaks_ties_within_a_millisecond() {
        let a = Priority::at(1_000, 7);
        let b = Priority::at(1_000, 8);
        let c = Priority::at(1_001, 0);
        assert!(a < b && b < c);
        assert_eq!(c.unix_ms(), 1_001);
        assert_eq!(Priority::at(5, 1 << SEQ_BITS), Priority::at(5, 0));
    }

    #[test]
    fn missing_priority_is_youngest_and_txid_breaks_ties() {
        let p = Some(Priority::at(10, 0));
        assert_eq!(older((&t("z"), p), (&t("a"), None)), Ordering::Less);
        assert_eq!(older((&t("a"), None), (&t("z"), p)), Ordering::Greater);
        assert_eq!(older((&t("a"), p), (&t("b"), p)), Ordering::Less);
        assert_eq!(older((&t("a"), None), (&t("b"), None)), Ordering::Less);
    }
}
