//! Routing a key to a shard: consistent hashing over virtual nodes.
//!
//! A logical participant (`ledger`, say) can stand for several servers, its *shards*. Every
//! party that must agree on where a key lives (the coordinator that splits a transaction, the
//! `reshard --plan` command, the demo that seeds the data, the tests' invariant checker) asks
//! this one pure function, so they cannot disagree.
//!
//! # The rule
//!
//! Each shard owns [`VNODES`] points on a 64-bit ring, at the hashes of `"<shard>#<i>"`. A key
//! belongs to the shard owning the first point at or after the key's hash (wrapping around).
//! Why a ring and not `hash % n`: adding a shard to `n` moves only the keys that land on the
//! new shard's points, about `1/(n+1)` of them, all of them *to* the new shard; with a modulus
//! nearly every key would move. Why many points per shard: one point each would give shards
//! arcs of very different lengths; 160 per shard (as ketama does) keeps every shard within a
//! few percent of its fair share.
//!
//! What is hashed ([`RouteKey`]):
//!
//! * a **Redis key**, except that a `{...}` hash tag is honoured as Redis Cluster does: when the
//!   key contains `{` and, after it, a `}` with at least one byte between, only the bytes
//!   between the first `{` and the first `}` after it are hashed, so `{user:1}:balance` and
//!   `{user:1}:history` land together;
//! * a Postgres statement's **`shard_key`**, any JSON scalar, by its text: a string by its
//!   contents, an integer in decimal, `true`/`false`, `null`. So `1` and `"1"` route alike: a
//!   column value should not move because a client quoted it.
//!
//! The hash is FNV-1a (64-bit) followed by the SplitMix64 finalizer: fully specified here,
//! the same on every platform and in every build (std's `DefaultHasher` promises neither), and
//! the finalizer spreads FNV's weak low bits. Shard names are part of the ring: renaming a
//! shard moves its keys, so a shard's name is its identity, not its address.

use serde_json::Value;
use std::fmt;

/// Points each shard owns on the ring.
pub const VNODES: u32 = 160;

/// The most shards one logical participant may have.
pub const MAX_SHARDS: usize = 256;

/// Why a ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// No shard was given.
    NoShards,
    /// More than [`MAX_SHARDS`].
    TooManyShards(usize),
    /// Two shards share a name.
    DuplicateShard(String),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::NoShards => write!(f, "a sharded participant needs at least one shard"),
            RingError::TooManyShards(n) => {
                write!(f, "{n} shards: at most {MAX_SHARDS} per participant")
            }
            RingError::DuplicateShard(name) => write!(f, "shard {name:?} is listed twice"),
        }
    }
}

impl std::error::Error for RingError {}

/// What a key is routed by.
#[derive(Debug, Clone, Copy)]
pub enum RouteKey<'a> {
    /// A Redis key (its `{...}` hash tag, if it has one).
    Redis(&'a str),
    /// A Postgres statement's `shard_key` (a JSON scalar).
    ShardKey(&'a Value),
}

/// Why a `shard_key` cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardKeyError {
    /// An array or an object: only scalars name one place.
    NotAScalar,
}

impl fmt::Display for ShardKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardKeyError::NotAScalar => write!(
                f,
                "shard_key must be a JSON scalar (string, number, boolean or null)"
            ),
        }
    }
}

impl std::error::Error for ShardKeyError {}

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ring position of some bytes.
pub fn hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(bytes))
}

/// The part of a Redis key that is hashed: its hash tag, or all of it (Redis Cluster's rule).
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.find('}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The text a `shard_key` is hashed by (see the module docs).
pub fn shard_key_text(v: &Value) -> Result<String, ShardKeyError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // serde_json prints integers in decimal and other numbers in their shortest
        // round-tripping form, the same for the same value.
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".into()),
        Value::Array(_) | Value::Object(_) => Err(ShardKeyError::NotAScalar),
    }
}

/// The ring position of a key.
pub fn key_hash(key: RouteKey<'_>) -> Result<u64, ShardKeyError> {
    Ok(match key {
        RouteKey::Redis(k) => hash(hash_tag(k).as_bytes()),
        RouteKey::ShardKey(v) => hash(shard_key_text(v)?.as_bytes()),
    })
}

/// The shards of one logical participant, laid out on the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    shards: Vec<String>,
    /// (point, index into `shards`), sorted by point.
    points: Vec<(u64, u16)>,
}

impl Ring {
    /// A ring of the named shards (order does not matter: the names place them).
    pub fn new<S: AsRef<str>>(shards: &[S]) -> Result<Ring, RingError> {
        if shards.is_empty() {
            return Err(RingError::NoShards);
        }
        if shards.len() > MAX_SHARDS {
            return Err(RingError::TooManyShards(shards.len()));
        }
        let mut names: Vec<String> = shards.iter().map(|s| s.as_ref().to_owned()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(RingError::DuplicateShard(w[0].clone()));
        }
        let mut points = Vec::with_capacity(names.len() * VNODES as usize);
        for (i, name) in names.iter().enumerate() {
            for v in 0..VNODES {
                // MAX_SHARDS fits in u16.
                points.push((hash(format!("{name}#{v}").as_bytes()), i as u16));
            }
        }
        // Ties (two points at one hash, vanishingly rare) go to the smaller shard name, so
        // the ring does not depend on the order the shards were listed in.
        points.sort_unstable();
        Ok(Ring {
            shards: names,
            points,
        })
    }

    /// The shard names, sorted.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The shard that owns ring position `h`.
    pub fn shard_at(&self, h: u64) -> &str {
        let i = self.points.partition_point(|&(p, _)| p < h);
        let (_, shard) = self.points.get(i).unwrap_or(&self.points[0]);
        &self.shards[usize::from(*shard)]
    }

    /// The shard `key` lives on.
    pub fn route(&self, key: RouteKey<'_>) -> Result<&str, ShardKeyError> {
        Ok(self.shard_at(key_hash(key)?))
    }

    /// The shard a Redis key lives on.
    pub fn route_redis(&self, key: &str) -> &str {
        self.shard_at(key_hash(RouteKey::Redis(key)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring(names: &[&str]) -> Ring {
        Ring::new(names).unwrap()
    }

    #[test]
    fn the_hash_is_fixed_forever() {
        // Changing any of these moves every key of every deployment: never do it silently.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
        let r = ring(&["r1", "r2", "r3"]);
        let routed: Vec<&str> = (1..=8)
            .map(|i| r.route_redis(&format!("balance:{i}")))
            .collect();
        assert_eq!(routed, GOLDEN_BALANCES);
    }

    /// Where `balance:1` .. `balance:8` live on the ring of r1, r2, r3 (see the test above).
    const GOLDEN_BALANCES: [&str; 8] = ["r2", "r3", "r3", "r2", "r1", "r1", "r3", "r1"];

    #[test]
    fn keys_spread_evenly_over_the_shards() {
        for n in [2usize, 3, 5, 8] {
            let names: Vec<String> = (1..=n).map(|i| format!("shard-{i}")).collect();
            let r = Ring::new(&names).unwrap();
            let keys = 40_000;
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for k in 0..keys {
                *counts
                    .entry(r.route_redis(&format!("balance:{k}")))
                    .or_default() += 1;
            }
            assert_eq!(counts.len(), n, "every shard gets keys");
            let fair = keys as f64 / n as f64;
            for (shard, c) in counts {
                let off = (c as f64 - fair).abs() / fair;
                assert!(
                    off < 0.15,
                    "{n} shards: {shard} has {c} keys, fair is {fair}"
                );
            }
        }
    }

    #[test]
    fn routing_is_stable_and_independent_of_listing_order() {
        let a = ring(&["r1", "r2", "r3"]);
        let b = ring(&["r3", "r1", "r2"]);
        assert_eq!(a, b);
        for k in 0..1000 {
            let key = format!("k{k}");
            assert_eq!(a.route_redis(&key), b.route_redis(&key));
            assert_eq!(a.route_redis(&key), a.route_redis(&key));
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n_keys_and_only_to_it() {
        let before = ring(&["r1", "r2", "r3"]);
        let after = ring(&["r1", "r2", "r3", "r4"]);
        let keys = 40_000;
        let mut moved = 0;
        for k in 0..keys {
            let key = format!("balance:{k}");
            let (from, to) = (before.route_redis(&key), after.route_redis(&key));
            if from != to {
                assert_eq!(to, "r4", "{key} moved between old shards");
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!(
            (0.20..0.30).contains(&share),
            "{share} moved, about 1/4 expected"
        );
    }

    #[test]
    fn a_hash_tag_keeps_related_keys_together() {
        assert_eq!(hash_tag("{user:1}:balance"), "user:1");
        assert_eq!(hash_tag("x{user:1}y{z}"), "user:1");
        assert_eq!(
            hash_tag("{}:balance"),
            "{}:balance",
            "an empty tag is no tag"
        );
        assert_eq!(hash_tag("no{tag"), "no{tag");
        assert_eq!(hash_tag("}{"), "}{");
        assert_eq!(hash_tag("a{}{b}"), "a{}{b}", "only the first {{ counts");
        let r = ring(&["r1", "r2", "r3", "r4", "r5"]);
        for u in 0..200 {
            let shard = r.route_redis(&format!("{{user:{u}}}:balance"));
            assert_eq!(r.route_redis(&format!("{{user:{u}}}:history")), shard);
            assert_eq!(
                r.route_redis(&format!("user:{u}")),
                shard,
                "the tag is the key"
            );
        }
    }

    #[test]
    fn shard_keys_route_by_their_text() {
        let r = ring(&["pg1", "pg2"]);
        let route = |v: Value| r.route(RouteKey::ShardKey(&v)).map(str::to_owned);
        for i in 0..100 {
            assert_eq!(route(json!(i)), route(json!(i.to_string())));
        }
        assert_eq!(shard_key_text(&json!(true)).unwrap(), "true");
        assert_eq!(shard_key_text(&json!(null)).unwrap(), "null");
        assert_eq!(shard_key_text(&json!(-7)).unwrap(), "-7");
        assert_eq!(shard_key_text(&json!(2.5)).unwrap(), "2.5");
        assert_eq!(route(json!([1])), Err(ShardKeyError::NotAScalar));
        assert_eq!(route(json!({"id": 1})), Err(ShardKeyError::NotAScalar));
    }

    #[test]
    fn bad_rings_are_refused() {
        assert_eq!(Ring::new::<&str>(&[]), Err(RingError::NoShards));
        assert_eq!(
            Ring::new(&["a", "b", "a"]),
            Err(RingError::DuplicateShard("a".into()))
        );
        let many: Vec<String> = (0..=MAX_SHARDS).map(|i| i.to_string()).collect();
        assert_eq!(
            Ring::new(&many),
            Err(RingError::TooManyShards(MAX_SHARDS + 1))
        );
        // One shard takes everything.
        let one = ring(&["only"]);
        assert!((0..100).all(|k| one.route_redis(&k.to_string()) == "only"));
    }
}
