//! [`RedisResource`]: the [`Resource`] whose prepared state lives entirely in Redis.
//!
//! Every state change is one Lua script (see `src/lua/` and the crate README), run with
//! EVALSHA and re-sent with EVAL when the server answers NOSCRIPT (after a restart the script
//! cache is empty); `redis::Script` does exactly that. This process keeps nothing of its own:
//! [`RedisResource::list_prepared`](Resource::list_prepared) reads Redis every time.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twopc_participant::{
    Blocked, OnePhaseAnswer, OnePhaseContext, OnePhaseOutcome, ParticipantError, PrepareOutcome,
    Resource,
};
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, NoClass, Operations, ParticipantKind, PreparedTx,
    RedisGuard, RedisOp, TxId,
};

/// Every key the participant owns starts with this; transactions may not write under it.
pub const NAMESPACE: &str = "twopc:";

const COMMON: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// How long the outcomes of finished transactions are remembered (so that a repeated Commit
/// answers `already_applied` instead of `not_prepared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many outcomes are kept (oldest dropped first).
    pub keep_count: u64,
    /// Outcomes older than this are dropped.
    pub keep_for: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_count: 100_000,
            keep_for: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

struct Scripts {
    prepare: Script,
    commit: Script,
    abort: Script,
    one_phase: Script,
    list: Script,
}

/// The Redis participant's resource. Cheap to clone (the connection is multiplexed).
#[derive(Clone)]
pub struct RedisResource {
    conn: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
    retention: Retention,
    /// Run even when redis-server does not fsync every write (`--allow-unsafe-durability`).
    allow_unsafe_durability: bool,
    /// When the server's persistence settings were last found durable.
    durable_checked: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

/// How long a successful durability check is trusted. redis-server can be reconfigured
/// (CONFIG SET) or restarted with another configuration at any time, so the settings are
/// re-read this often while requests arrive; one CONFIG GET a second costs nothing.
const DURABILITY_RECHECK: Duration = Duration::from_secs(1);

/// Why a prepared state or outcome written to this Redis server could be lost in a crash,
/// from its `appendonly` and `appendfsync` settings; `None` when every write is fsynced to
/// the AOF before the reply.
pub fn durability_problem(appendonly: &str, appendfsync: &str) -> Option<String> {
    if !appendonly.eq_ignore_ascii_case("yes") {
        return Some(format!(
            "redis-server runs with appendonly {appendonly:?}: prepared transactions and \
             outcomes would be lost in a crash (a YES vote must survive one)"
        ));
    }
    if !appendfsync.eq_ignore_ascii_case("always") {
        return Some(format!(
            "redis-server runs with appendfsync {appendfsync:?}: a write is acknowledged before \
             it is fsynced, so a crash can lose a prepared transaction after its YES vote"
        ));
    }
    None
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn err(e: redis::RedisError) -> ParticipantError {
    ParticipantError::Resource(format!("redis: {e}"))
}

impl RedisResource {
    /// A resource for the Redis server at `url`. Connects lazily and reconnects by itself,
    /// so the participant can start (and keep running) while Redis is down; requests fail
    /// with an `internal` error until it is back.
    /// A `rediss://` URL needs `tls`: the CA redis-server's certificate is verified against
    /// (with the URL's host), and optionally the client certificate to present.
    pub fn new(
        url: &str,
        tls: Option<&twopc_tls::ClientTlsFiles>,
        retention: Retention,
    ) -> Result<Self, ParticipantError> {
        let bad_url = |e: redis::RedisError| {
            ParticipantError::Config(format!(
                "bad Redis URL {:?}: {e}",
                crate::config::redact_url(url)
            ))
        };
        let client = match tls {
            None => redis::Client::open(url).map_err(bad_url)?,
            Some(files) => {
                twopc_tls::install_default_provider();
                let read = |what: &str, p: &std::path::Path| {
                    std::fs::read(p).map_err(|e| {
                        ParticipantError::Config(format!("{what} {}: {e}", p.display()))
                    })
                };
                let client_tls = match (&files.cert_file, &files.key_file) {
                    (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                        client_cert: read("redis_cert_file", c)?,
                        client_key: read("redis_key_file", k)?,
                    }),
                    _ => None,
                };
                let certs = redis::TlsCertificates {
                    client_tls,
                    root_cert: Some(read("redis_ca_file", &files.ca_file)?),
                };
                redis::Client::build_with_tls(url, certs).map_err(bad_url)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        if retention.keep_count == 0 {
            return Err(ParticipantError::Config(
                "keep_outcomes must be at least 1".into(),
            ));
        }
        Ok(RedisResource {
            conn,
            scripts: std::sync::Arc::new(Scripts {
                prepare: script(include_str!("lua/prepare.lua")),
                commit: script(include_str!("lua/commit.lua")),
                abort: script(include_str!("lua/abort.lua")),
                one_phase: script(include_str!("lua/one_phase.lua")),
                list: script(include_str!("lua/list.lua")),
            }),
            retention,
            allow_unsafe_durability: false,
            durable_checked: Default::default(),
        })
    }

    /// Serve even when redis-server does not fsync every write before replying (a server
    /// without `appendonly yes` and `appendfsync always`). Votes and outcomes may then be
    /// lost in a crash of redis-server or its machine: for tests and demos only.
    pub fn allow_unsafe_durability(mut self, allow: bool) -> Self {
        self.allow_unsafe_durability = allow;
        self
    }

    /// Reads `appendonly` and `appendfsync` from the server (CONFIG GET) and fails unless
    /// every write is fsynced to the AOF before Redis replies — what makes a prepare script's
    /// reply a durable prepared state — or unsafe durability is allowed.
    pub async fn check_durability(&self) -> Result<(), ParticipantError> {
        if self.allow_unsafe_durability {
            return Ok(());
        }
        let appendonly = self.config_get("appendonly").await?;
        let appendfsync = self.config_get("appendfsync").await?;
        match durability_problem(&appendonly, &appendfsync) {
            None => Ok(()),
            Some(why) => Err(ParticipantError::Resource(format!(
                "refusing to serve: {why}; configure redis-server with `appendonly yes` and \
                 `appendfsync always`, or start the participant with --allow-unsafe-durability"
            ))),
        }
    }

    /// One setting of the server, by CONFIG GET.
    async fn config_get(&self, name: &str) -> Result<String, ParticipantError> {
        let mut c = self.conn.clone();
        let pairs: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut c)
            .await
            .map_err(|e| {
                ParticipantError::Resource(format!(
                    "cannot read redis-server's {name} setting (CONFIG GET: {e}); the \
                     participant must know that writes are fsynced before it votes \
                     (--allow-unsafe-durability to run anyway)"
                ))
            })?;
        pairs.get(name).cloned().ok_or_else(|| {
            ParticipantError::Resource(format!("redis-server did not report its {name} setting"))
        })
    }

    /// [`check_durability`](Self::check_durability), at most once per
    /// [`DURABILITY_RECHECK`]: before every request that writes state which must survive a
    /// crash.
    async fn ensure_durable(&self) -> Result<(), ParticipantError> {
        if self.allow_unsafe_durability {
            return Ok(());
        }
        let fresh = self
            .durable_checked
            .lock()
            .expect("durability check")
            .is_some_and(|at| at.elapsed() < DURABILITY_RECHECK);
        if fresh {
            return Ok(());
        }
        self.check_durability().await?;
        *self.durable_checked.lock().expect("durability check") = Some(Instant::now());
        Ok(())
    }

    /// PING, to report at startup whether Redis is reachable.
    pub async fn ping(&self) -> Result<(), ParticipantError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Runs the prepare or one-phase script: both take the same arguments (txid,
    /// coordinator, now, the operations as JSON, and the outcome retention).
    async fn run_ops_script(
        &self,
        script: &Script,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &[RedisOp],
    ) -> Result<Vec<String>, ParticipantError> {
        let mut c = self.conn.clone();
        script
            .arg(txid.as_str())
            .arg(coordinator.as_str())
            .arg(now_ms())
            .arg(ops_json(ops))
            .arg(self.retention.keep_count)
            .arg(self.keep_ms())
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }

    /// The one-phase script: `run_ops_script`'s arguments and `may_wait` (a held key is then
    /// answered `wait`, with nothing done or recorded).
    async fn run_one_phase_script(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &[RedisOp],
        may_wait: bool,
    ) -> Result<Vec<String>, ParticipantError> {
        let mut c = self.conn.clone();
        self.scripts
            .one_phase
            .arg(txid.as_str())
            .arg(coordinator.as_str())
            .arg(now_ms())
            .arg(ops_json(ops))
            .arg(self.retention.keep_count)
            .arg(self.keep_ms())
            .arg(if may_wait { "1" } else { "0" })
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }

    fn keep_ms(&self) -> u64 {
        self.retention.keep_for.as_millis() as u64
    }

    /// Checks what can be checked without Redis; `Err` is the NO reason, `Ok(None)` means
    /// read-only.
    fn redis_ops(ops: &Operations) -> Result<Option<&[RedisOp]>, String> {
        let Operations::Redis(ops) = ops else {
            return Err("this is a Redis participant; it cannot run SQL statements".into());
        };
        if ops.is_empty() {
            return Ok(None);
        }
        for op in ops {
            if op.key().starts_with(NAMESPACE) {
                return Err(format!(
                    "key {:?} is in the participant's reserved namespace {NAMESPACE:?}",
                    op.key()
                ));
            }
        }
        Ok(Some(ops))
    }
}

fn guard_json(obj: &mut serde_json::Map<String, Value>, g: &RedisGuard) {
    if let Some(e) = &g.expect {
        obj.insert("expect".into(), json!(e));
    }
    if let Some(x) = g.exists {
        obj.insert("exists".into(), json!(if x { "1" } else { "0" }));
    }
}

/// The operations as the scripts read them: every field a string (integers in decimal, so
/// no precision is lost in Lua's doubles), absent fields omitted.
pub fn ops_json(ops: &[RedisOp]) -> String {
    let list: Vec<Value> = ops
        .iter()
        .map(|op| {
            let (mut obj, guard) = match op {
                RedisOp::Set { key, value, guard } => {
                    (json!({"op": "set", "key": key, "value": value}), guard)
                }
                RedisOp::Del { key, guard } => (json!({"op": "del", "key": key}), guard),
                RedisOp::Incrby {
                    key,
                    by,
                    min,
                    max,
                    guard,
                } => {
                    let mut o = json!({"op": "incrby", "key": key, "by": by.to_string()});
                    if let Some(m) = min {
                        o["min"] = json!(m.to_string());
                    }
                    if let Some(m) = max {
                        o["max"] = json!(m.to_string());
                    }
                    (o, guard)
                }
                RedisOp::Hset {
                    key,
                    field,
                    value,
                    guard,
                } => (
                    json!({"op": "hset", "key": key, "field": field, "value": value}),
                    guard,
                ),
                RedisOp::Hdel { key, field, guard } => {
                    (json!({"op": "hdel", "key": key, "field": field}), guard)
                }
            };
            if let Some(o) = obj.as_object_mut() {
                guard_json(o, guard);
            }
            std::mem::take(&mut obj)
        })
        .collect();
    Value::Array(list).to_string()
}

fn ack_result(s: &str) -> Result<AckResult, ParticipantError> {
    match s {
        "applied" => Ok(AckResult::Applied),
        "already_applied" => Ok(AckResult::AlreadyApplied),
        "not_prepared" => Ok(AckResult::NotPrepared),
        "conflict" => Ok(AckResult::Conflict),
        other => Err(ParticipantError::Resource(format!(
            "unexpected script result {other:?}"
        ))),
    }
}

impl Resource for RedisResource {
    fn kind(&self) -> ParticipantKind {
        ParticipantKind::Redis
    }

    async fn prepare(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        // Redis keeps no history of who submitted what; the coordinator's answers and events
        // carry the client's name.
        _cx: twopc_participant::PrepareContext<'_>,
    ) -> Result<PrepareOutcome, ParticipantError> {
        let ops = match Self::redis_ops(ops) {
            Ok(Some(ops)) => ops,
            Ok(None) => return Ok(PrepareOutcome::ReadOnly),
            Err(reason) => {
                return Ok(PrepareOutcome::No {
                    reason,
                    class: NoClass::Final,
                })
            }
        };
        // A YES vote promises a prepared state that survives a crash.
        self.ensure_durable().await?;
        let reply = self
            .run_ops_script(&self.scripts.prepare, coordinator, txid, ops)
            .await?;
        // The script has returned, so (appendfsync always) its writes are on disk.
        match reply.first().map(String::as_str) {
            Some("yes") => Ok(PrepareOutcome::Yes),
            Some("wait") => match (reply.get(1), reply.get(2)) {
                (Some(holder), Some(what)) => Ok(PrepareOutcome::Blocked(Blocked {
                    holder: TxId::new(holder.clone()).map_err(ParticipantError::resource)?,
                    what: what.clone(),
                })),
                _ => Err(ParticipantError::Resource(format!(
                    "unexpected prepare script result {reply:?}"
                ))),
            },
            Some("no") => Ok(PrepareOutcome::No {
                reason: reply.get(1).cloned().unwrap_or_default(),
                class: match reply.get(2).map(String::as_str) {
                    Some("conflict") => NoClass::Conflict,
                    _ => NoClass::Final,
                },
            }),
            _ => Err(ParticipantError::Resource(format!(
                "unexpected prepare script result {reply:?}"
            ))),
        }
    }

    async fn commit(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        // An ack lets the coordinator forget the transaction: the outcome must be durable.
        self.ensure_durable().await?;
        let mut c = self.conn.clone();
        let reply: String = self
            .scripts
            .commit
            .arg(txid.as_str())
            .arg(now_ms())
            .arg(self.retention.keep_count)
            .arg(self.keep_ms())
            .arg(coordinator.map_or("", |c| c.as_str()))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        ack_result(&reply)
    }

    async fn abort(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        self.ensure_durable().await?;
        let mut c = self.conn.clone();
        let reply: String = self
            .scripts
            .abort
            .arg(txid.as_str())
            .arg(now_ms())
            .arg(self.retention.keep_count)
            .arg(self.keep_ms())
            .arg("aborted by the coordinator")
            .arg(coordinator.map_or("", |c| c.as_str()))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        ack_result(&reply)
    }

    async fn commit_one_phase(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        cx: OnePhaseContext<'_>,
    ) -> Result<OnePhaseAnswer, ParticipantError> {
        let decided = |decision, reason| {
            Ok(OnePhaseAnswer::Decided(OnePhaseOutcome {
                decision,
                result: AckResult::Applied,
                reason,
            }))
        };
        let ops = match Self::redis_ops(ops) {
            Ok(Some(ops)) => ops,
            Ok(None) => return decided(Decision::Commit, None),
            Err(reason) => return decided(Decision::Abort, Some(reason)),
        };
        self.ensure_durable().await?;
        let reply = self
            .run_one_phase_script(coordinator, txid, ops, cx.may_wait)
            .await?;
        let unexpected = || {
            Err(ParticipantError::Resource(format!(
                "unexpected one-phase script result {reply:?}"
            )))
        };
        let decision = match reply.first().map(String::as_str) {
            Some("commit") => Decision::Commit,
            Some("abort") => Decision::Abort,
            Some("wait") => {
                let (Some(holder), Some(what)) = (reply.get(1), reply.get(2)) else {
                    return unexpected();
                };
                return Ok(OnePhaseAnswer::Blocked(Blocked {
                    holder: TxId::new(holder.clone()).map_err(ParticipantError::resource)?,
                    what: what.clone(),
                }));
            }
            _ => return unexpected(),
        };
        Ok(OnePhaseAnswer::Decided(OnePhaseOutcome {
            decision,
            result: ack_result(reply.get(1).map(String::as_str).unwrap_or(""))?,
            reason: reply.get(2).cloned(),
        }))
    }

    async fn list_prepared(&self) -> Result<Vec<PreparedTx>, ParticipantError> {
        let mut c = self.conn.clone();
        let flat: Vec<String> = self.scripts.list.invoke_async(&mut c).await.map_err(err)?;
        let mut out = Vec::with_capacity(flat.len() / 3);
        for t in flat.chunks_exact(3) {
            // Only this participant writes these records, with validated ids; a record that
            // does not parse is reported as an error rather than silently dropped.
            let txid = TxId::new(t[0].clone()).map_err(ParticipantError::resource)?;
            let coordinator =
                CoordinatorId::new(t[1].clone()).map_err(ParticipantError::resource)?;
            let prepared_at_ms = t[2].parse().map_err(ParticipantError::resource)?;
            out.push(PreparedTx {
                txid,
                coordinator,
                prepared_at_ms,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_json_keeps_integers_exact() {
        let ops = vec![RedisOp::Incrby {
            key: "k".into(),
            by: i64::MIN,
            min: Some(-1),
            max: None,
            guard: RedisGuard {
                expect: None,
                exists: Some(true),
            },
        }];
        let v: Value = serde_json::from_str(&ops_json(&ops)).unwrap();
        assert_eq!(v[0]["by"], "-9223372036854775808");
        assert_eq!(v[0]["min"], "-1");
        assert_eq!(v[0]["exists"], "1");
        assert!(v[0].get("max").is_none());
    }
}
