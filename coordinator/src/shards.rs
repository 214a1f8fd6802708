//! Sharded participants: one logical participant standing for several endpoints.
//!
//! ```toml
//! [[participant]]
//! name = "ledger"
//! kind = "redis"
//! token_env = "LEDGER_TOKEN"        # the shards' token, unless a shard names its own
//! shards = [
//!   { name = "r1", url = "ws://10.0.0.11:7811/" },
//!   { name = "r2", url = "ws://10.0.0.12:7811/", token_file = "/etc/twopc/r2.token" },
//! ]
//! ```
//!
//! # Where sharding lives, and why there
//!
//! Only at the edges. When the configuration is read, each shard becomes an ordinary
//! participant named `logical/shard` (`ledger/r1`): the coordinator dials it, recovers it,
//! lists it in `GET /v1/participants` and reports it in events like any other. When a
//! transaction is submitted, [`split`] routes the operations the client addressed to `ledger`
//! to the shards their keys live on ([`twopc_protocol::shard`]): Redis operations by key,
//! SQL statements by their `shard_key`. Every shard touched is then one branch of the
//! two-phase commit, to the protocol core exactly a participant; a transaction that touches
//! one branch in all is committed in one phase, as before. So the core, its model checker, the
//! decision log and recovery need nothing new: a shard is a participant, and the atomicity
//! argument for participants is the argument for shards.
//!
//! What clients see: they name the logical participant; shards appear in answers and events
//! as `logical/shard`. A client may not name a shard itself (that could put a key on a shard
//! the ring does not route it to). A statement for a participant with several shards must
//! carry a `shard_key`; with one shard it may, and for a participant without shards the key
//! is ignored, so a client's requests need not change when a participant is sharded later.
//! The coordinator strips `shard_key` before the statement goes to a participant.

use crate::config::{ConfigError, ParticipantConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use twopc_protocol::shard::{Ring, RouteKey};
use twopc_protocol::{Operations, ParticipantKind, ParticipantName, RedisOp, SqlStatement};

/// One `shards = [...]` entry of a `[[participant]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// The shard's name within its participant (a plain participant name); part of its place
    /// on the ring, so renaming a shard moves its keys.
    pub name: ParticipantName,
    /// Its WebSocket URL.
    pub url: String,
    /// Its token inline, when it differs from the participant's.
    #[serde(default)]
    pub token: Option<String>,
    /// An environment variable holding its token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding its token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// A participant with shards, as routing needs it.
#[derive(Debug, Clone)]
pub struct Sharded {
    /// The logical name clients use.
    pub name: ParticipantName,
    /// What its shards are.
    pub kind: ParticipantKind,
    /// Where each key lives (by shard name).
    pub ring: Ring,
    /// Each shard's participant name (`logical/shard`), by shard name.
    shards: BTreeMap<String, ParticipantName>,
}

impl Sharded {
    /// The participant name of the shard the ring chose.
    fn branch(&self, shard: &str) -> ParticipantName {
        self.shards[shard].clone()
    }
}

/// Replaces every participant that lists shards by one participant per shard
/// (`logical/shard`, the logical participant's kind and token unless the shard has its own),
/// and returns the routing of each sharded one.
pub fn expand(
    participants: Vec<ParticipantConfig>,
) -> Result<(Vec<ParticipantConfig>, Vec<Sharded>), ConfigError> {
    let mut out = Vec::new();
    let mut sharded = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for p in participants {
        if !names.insert(p.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "participant {} is listed twice",
                p.name
            )));
        }
        if !p.name.is_plain() {
            return Err(ConfigError::Invalid(format!(
                "participant {}: a configured name may not contain '/' (shards are named \
                 logical/shard by the coordinator)",
                p.name
            )));
        }
        if p.shards.is_empty() {
            out.push(p);
            continue;
        }
        if !p.url.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "participant {}: give either url or shards, not both",
                p.name
            )));
        }
        let names: Vec<&str> = p.shards.iter().map(|s| s.name.as_str()).collect();
        let ring = Ring::new(&names)
            .map_err(|e| ConfigError::Invalid(format!("participant {}: {e}", p.name)))?;
        let mut shards = BTreeMap::new();
        for s in &p.shards {
            if !s.name.is_plain() {
                return Err(ConfigError::Invalid(format!(
                    "participant {}: shard name {} may not contain '/'",
                    p.name, s.name
                )));
            }
            let name = ParticipantName::shard_of(&p.name, s.name.as_str()).map_err(|e| {
                ConfigError::Invalid(format!("participant {} shard {}: {e}", p.name, s.name))
            })?;
            let own_token = s.token.is_some() || s.token_env.is_some() || s.token_file.is_some();
            out.push(ParticipantConfig {
                name: name.clone(),
                kind: p.kind,
                url: s.url.clone(),
                token: if own_token {
                    s.token.clone()
                } else {
                    p.token.clone()
                },
                token_env: if own_token {
                    s.token_env.clone()
                } else {
                    p.token_env.clone()
                },
                token_file: if own_token {
                    s.token_file.clone()
                } else {
                    p.token_file.clone()
                },
                shards: Vec::new(),
            });
            shards.insert(s.name.as_str().to_owned(), name);
        }
        sharded.push(Sharded {
            name: p.name,
            kind: p.kind,
            ring,
            shards,
        });
    }
    Ok((out, sharded))
}

/// Why a transaction's operations cannot be split over shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A client named a shard (`logical/shard`) instead of its participant.
    NamedAShard(ParticipantName),
    /// A statement for a participant with several shards has no `shard_key`.
    NoShardKey {
        /// The participant.
        participant: ParticipantName,
        /// 1-based.
        statement: usize,
    },
    /// A `shard_key` that is not a JSON scalar.
    BadShardKey {
        /// The participant.
        participant: ParticipantName,
        /// 1-based.
        statement: usize,
    },
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::NamedAShard(p) => write!(
                f,
                "{p} is a shard: name its participant ({}) and the coordinator routes to the \
                 shard the keys live on",
                p.split_shard().map_or("", |(l, _)| l)
            ),
            SplitError::NoShardKey {
                participant,
                statement,
            } => write!(
                f,
                "participant {participant} has several shards: statement {statement} needs a \
                 \"shard_key\" (the value its row is distributed by)"
            ),
            SplitError::BadShardKey {
                participant,
                statement,
            } => write!(
                f,
                "participant {participant}, statement {statement}: shard_key must be a JSON \
                 scalar (string, number, boolean or null)"
            ),
        }
    }
}

/// The branches of a transaction: the operations addressed to a sharded participant go to the
/// shards their keys live on (in the order given, per shard), the others stay as they are;
/// every statement's `shard_key` is dropped. The operations are moved, not copied: this runs
/// for every submitted transaction.
pub fn split(
    sharded: &[Sharded],
    participants: BTreeMap<ParticipantName, Operations>,
) -> Result<BTreeMap<ParticipantName, Operations>, SplitError> {
    let mut branches: BTreeMap<ParticipantName, Operations> = BTreeMap::new();
    for (name, mut ops) in participants {
        if !name.is_plain() {
            return Err(SplitError::NamedAShard(name));
        }
        let Some(s) = sharded.iter().find(|s| s.name == name) else {
            if let Operations::Sql(stmts) = &mut ops {
                for stmt in stmts {
                    stmt.shard_key = None;
                }
            }
            branches.insert(name, ops);
            continue;
        };
        match ops {
            Operations::Redis(redis) => {
                let mut per: BTreeMap<ParticipantName, Vec<RedisOp>> = BTreeMap::new();
                for op in redis {
                    let shard = s.ring.route_redis(op.key());
                    per.entry(s.branch(shard)).or_default().push(op);
                }
                branches.extend(per.into_iter().map(|(b, ops)| (b, Operations::Redis(ops))));
            }
            Operations::Sql(stmts) => {
                let mut per: BTreeMap<ParticipantName, Vec<SqlStatement>> = BTreeMap::new();
                let only = (s.ring.shards().len() == 1).then(|| s.ring.shards()[0].as_str());
                for (i, mut stmt) in stmts.into_iter().enumerate() {
                    let shard = match (&stmt.shard_key, only) {
                        (Some(key), _) => s.ring.route(RouteKey::ShardKey(key)).map_err(|_| {
                            SplitError::BadShardKey {
                                participant: name.clone(),
                                statement: i + 1,
                            }
                        })?,
                        (None, Some(only)) => only,
                        (None, None) => {
                            return Err(SplitError::NoShardKey {
                                participant: name.clone(),
                                statement: i + 1,
                            })
                        }
                    };
                    let branch = s.branch(shard);
                    stmt.shard_key = None;
                    per.entry(branch).or_default().push(stmt);
                }
                branches.extend(per.into_iter().map(|(b, ops)| (b, Operations::Sql(ops))));
            }
        }
    }
    Ok(branches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name(s: &str) -> ParticipantName {
        ParticipantName::new(s).unwrap()
    }

    fn config(toml: &str) -> crate::config::Config {
        crate::config::Config::from_toml(toml).unwrap()
    }

    const SHARDED: &str = r#"
coordinator_id = "c1"
[[participant]]
name = "bank"
kind = "postgres"
token = "t"
shards = [{ name = "pg1", url = "ws://127.0.0.1:7801/" },
          { name = "pg2", url = "ws://127.0.0.1:7802/", token = "own" }]
[[participant]]
name = "ledger"
kind = "redis"
token = "t"
shards = [{ name = "r1", url = "ws://127.0.0.1:7811/" },
          { name = "r2", url = "ws://127.0.0.1:7812/" },
          { name = "r3", url = "ws://127.0.0.1:7813/" }]
[[participant]]
name = "cache"
kind = "redis"
url = "ws://127.0.0.1:7821/"
token = "t"
"#;

    #[test]
    fn shards_become_participants_named_logical_slash_shard() {
        let c = config(SHARDED);
        let names: Vec<&str> = c.participants.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bank/pg1",
                "bank/pg2",
                "ledger/r1",
                "ledger/r2",
                "ledger/r3",
                "cache"
            ]
        );
        let token = |n: &str| c.participant(&name(n)).unwrap().resolve_token().unwrap();
        assert_eq!(token("bank/pg1"), "t");
        assert_eq!(token("bank/pg2"), "own");
        assert_eq!(
            c.participant(&name("ledger/r2")).unwrap().kind,
            ParticipantKind::Redis
        );
        assert_eq!(c.sharded.len(), 2);
    }

    #[test]
    fn operations_go_to_the_shards_their_keys_live_on() {
        let c = config(SHARDED);
        let ledger = c
            .sharded
            .iter()
            .find(|s| s.name.as_str() == "ledger")
            .unwrap();
        let incr = |k: &str| RedisOp::Incrby {
            key: k.into(),
            by: 1,
            min: None,
            max: None,
            guard: Default::default(),
        };
        let keys: Vec<String> = (1..=20).map(|i| format!("balance:{i}")).collect();
        let stmt = |id: i64| SqlStatement {
            query: "UPDATE accounts SET balance = balance + 1 WHERE id = $1".into(),
            params: vec![json!(id)],
            shard_key: Some(json!(id)),
        };
        let req: BTreeMap<ParticipantName, Operations> = [
            (
                name("ledger"),
                Operations::Redis(keys.iter().map(|k| incr(k)).collect()),
            ),
            (name("bank"), Operations::Sql((1..=6).map(stmt).collect())),
            (name("cache"), Operations::Redis(vec![incr("anything")])),
        ]
        .into();
        let branches = split(&c.sharded, req).unwrap();
        // Every key went where the ring says, in order, and nothing was lost or doubled.
        let mut seen = 0;
        for (b, ops) in &branches {
            match (b.split_shard(), ops) {
                (Some(("ledger", shard)), Operations::Redis(ops)) => {
                    let mine: Vec<&String> = keys
                        .iter()
                        .filter(|k| ledger.ring.route_redis(k) == shard)
                        .collect();
                    let got: Vec<&str> = ops.iter().map(RedisOp::key).collect();
                    assert_eq!(got, mine.iter().map(|k| k.as_str()).collect::<Vec<_>>());
                    seen += ops.len();
                }
                (Some(("bank", _)), Operations::Sql(stmts)) => {
                    assert!(stmts.iter().all(|s| s.shard_key.is_none()), "stripped");
                    seen += stmts.len();
                }
                (None, Operations::Redis(ops)) => {
                    assert_eq!(b.as_str(), "cache");
                    seen += ops.len();
                }
                other => panic!("unexpected branch {other:?}"),
            }
        }
        assert_eq!(seen, 20 + 6 + 1);
        assert!(
            branches
                .keys()
                .filter(|b| b.as_str().starts_with("ledger/"))
                .count()
                == 3
        );
    }

    #[test]
    fn what_cannot_be_routed_is_refused_with_a_reason() {
        let c = config(SHARDED);
        let sql = |key: Option<serde_json::Value>| {
            Operations::Sql(vec![SqlStatement {
                query: "SELECT 1".into(),
                params: vec![],
                shard_key: key,
            }])
        };
        let one = |n: &str, ops: Operations| -> BTreeMap<ParticipantName, Operations> {
            [(name(n), ops)].into()
        };
        let e = split(&c.sharded, one("bank", sql(None))).unwrap_err();
        assert!(e.to_string().contains("needs a \"shard_key\""), "{e}");
        let e = split(&c.sharded, one("bank", sql(Some(json!([1]))))).unwrap_err();
        assert!(e.to_string().contains("JSON scalar"), "{e}");
        let e = split(&c.sharded, one("ledger/r1", Operations::Redis(vec![]))).unwrap_err();
        assert!(
            e.to_string().contains("name its participant (ledger)"),
            "{e}"
        );
        // Unsharded: a shard_key is dropped, nothing else changes.
        let b = split(&c.sharded, one("cache", Operations::Redis(vec![]))).unwrap();
        assert_eq!(b.keys().next().unwrap().as_str(), "cache");
    }

    #[test]
    fn bad_shard_configurations_are_refused() {
        let bad = |extra: &str| {
            crate::config::Config::from_toml(&format!(
                "coordinator_id = 'c1'\n[[participant]]\nname = 'ledger'\nkind = 'redis'\n\
                 token = 't'\n{extra}"
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(bad(
            "url = 'ws://127.0.0.1:1/'\nshards = [{ name = 'a', url = 'ws://127.0.0.1:2/' }]"
        )
        .contains("not both"));
        assert!(bad("shards = [{ name = 'a', url = 'ws://127.0.0.1:2/' }, { name = 'a', url = 'ws://127.0.0.1:3/' }]")
            .contains("listed twice"));
        assert!(bad("shards = [{ name = 'a/b', url = 'ws://127.0.0.1:2/' }]").contains("'/'"));
        assert!(bad(
            "shards = [{ name = 'a', url = 'ws://127.0.0.1:2/' }]\n[[participant]]\n\
             name = 'ledger'\nkind = 'redis'\nurl = 'ws://127.0.0.1:3/'\ntoken = 't'"
        )
        .contains("listed twice"));
        assert!(bad("shards = [{ name = 'a', url = 'http://127.0.0.1:2/' }]").contains("ws://"));
        let e = crate::config::Config::from_toml(
            "coordinator_id = 'c1'\n[[participant]]\nname = 'a/b'\nkind = 'redis'\n\
             url = 'ws://127.0.0.1:1/'\ntoken = 't'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("may not contain '/'"), "{e}");
    }
}
