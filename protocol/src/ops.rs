//! What a transaction asks one participant to do.
//!
//! The client names, per participant, a list of operations in that participant's own
//! vocabulary, and the coordinator forwards it unchanged inside [`crate::Message::Prepare`]:
//!
//! ```json
//! {"sql": [{"query": "UPDATE accounts SET balance = balance - $1 WHERE id = $2", "params": [10, 1]}]}
//! {"redis": [{"op": "incrby", "key": "balance:1", "by": -10, "min": 0}]}
//! ```
//!
//! SQL parameters are bound (never spliced into the query text): each JSON value travels to
//! Postgres as the text form of the parameter and Postgres parses it for the type it infers
//! (JSON `null` is SQL NULL). Redis operations carry optional guards; a guard that fails makes
//! the participant vote NO with the reason.

use serde::{Deserialize, Serialize};

/// Most statements or commands one participant may receive in one transaction.
pub const MAX_OPS_PER_PARTICIPANT: usize = 1000;

/// The operations for one participant in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operations {
    /// SQL statements for a Postgres participant, run in order in one database session.
    Sql(Vec<SqlStatement>),
    /// Commands for a Redis participant, applied together at commit.
    Redis(Vec<RedisOp>),
}

impl Operations {
    /// Number of statements or commands.
    pub fn len(&self) -> usize {
        match self {
            Operations::Sql(v) => v.len(),
            Operations::Redis(v) => v.len(),
        }
    }

    /// True when there is nothing to do (the participant then votes read-only).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short human summary, for event streams and logs ("2 sql", "1 redis").
    pub fn summary(&self) -> String {
        match self {
            Operations::Sql(v) => format!("{} sql", v.len()),
            Operations::Redis(v) => format!("{} redis", v.len()),
        }
    }
}

// Hand-written so that a client who sends `{"sqll": ...}` or both keys hears exactly what is
// wrong instead of serde's "data did not match any variant".
impl<'de> Deserialize<'de> for Operations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            sql: Option<Vec<SqlStatement>>,
            redis: Option<Vec<RedisOp>>,
        }
        let raw = Raw::deserialize(d)?;
        let ops = match (raw.sql, raw.redis) {
            (Some(s), None) => Operations::Sql(s),
            (None, Some(r)) => Operations::Redis(r),
            (Some(_), Some(_)) => {
                return Err(D::Error::custom(
                    "operations must have exactly one of \"sql\" or \"redis\", not both",
                ))
            }
            (None, None) => {
                return Err(D::Error::custom(
                    "operations must have exactly one of \"sql\" or \"redis\"",
                ))
            }
        };
        if ops.len() > MAX_OPS_PER_PARTICIPANT {
            return Err(D::Error::custom(format!(
                "{} operations for one participant; the limit is {MAX_OPS_PER_PARTICIPANT}",
                ops.len()
            )));
        }
        Ok(ops)
    }
}

/// One SQL statement with its bound parameters (`$1`, `$2`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlStatement {
    /// The statement text, with `$n` placeholders.
    pub query: String,
    /// Parameter values in placeholder order; strings, numbers, booleans, null, or JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    /// For a participant with several shards: the JSON scalar that says which shard the
    /// statement runs on (see [`crate::shard`]). The coordinator routes by it and does not
    /// pass it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_key: Option<serde_json::Value>,
}

impl SqlStatement {
    /// The text form in which parameter `i` is sent to Postgres; `None` is SQL NULL.
    pub fn param_text(&self, i: usize) -> Option<String> {
        match self.params.get(i)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// A precondition on the current value of a key (or hash field) checked at prepare time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisGuard {
    /// The current value must equal this string (which implies it exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// The key (or hash field) must exist (`true`) or must not exist (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl RedisGuard {
    /// True when the guard checks nothing.
    pub fn is_empty(&self) -> bool {
        self.expect.is_none() && self.exists.is_none()
    }
}

/// One Redis command of a transaction. Keys are locked from prepare until commit or abort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RedisOp {
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Precondition on the key's current value.
        #[serde(default, skip_serializing_if = "RedisGuard::is_empty")]
        guard: RedisGuard,
    },
    /// `DEL key`.
    Del {
        /// The key.
        key: String,
        /// Precondition on the key's current value.
        #[serde(default, skip_serializing_if = "RedisGuard::is_empty")]
        guard: RedisGuard,
    },
    /// `INCRBY key by`, optionally bounded: the result must stay within `[min, max]`.
    Incrby {
        /// The key (its value must be an integer or absent).
        key: String,
        /// The increment (negative to decrement).
        by: i64,
        /// Smallest allowed result (e.g. 0 for "no overdraft").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        /// Largest allowed result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
        /// Precondition on the key's current value.
        #[serde(default, skip_serializing_if = "RedisGuard::is_empty")]
        guard: RedisGuard,
    },
    /// `HSET key field value`.
    Hset {
        /// The hash key.
        key: String,
        /// The field.
        field: String,
        /// The new value.
        value: String,
        /// Precondition on the field's current value.
        #[serde(default, skip_serializing_if = "RedisGuard::is_empty")]
        guard: RedisGuard,
    },
    /// `HDEL key field`.
    Hdel {
        /// The hash key.
        key: String,
        /// The field.
        field: String,
        /// Precondition on the field's current value.
        #[serde(default, skip_serializing_if = "RedisGuard::is_empty")]
        guard: RedisGuard,
    },
}

impl RedisOp {
    /// The key the command writes (and locks while prepared).
    pub fn key(&self) -> &str {
        match self {
            RedisOp::Set { key, .. }
            | RedisOp::Del { key, .. }
            | RedisOp::Incrby { key, .. }
            | RedisOp::Hset { key, .. }
            | RedisOp::Hdel { key, .. } => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_and_redis_forms_decode() {
        let s: Operations =
            serde_json::from_str(r#"{"sql":[{"query":"select $1","params":[1,"a",null]}]}"#)
                .unwrap();
        let Operations::Sql(stmts) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(stmts[0].param_text(0).as_deref(), Some("1"));
        assert_eq!(stmts[0].param_text(1).as_deref(), Some("a"));
        assert_eq!(stmts[0].param_text(2), None);
        let r: Operations = serde_json::from_str(
            r#"{"redis":[{"op":"incrby","key":"k","by":-5,"min":0},{"op":"set","key":"a","value":"b","guard":{"exists":false}}]}"#,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.summary(), "2 redis");
    }

    #[test]
    fn wrong_shapes_explain_themselves() {
        let both = serde_json::from_str::<Operations>(r#"{"sql":[],"redis":[]}"#).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let none = serde_json::from_str::<Operations>(r#"{}"#).unwrap_err();
        assert!(none.to_string().contains("exactly one"), "{none}");
        let typo = serde_json::from_str::<Operations>(r#"{"sqll":[]}"#).unwrap_err();
        assert!(typo.to_string().contains("sqll"), "{typo}");
        let op =
            serde_json::from_str::<Operations>(r#"{"redis":[{"op":"flushall"}]}"#).unwrap_err();
        assert!(op.to_string().contains("flushall"), "{op}");
    }

    #[test]
    fn too_many_ops_are_refused() {
        let many = format!(
            r#"{{"redis":[{}]}}"#,
            vec![r#"{"op":"del","key":"k"}"#; MAX_OPS_PER_PARTICIPANT + 1].join(",")
        );
        let err = serde_json::from_str::<Operations>(&many).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
