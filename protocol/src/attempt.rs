//! The wire txid of each attempt of a client's transaction.
//!
//! The coordinator runs a transaction aborted only by retryable (`conflict`) NO votes again,
//! as a new protocol transaction. A participant keys everything by txid (the Postgres gid,
//! tombstones of aborted transactions, the Redis outcome hash, idempotency by (txid, kind)), so
//! each attempt needs a txid of its own that no participant can confuse with another
//! transaction's, the earlier attempts' included:
//!
//! ```text
//! attempt 1       <client txid>                               (unchanged: never-retried
//!                                                              transactions look as before)
//! attempt n >= 2  ~<n>.<run>.<client txid>                     when it fits in 128 bytes
//!                 ~<n>.<run>#<fnv-1a 128 of the client txid, 32 hex>.<its first bytes>
//!                                                              otherwise (exactly 128 bytes)
//! ```
//!
//! `<run>` is the transaction's [`Priority`] as 16 hex digits: stamped once per submission of
//! the client txid and kept across its attempts, so a later run of the same client txid (a
//! resubmission after a coordinator restart forgot it) gets attempt ids of its own and never
//! meets tombstones the participants kept for the earlier run's attempts.
//!
//! Why it cannot collide with anything else:
//!
//! * a client id never starts with `~` ([`crate::api::GENERATED_ID_PREFIX`], refused by the
//!   API), so no client can submit an attempt id;
//! * ids the coordinator generates are `~<coordinator id>-...`, and a coordinator id has no
//!   `.` or `#`: `~<digits>.` or `~<digits>#`... never starts a generated id;
//! * the form is chosen by length alone and the two forms differ in the byte after `<run>`
//!   (`.` or `#`), so a client id cannot imitate another's hashed form; in the hashed form two
//!   client ids collide only if they share a 128-bit FNV-1a hash and their first 62 bytes.
//!
//! Every attempt id is a valid [`TxId`] (printable ASCII, at most 128 bytes), so its Postgres
//! gid fits as every txid's does ([`crate::gid`]). [`parse`] maps an attempt id back to its
//! number and (in the full form) the client txid; the coordinator's events also name the
//! client txid of every attempt, for the hashed form.

use crate::ids::{TxId, MAX_TXID_LEN};
use crate::priority::Priority;

/// What an attempt id says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptId {
    /// Which attempt (2 or more: attempt 1 is the client txid itself).
    pub attempt: u32,
    /// The priority of the run it belongs to.
    pub priority: Priority,
    /// The client's txid, when the id holds all of it (`None` for the hashed form).
    pub client: Option<TxId>,
}

const FULL: char = '.';
const HASHED: char = '#';

/// The wire txid of attempt `attempt` (from 1) of the client transaction `client` whose run
/// has priority `priority`. Attempt 1 (and 0, treated as 1) is `client` itself.
pub fn attempt_txid(client: &TxId, attempt: u32, priority: Priority) -> TxId {
    if attempt <= 1 {
        return client.clone();
    }
    let head = format!("~{attempt}.{:016x}", priority.0);
    let full = format!("{head}{FULL}{}", client.as_str());
    if full.len() <= MAX_TXID_LEN {
        return TxId::new(full).expect("printable ASCII within the limit");
    }
    let mut id = format!(
        "{head}{HASHED}{:032x}.",
        fnv1a_128(client.as_str().as_bytes())
    );
    let room = MAX_TXID_LEN - id.len();
    // Printable ASCII: every byte is a char boundary.
    id.push_str(&client.as_str()[..room]);
    TxId::new(id).expect("printable ASCII within the limit")
}

/// The attempt number, run and (if the id holds it) client txid of an attempt id; `None` for
/// any other txid (attempt 1 of every transaction included: it is the client's own txid).
pub fn parse(txid: &TxId) -> Option<AttemptId> {
    let rest = txid.as_str().strip_prefix('~')?;
    let (n, rest) = rest.split_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let attempt: u32 = n.parse().ok().filter(|a| *a >= 2)?;
    let hex = rest.get(..16)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let priority = Priority(u64::from_str_radix(hex, 16).ok()?);
    let client = match rest[16..].chars().next()? {
        FULL => Some(TxId::new(&rest[17..]).ok()?),
        HASHED => None,
        _ => return None,
    };
    Some(AttemptId {
        attempt,
        priority,
        client,
    })
}

/// The attempt number of a wire txid: 1 for anything that is not an attempt id.
pub fn attempt_number(txid: &TxId) -> u32 {
    parse(txid).map_or(1, |a| a.attempt)
}

/// FNV-1a, 128 bits: stable across builds and platforms (std's hasher is not), and wide
/// enough that two client ids of the hashed form do not collide by accident.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GENERATED_ID_PREFIX;
    use crate::gid::{format_gid, parse_gid, PG_MAX_GID_LEN};
    use crate::CoordinatorId;

    fn t(s: impl Into<String>) -> TxId {
        TxId::new(s).unwrap()
    }

    const P: Priority = Priority(0x0001_8c2f_3a4b_5000);

    #[test]
    fn attempt_one_is_the_client_txid() {
        assert_eq!(attempt_txid(&t("t1"), 1, P), t("t1"));
        assert_eq!(attempt_txid(&t("t1"), 0, P), t("t1"));
        assert_eq!(parse(&t("t1")), None);
        assert_eq!(attempt_number(&t("t1")), 1);
    }

    #[test]
    fn later_attempts_hold_number_run_and_client() {
        let a = attempt_txid(&t("t1"), 2, P);
        assert_eq!(a.as_str(), "~2.00018c2f3a4b5000.t1");
        assert!(a.as_str().starts_with(GENERATED_ID_PREFIX));
        assert_eq!(
            parse(&a),
            Some(AttemptId {
                attempt: 2,
                priority: P,
                client: Some(t("t1"))
            })
        );
        assert_eq!(attempt_number(&attempt_txid(&t("x y"), 10, P)), 10);
        // Attempts and runs differ from each other.
        assert_ne!(a, attempt_txid(&t("t1"), 3, P));
        assert_ne!(a, attempt_txid(&t("t1"), 2, Priority(P.0 + 1)));
        // A generated id's attempt.
        let g = t("~c1-1700000000000-3");
        assert_eq!(parse(&attempt_txid(&g, 2, P)).unwrap().client, Some(g));
    }

    #[test]
    fn the_longest_client_ids_get_the_hashed_form() {
        for len in [95, 98, 99, 100, 127, MAX_TXID_LEN] {
            let a = t("a".repeat(len));
            let b = t(format!("{}b", "a".repeat(len - 1)));
            for n in [2, 9, 10, u32::MAX] {
                let ia = attempt_txid(&a, n, P);
                let ib = attempt_txid(&b, n, P);
                assert!(ia.as_str().len() <= MAX_TXID_LEN, "{ia}");
                assert_ne!(ia, ib, "ids differing in their last byte");
                let parsed = parse(&ia).unwrap();
                assert_eq!((parsed.attempt, parsed.priority), (n, P));
                if parsed.client.is_none() {
                    assert_eq!(ia.as_str().len(), MAX_TXID_LEN);
                } else {
                    assert_eq!(parsed.client, Some(a.clone()));
                }
                // Its gid fits PostgreSQL's limit and parses back.
                let c = CoordinatorId::new("c".repeat(16)).unwrap();
                let gid = format_gid(&c, &ia);
                assert!(gid.len() <= PG_MAX_GID_LEN, "{}", gid.len());
                assert_eq!(parse_gid(&gid), Some((c, ia)));
            }
        }
        let long = t("z".repeat(MAX_TXID_LEN));
        assert!(parse(&attempt_txid(&long, 2, P)).unwrap().client.is_none());
    }

    #[test]
    fn other_ids_are_not_attempts() {
        for s in [
            "~c1-1700000000000-3",
            "~2-00018c2f3a4b5000.t1",
            "~1.00018c2f3a4b5000.t1",
            "~2.00018c2f3a4b500.t1",
            "~2.00018c2f3a4b5000",
            "~2.00018c2f3a4b5000-t1",
            "~x.00018c2f3a4b5000.t1",
            "~.00018c2f3a4b5000.t1",
            "2.00018c2f3a4b5000.t1",
        ] {
            assert_eq!(parse(&t(s)), None, "{s}");
        }
    }
}
