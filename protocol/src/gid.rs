//! The Postgres global transaction identifier (gid) of a twopc transaction.
//!
//! A prepared transaction in PostgreSQL is named by a gid of at most 199 bytes, and
//! `pg_prepared_xacts` is the only thing about it that is visible while it is in doubt and
//! after a crash: rows written inside the prepared transaction stay invisible until it
//! commits. So, like Citus, twopc encodes who owns the transaction into the gid itself:
//!
//! ```text
//! twopc:<coordinator id>:<txid>        when the txid only uses [A-Za-z0-9._-]
//! twopc:<coordinator id>:~<base64url>  otherwise (the txid's bytes, unpadded base64url)
//! ```
//!
//! Clients never choose a gid; it is always derived here from the (coordinator id, txid)
//! pair, so the Postgres participant, the extension's `twopc.in_doubt` view and the
//! coordinator's recovery agree on it. The character set is small and quote-free (letters,
//! digits, `._-:~`), so a gid is safe to show, log and embed anywhere.
//!
//! Length: prefix 6 + coordinator ≤ 16 + 1 + 1 + base64url(128 bytes) = 171, at most 195
//! bytes, under PostgreSQL's `GIDSIZE - 1` = 199.

use crate::ids::{CoordinatorId, TxId};

/// Every twopc gid starts with this prefix.
pub const GID_PREFIX: &str = "twopc:";
/// PostgreSQL's limit on a gid, in bytes (`GIDSIZE` is 200 including the terminator).
pub const PG_MAX_GID_LEN: usize = 199;

const RAW_MARK_B64: char = '~';

fn raw_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// The gid under which participants prepare `txid` for `coordinator`.
pub fn format_gid(coordinator: &CoordinatorId, txid: &TxId) -> String {
    let mut gid = String::with_capacity(PG_MAX_GID_LEN);
    gid.push_str(GID_PREFIX);
    gid.push_str(coordinator.as_str());
    gid.push(':');
    if txid.as_str().chars().all(raw_ok) {
        gid.push_str(txid.as_str());
    } else {
        gid.push(RAW_MARK_B64);
        base64url_encode(txid.as_str().as_bytes(), &mut gid);
    }
    debug_assert!(gid.len() <= PG_MAX_GID_LEN);
    gid
}

/// The (coordinator id, txid) a twopc gid was made from, or `None` when `gid` was not made by
/// [`format_gid`] (a native `PREPARE TRANSACTION 'anything'`, say).
pub fn parse_gid(gid: &str) -> Option<(CoordinatorId, TxId)> {
    let rest = gid.strip_prefix(GID_PREFIX)?;
    let (coord, tx) = rest.split_once(':')?;
    let coord = CoordinatorId::new(coord).ok()?;
    let txid = if let Some(b64) = tx.strip_prefix(RAW_MARK_B64) {
        let bytes = base64url_decode(b64)?;
        let s = String::from_utf8(bytes).ok()?;
        // The encoded form is only used when the raw form is not; anything else is not ours.
        if s.chars().all(raw_ok) {
            return None;
        }
        TxId::new(s).ok()?
    } else {
        if !tx.chars().all(raw_ok) {
            return None;
        }
        TxId::new(tx).ok()?
    };
    Some((coord, txid))
}

/// Unpadded base64url, and strict: a non-canonical encoding (bits set past the last byte)
/// is refused, so that every txid has exactly one gid.
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn base64url_encode(bytes: &[u8], out: &mut String) {
    base64::Engine::encode_string(&B64URL, bytes, out);
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&B64URL, s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CoordinatorId {
        CoordinatorId::new(s).unwrap()
    }
    fn t(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    #[test]
    fn simple_txid_is_readable() {
        assert_eq!(format_gid(&c("c1"), &t("tx-42.a_b")), "twopc:c1:tx-42.a_b");
        assert_eq!(
            parse_gid("twopc:c1:tx-42.a_b"),
            Some((c("c1"), t("tx-42.a_b")))
        );
    }

    #[test]
    fn hostile_txids_round_trip_and_stay_in_the_safe_set() {
        let cases = [
            "it's; DROP TABLE x; --",
            "a:b:c",
            "~x",
            " ",
            "\"\\'",
            "ab",
            "abc",
            "abcd",
        ];
        for s in cases {
            let gid = format_gid(&c("coord_16_chars__"), &t(s));
            assert!(
                gid.chars().all(|ch| raw_ok(ch) || ch == ':' || ch == '~'),
                "{gid}"
            );
            assert_eq!(parse_gid(&gid), Some((c("coord_16_chars__"), t(s))), "{s}");
        }
    }

    #[test]
    fn longest_ids_fit_postgres_limit() {
        let worst = t(&"~".repeat(128));
        let gid = format_gid(&c(&"z".repeat(16)), &worst);
        assert!(gid.len() <= PG_MAX_GID_LEN, "{} bytes", gid.len());
        assert_eq!(parse_gid(&gid).unwrap().1, worst);
        let long_raw = format_gid(&c(&"z".repeat(16)), &t(&"a".repeat(128)));
        assert!(long_raw.len() <= PG_MAX_GID_LEN);
    }

    #[test]
    fn foreign_gids_are_not_parsed() {
        for g in [
            "g1",
            "twopc:",
            "twopc:c1",
            "twopc::tx",
            "twopc:c1:",
            "twopc:c!:tx",
            "twopc:c1:has space",
            "twopc:c1:~!!",
            "twopc:c1:~YQ", // base64 of "a", which has a raw form
            "twopc:c1:~YR", // non-canonical trailing bits
            "citus_0_1_2_3",
        ] {
            assert_eq!(parse_gid(g), None, "{g}");
        }
    }

    #[test]
    fn base64url_matches_known_vectors() {
        let mut s = String::new();
        base64url_encode(b"\xfb\xff", &mut s);
        assert_eq!(s, "-_8");
        assert_eq!(base64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert_eq!(base64url_decode("A"), None);
    }
}
