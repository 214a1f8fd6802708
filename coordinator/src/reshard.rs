//! `reshard --plan`: which keys would move if a shard were added to a sharded participant.
//!
//! Adding a shard changes the ring ([`twopc_protocol::shard`]): about 1/(n+1) of the keys
//! now belong to the new shard. This command reads every key the current shards hold (Redis:
//! `SCAN` over each shard's redis-server; PostgreSQL: one column of one table on each shard's
//! database), routes it on the current and on the extended ring, and prints each key that
//! would move as `key<TAB>from<TAB>to`, then a summary on standard error. A key found on a
//! shard other than the one the current ring names is reported as misplaced.
//!
//! It only reads. Moving the data is the operator's (README, "Sharded participants"): copy
//! the listed keys or rows to the new shard while no transaction writes them, add the shard
//! to the configuration, restart the coordinators, then delete the copies left behind.
//!
//! Each shard's data URL comes from `--data SHARD=URL` or the environment variable
//! `TWOPC_DATA_<SHARD>` (upper case, `-` and `.` as `_`); a URL with a password is refused on
//! the command line, where every user's `ps` would show it.

use crate::client::CliResult;
use crate::config::Config;
use crate::log::describe_pg_error as describe;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use twopc_protocol::shard::{Ring, RouteKey};
use twopc_protocol::{ParticipantKind, ParticipantName};

/// `reshard`.
#[derive(Args, Debug)]
pub struct ReshardArgs {
    /// Print the plan (the only mode: the command never moves data).
    #[arg(long, required = true)]
    plan: bool,
    /// The coordinator's configuration (the participant's current shards).
    #[arg(long)]
    config: PathBuf,
    /// The sharded participant.
    #[arg(long)]
    participant: ParticipantName,
    /// The name of the shard to add.
    #[arg(long, value_name = "SHARD")]
    add: ParticipantName,
    /// `SHARD=URL` of a current shard's data: `redis://host:port/` or `postgres://...`.
    #[arg(long, value_name = "SHARD=URL")]
    data: Vec<String>,
    /// Redis: only keys matching this `SCAN MATCH` pattern.
    #[arg(long = "match", default_value = "*")]
    pattern: String,
    /// PostgreSQL: the table whose rows are distributed.
    #[arg(long)]
    table: Option<String>,
    /// PostgreSQL: the column the statements' `shard_key` carries.
    #[arg(long)]
    column: Option<String>,
}

/// A key that would move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The key (Redis) or the column's value as text (PostgreSQL).
    pub key: String,
    /// The shard that holds it now.
    pub from: String,
    /// The shard it would belong to.
    pub to: String,
}

/// What a plan found.
#[derive(Debug, Default)]
pub struct Plan {
    /// The keys that would move.
    pub moves: Vec<Move>,
    /// Keys looked at.
    pub keys: usize,
    /// Keys found on a shard the current ring does not route them to: (key, found on, ring says).
    pub misplaced: Vec<(String, String, String)>,
}

/// Routes every `(shard, key)` found on the current ring and the ring with `add`.
pub fn plan(
    current: &Ring,
    add: &str,
    found: impl IntoIterator<Item = (String, String)>,
    route: impl Fn(&Ring, &str) -> String,
) -> Result<Plan, String> {
    let mut names: Vec<String> = current.shards().to_vec();
    names.push(add.to_owned());
    let next = Ring::new(&names).map_err(|e| e.to_string())?;
    let mut p = Plan::default();
    for (shard, key) in found {
        p.keys += 1;
        let now = route(current, &key);
        if now != shard {
            p.misplaced.push((key.clone(), shard.clone(), now));
        }
        let then = route(&next, &key);
        if then != shard {
            p.moves.push(Move {
                key,
                from: shard,
                to: then,
            });
        }
    }
    Ok(p)
}

fn env_name(shard: &str) -> String {
    let upper: String = shard
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("TWOPC_DATA_{upper}")
}

/// Whether a URL carries a password (`scheme://user:password@host`, or libpq's `password=`).
fn has_password(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("password=")))
        || url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
            .and_then(|auth| auth.rsplit_once('@'))
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Each current shard's data URL, from `--data` or the environment.
fn data_urls(a: &ReshardArgs, shards: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut given = BTreeMap::new();
    for d in &a.data {
        let (shard, url) = d
            .split_once('=')
            .ok_or_else(|| format!("--data {d:?}: expected SHARD=URL"))?;
        if has_password(url) {
            return Err(format!(
                "--data {shard}=...: the URL holds a password, which every user's ps would show; \
                 put it in {} instead",
                env_name(shard)
            ));
        }
        given.insert(shard.to_owned(), url.to_owned());
    }
    let mut urls = BTreeMap::new();
    for shard in shards {
        let url = match given.remove(shard) {
            Some(u) => u,
            None => std::env::var(env_name(shard)).map_err(|_| {
                format!(
                    "shard {shard}: give --data {shard}=URL or set {}",
                    env_name(shard)
                )
            })?,
        };
        urls.insert(shard.clone(), url);
    }
    if let Some(extra) = given.keys().next() {
        return Err(format!(
            "--data {extra}: no such shard of {}",
            a.participant
        ));
    }
    Ok(urls)
}

/// The Redis participant's own keys (prepared transactions, outcomes, locks) on each server:
/// they belong to the participant in front of that server and never move.
const PARTICIPANT_NAMESPACE: &str = "twopc:";

/// Every key matching `pattern` on the redis-server at `url`, but the participant's own.
async fn redis_keys(url: &str, pattern: &str) -> Result<Vec<String>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("{url}: SCAN: {e}"))?;
        keys.extend(
            batch
                .into_iter()
                .filter(|k| !k.starts_with(PARTICIPANT_NAMESPACE)),
        );
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// A SQL identifier, quoted.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Every value of `table.column` (as text; NULL as `null`, as a JSON null routes) on the
/// database at `url`.
async fn pg_values(url: &str, table: &str, column: &str) -> Result<Vec<String>, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("shard database: {}", describe(&e)))?;
    tokio::spawn(conn);
    // A schema-qualified table is given as schema.table.
    let table = table.split('.').map(ident).collect::<Vec<_>>().join(".");
    let sql = format!(
        "SELECT coalesce({col}::text, 'null') FROM {table}",
        col = ident(column)
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| format!("{sql}: {}", describe(&e)))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// `reshard --plan`.
pub async fn reshard(a: ReshardArgs) -> CliResult {
    let config = Config::from_file(&a.config)?;
    let Some(sharded) = config.sharded.iter().find(|s| s.name == a.participant) else {
        return Err(format!("{} has no shards in {}", a.participant, a.config.display()).into());
    };
    let shards = sharded.ring.shards().to_vec();
    if shards.iter().any(|s| s == a.add.as_str()) {
        return Err(format!("{} already has a shard {}", a.participant, a.add).into());
    }
    let urls = data_urls(&a, &shards)?;
    let mut found = Vec::new();
    for (shard, url) in &urls {
        let keys = match sharded.kind {
            ParticipantKind::Redis => redis_keys(url, &a.pattern).await?,
            ParticipantKind::Postgres => {
                let (Some(table), Some(column)) = (&a.table, &a.column) else {
                    return Err("a PostgreSQL participant needs --table and --column".into());
                };
                pg_values(url, table, column).await?
            }
        };
        found.extend(keys.into_iter().map(|k| (shard.clone(), k)));
    }
    let kind = sharded.kind;
    let p = plan(&sharded.ring, a.add.as_str(), found, |ring, key| {
        let routed = match kind {
            ParticipantKind::Redis => Ok(ring.route_redis(key)),
            // The column's text is what a statement's shard_key is hashed by.
            ParticipantKind::Postgres => {
                ring.route(RouteKey::ShardKey(&serde_json::Value::String(key.into())))
            }
        };
        routed.unwrap_or_default().to_owned()
    })?;
    for m in &p.moves {
        println!("{}\t{}\t{}", m.key, m.from, m.to);
    }
    for (key, on, says) in &p.misplaced {
        eprintln!("misplaced: {key} is on {on}, but the current ring routes it to {says}");
    }
    eprintln!(
        "{} of {} keys of {} would move to {} ({:.1} %)",
        p.moves.len(),
        p.keys,
        a.participant,
        a.add,
        if p.keys == 0 {
            0.0
        } else {
            100.0 * p.moves.len() as f64 / p.keys as f64
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_lists_exactly_the_keys_the_new_ring_gives_the_new_shard() {
        let ring = Ring::new(&["r1", "r2"]).unwrap();
        let found: Vec<(String, String)> = (0..2000)
            .map(|i| {
                let k = format!("k{i}");
                (ring.route_redis(&k).to_owned(), k)
            })
            .chain([("r1".to_string(), "stray".to_string())])
            .collect();
        let stray_home = ring.route_redis("stray").to_owned();
        let p = plan(&ring, "r3", found, |r, k| r.route_redis(k).to_owned()).unwrap();
        assert_eq!(p.keys, 2001);
        assert!(p.moves.iter().all(|m| m.to == "r3" || m.key == "stray"));
        let share = p.moves.len() as f64 / 2000.0;
        assert!((0.25..0.42).contains(&share), "{share}");
        if stray_home != "r1" {
            assert_eq!(p.misplaced, [("stray".into(), "r1".into(), stray_home)]);
        }
    }

    #[test]
    fn passwords_stay_off_the_command_line() {
        assert!(has_password("redis://u:secret@h:6379/"));
        assert!(has_password(
            "postgres://app:pw@db/bank?sslmode=verify-full"
        ));
        assert!(!has_password("redis://h:6379/"));
        assert!(!has_password("postgres://app@db/bank"));
        assert!(has_password(
            "postgres://db/bank?sslmode=require&password=x"
        ));
        assert_eq!(env_name("pg-1.eu"), "TWOPC_DATA_PG_1_EU");
    }
}
