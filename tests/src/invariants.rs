//! The invariant checker of the reliability suite, over the bank-transfer workload.
//!
//! After a scenario and its recovery, [`check`] verifies, against the real stores:
//!
//! 1. **Nothing stays in doubt**: `pg_prepared_xacts` is empty and the Redis participant's
//!    `twopc:prepared` zset is empty, within a bounded time (participants ask for decisions,
//!    the coordinator re-sends them; the checker only waits, it never resolves anything).
//! 2. **Money is conserved**: the sum of `accounts.balance` in Postgres and the sum of
//!    `balance:<id>` in Redis both equal `accounts × initial_balance`.
//! 3. **The stores agree**: Redis `balance:<id>` equals the Postgres balance for every account.
//! 4. **The effects are there**: replaying the moves of every transaction the markers say
//!    committed (each [`TxRecord`] lists what it does to which account in which store) from the
//!    seeded balances gives every account's balance in each store exactly. A system that marks
//!    a transaction committed and applies it nowhere, or applies one it marked aborted, fails
//!    here even when the totals and the two stores still agree.
//! 5. **Atomicity per transaction**: every transaction's outcome is the same on every
//!    participant, for each of its attempts (the coordinator runs a transaction that lost a
//!    lock again under an attempt txid, `twopc_protocol::attempt`; the checker finds them in
//!    the stores' own records), and at most one attempt of a transaction committed. Postgres: `twopc.outcome(gid)` (the WAL-logged tracking marker; `unknown`
//!    means never prepared here, i.e. not committed). Redis: `HGET twopc:outcome <txid>`
//!    (`commit`, `abort:<reason>`, or absent = never prepared).
//! 6. **Honesty to the client**: a transaction the client was told committed is committed
//!    everywhere; one it was told aborted (or that was refused with a 4xx) is committed
//!    nowhere. Only where the client got no answer (connection lost, timeout, 202 in progress)
//!    may the outcome be either — but still atomic. A 5xx, or a 200 whose body cannot be read,
//!    is itself a violation: the coordinator owes every client a clear answer.
//!
//! The checker is synchronous (psql and a blocking Redis connection) and returns a structured
//! [`Report`]; callers assert `report.violations.is_empty()` and print it otherwise.
//!
//! It reads its stores through [`Stores`]: one PostgreSQL cluster and one redis-server
//! ([`Stack`]), or the shards of each ([`crate::sharded::ShardedStack`]). With shards, a
//! store's view of a transaction is the union of its shards' views: committed when some
//! shard committed it and none aborted it, split (a violation of its own, reported as not
//! committed) when one shard committed it and another aborted it; an account's balance is read
//! from whichever shard holds it, and the totals are summed over all of them.

use crate::pg::PgCluster;
use crate::stack::Stack;
use std::fmt;
use std::time::{Duration, Instant};
use twopc_protocol::gid::format_gid;
use twopc_protocol::{CoordinatorId, TxId};

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// 200 with outcome `committed`.
    Committed,
    /// 200 with outcome `aborted`.
    Aborted,
    /// A 4xx with the API's JSON error: refused before anything ran.
    Refused,
    /// No final answer yet: connection lost, timeout, 202 in progress.
    Unknown,
    /// A 5xx, a 200 whose body is not a transaction response, or a status the API never
    /// sends (the status; 0 when the body was unreadable): a violation by itself.
    BadAnswer(u16),
}

/// One transaction of the workload, as the client saw it, and what it does.
#[derive(Debug, Clone)]
pub struct TxRecord {
    /// The client-chosen txid.
    pub txid: String,
    /// What the client was told.
    pub told: Told,
    /// Whether the transaction named the Postgres participant.
    pub in_pg: bool,
    /// Whether the transaction named the Redis participant.
    pub in_redis: bool,
    /// (account, delta) it applies to `accounts.balance` in Postgres when it commits.
    pub pg_moves: Vec<(u32, i64)>,
    /// (account, delta) it applies to `balance:<account>` in Redis when it commits.
    pub redis_moves: Vec<(u32, i64)>,
    /// The coordinator it was submitted to, when not [`CheckOptions::coordinator`] (its id
    /// is part of the transaction's Postgres gid).
    pub coordinator: Option<String>,
}

impl TxRecord {
    /// A bank transfer of `amount` from account `from` to `to` in both stores.
    pub fn transfer(
        txid: impl Into<String>,
        told: Told,
        from: u64,
        to: u64,
        amount: i64,
    ) -> TxRecord {
        let moves = vec![(from as u32, -amount), (to as u32, amount)];
        TxRecord {
            txid: txid.into(),
            told,
            in_pg: true,
            in_redis: true,
            pg_moves: moves.clone(),
            redis_moves: moves,
            coordinator: None,
        }
    }

    /// A transaction on both participants that moves no balance (or whose moves are added
    /// with [`TxRecord::pg_move`] / [`TxRecord::redis_move`]).
    pub fn other(txid: impl Into<String>, told: Told) -> TxRecord {
        TxRecord {
            txid: txid.into(),
            told,
            in_pg: true,
            in_redis: true,
            pg_moves: Vec::new(),
            redis_moves: Vec::new(),
            coordinator: None,
        }
    }

    /// Submitted to coordinator `id` (not the checker's default one).
    pub fn via(mut self, id: &str) -> TxRecord {
        self.coordinator = Some(id.into());
        self
    }

    /// Adds a Postgres balance change.
    pub fn pg_move(mut self, account: u32, delta: i64) -> TxRecord {
        self.pg_moves.push((account, delta));
        self
    }

    /// Adds a Redis balance change.
    pub fn redis_move(mut self, account: u32, delta: i64) -> TxRecord {
        self.redis_moves.push((account, delta));
        self
    }
}

/// A participant's view of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Committed there.
    Committed,
    /// Aborted there, or never prepared there (presumed abort).
    NotCommitted(String),
    /// Still prepared (in doubt).
    InDoubt,
}

impl Seen {
    fn committed(&self) -> bool {
        matches!(self, Seen::Committed)
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Prepared transactions remained after the recovery deadline.
    StillInDoubt {
        /// `postgres` or `redis`.
        store: &'static str,
        /// What is still prepared.
        items: Vec<String>,
    },
    /// A store's total differs from the seeded total.
    MoneyNotConserved {
        /// `postgres` or `redis`.
        store: &'static str,
        /// Seeded total.
        expected: i64,
        /// Observed total.
        actual: i64,
    },
    /// Redis and Postgres disagree on an account.
    BalanceMismatch {
        /// The account.
        account: u32,
        /// Postgres balance.
        pg: Option<i64>,
        /// Redis balance.
        redis: Option<i64>,
    },
    /// One participant committed, another did not.
    NotAtomic {
        /// The txid.
        txid: String,
        /// Postgres' view.
        pg: Seen,
        /// Redis' view.
        redis: Seen,
    },
    /// An account's balance is not what replaying the committed transactions gives.
    EffectsMissing {
        /// `postgres` or `redis`.
        store: &'static str,
        /// The account.
        account: u32,
        /// Seeded balance plus the moves of every committed transaction.
        expected: i64,
        /// Observed balance.
        actual: Option<i64>,
    },
    /// The client got an answer the API must never give.
    BadAnswer {
        /// The txid.
        txid: String,
        /// The HTTP status (0: the body was unreadable).
        status: u16,
    },
    /// The client was told something the stores contradict.
    ToldWrong {
        /// The txid.
        txid: String,
        /// What the client heard.
        told: Told,
        /// Whether the stores committed it.
        committed: bool,
    },
    /// The checker could not read a store.
    CheckFailed(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::StillInDoubt { store, items } => {
                write!(f, "{store}: still in doubt after recovery: {items:?}")
            }
            Violation::MoneyNotConserved {
                store,
                expected,
                actual,
            } => write!(f, "{store}: total {actual}, expected {expected}"),
            Violation::BalanceMismatch { account, pg, redis } => {
                write!(f, "account {account}: postgres {pg:?} != redis {redis:?}")
            }
            Violation::NotAtomic { txid, pg, redis } => {
                write!(f, "tx {txid:?}: postgres {pg:?}, redis {redis:?}")
            }
            Violation::EffectsMissing {
                store,
                account,
                expected,
                actual,
            } => write!(
                f,
                "{store}: account {account} is {actual:?}, replaying the committed transactions gives {expected}"
            ),
            Violation::BadAnswer { txid, status } => write!(
                f,
                "tx {txid:?}: client got a bad answer (HTTP {status}; 0 = unreadable body)"
            ),
            Violation::ToldWrong {
                txid,
                told,
                committed,
            } => write!(
                f,
                "tx {txid:?}: client told {told:?}, stores committed={committed}"
            ),
            Violation::CheckFailed(e) => write!(f, "checker error: {e}"),
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Transactions checked.
    pub transactions: usize,
    /// Of those, committed everywhere.
    pub committed: usize,
    /// Of those, committed nowhere.
    pub aborted: usize,
    /// Of those, the client got no final answer.
    pub unknown_to_client: usize,
    /// How long it took until nothing was in doubt.
    pub settle: Duration,
    /// Broken invariants.
    pub violations: Vec<Violation>,
}

impl Report {
    /// True when no invariant is broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} txs ({} committed, {} aborted, {} unknown to client), settled in {} ms, {} violations",
            self.transactions,
            self.committed,
            self.aborted,
            self.unknown_to_client,
            self.settle.as_millis(),
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n  VIOLATION: {v}")?;
        }
        Ok(())
    }
}

/// Knobs of a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The coordinator id used in gids.
    pub coordinator: String,
    /// Seeded starting balance of every account.
    pub initial_balance: i64,
    /// How long to wait for in-doubt transactions to resolve.
    pub settle_within: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            coordinator: "c1".into(),
            initial_balance: 100,
            settle_within: Duration::from_secs(30),
        }
    }
}

/// What the checker reads: the bank's PostgreSQL clusters (database `bank`), the ledger's
/// redis-servers, and the accounts.
pub trait Stores {
    /// Accounts `1..=accounts()`.
    fn accounts(&self) -> u32;
    /// Every PostgreSQL cluster holding bank rows.
    fn pg_clusters(&self) -> Vec<&PgCluster>;
    /// Every redis-server holding ledger keys, by URL.
    fn redis_urls(&self) -> Vec<String>;
}

impl Stores for Stack {
    fn accounts(&self) -> u32 {
        self.accounts
    }
    fn pg_clusters(&self) -> Vec<&PgCluster> {
        vec![&self.pg]
    }
    fn redis_urls(&self) -> Vec<String> {
        vec![self.redis.url()]
    }
}

impl Stores for crate::sharded::ShardedStack {
    fn accounts(&self) -> u32 {
        self.accounts
    }
    fn pg_clusters(&self) -> Vec<&PgCluster> {
        self.bank.iter().map(|b| &b.pg).collect()
    }
    fn redis_urls(&self) -> Vec<String> {
        self.ledger.iter().map(|l| l.redis.url()).collect()
    }
}

fn redis_conn(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

/// Every redis-server's connection.
fn redis_conns<S: Stores + ?Sized>(stack: &S) -> Result<Vec<redis::Connection>, String> {
    stack.redis_urls().iter().map(|u| redis_conn(u)).collect()
}

/// Every account's balance in PostgreSQL, from whichever cluster holds its row.
fn pg_balances<S: Stores + ?Sized>(stack: &S) -> Result<Vec<(u32, i64)>, String> {
    let mut out = Vec::new();
    for pg in stack.pg_clusters() {
        let text = pg
            .psql_ok(
                "bank",
                "SELECT id || '=' || balance FROM accounts ORDER BY id",
            )
            .map_err(|e| e.to_string())?;
        out.extend(text.lines().filter_map(|l| {
            let (a, b) = l.split_once('=')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }));
    }
    out.sort();
    Ok(out)
}

/// Prepared transactions in Postgres (gids) and Redis (txids).
pub fn in_doubt<S: Stores + ?Sized>(stack: &S) -> Result<(Vec<String>, Vec<String>), String> {
    let mut pg = Vec::new();
    for cluster in stack.pg_clusters() {
        let text = cluster
            .psql_ok("bank", "SELECT gid FROM pg_prepared_xacts ORDER BY gid")
            .map_err(|e| e.to_string())?;
        pg.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    let mut rd = Vec::new();
    for mut con in redis_conns(stack)? {
        let items: Vec<String> = redis::cmd("ZRANGE")
            .arg("twopc:prepared")
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        rd.extend(items);
    }
    Ok((pg, rd))
}

/// One store's view of a transaction from its shards' views (see the module docs).
fn merge_shards(views: Vec<Seen>) -> Seen {
    if views.iter().any(|v| matches!(v, Seen::InDoubt)) {
        return Seen::InDoubt;
    }
    let committed = views.iter().any(Seen::committed);
    let aborted = views.iter().find_map(|v| match v {
        Seen::NotCommitted(why) if why != "unknown" && why != "absent" => Some(why.clone()),
        _ => None,
    });
    match (committed, aborted) {
        (true, None) => Seen::Committed,
        (true, Some(why)) => {
            Seen::NotCommitted(format!("split: committed on one shard, {why} on another"))
        }
        (false, Some(why)) => Seen::NotCommitted(why),
        (false, None) => views
            .into_iter()
            .next()
            .unwrap_or(Seen::NotCommitted("absent".into())),
    }
}

/// Waits until nothing is in doubt in either store; returns what is left otherwise.
pub fn wait_settled<S: Stores + ?Sized>(stack: &S, within: Duration) -> (Duration, Vec<Violation>) {
    let t0 = Instant::now();
    let mut last = (Vec::new(), Vec::new());
    loop {
        match in_doubt(stack) {
            Ok((pg, rd)) if pg.is_empty() && rd.is_empty() => return (t0.elapsed(), vec![]),
            Ok(x) => last = x,
            Err(_) => {}
        }
        if t0.elapsed() > within {
            let mut v = Vec::new();
            if !last.0.is_empty() {
                v.push(Violation::StillInDoubt {
                    store: "postgres",
                    items: last.0.clone(),
                });
            }
            if !last.1.is_empty() {
                v.push(Violation::StillInDoubt {
                    store: "redis",
                    items: last.1.clone(),
                });
            }
            if v.is_empty() {
                v.push(Violation::CheckFailed(
                    "stores unreadable until the settle deadline".into(),
                ));
            }
            return (t0.elapsed(), v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sql_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Postgres' view of each gid: `twopc.outcome(gid)` on every cluster, merged.
fn pg_outcomes<S: Stores + ?Sized>(stack: &S, gids: &[String]) -> Result<Vec<Seen>, String> {
    let mut per: Vec<Vec<Seen>> = vec![Vec::new(); gids.len()];
    for cluster in stack.pg_clusters() {
        for (i, seen) in pg_outcomes_on(cluster, gids)?.into_iter().enumerate() {
            per[i].push(seen);
        }
    }
    Ok(per.into_iter().map(merge_shards).collect())
}

/// [`pg_outcomes`] on one cluster.
fn pg_outcomes_on(cluster: &PgCluster, gids: &[String]) -> Result<Vec<Seen>, String> {
    let mut out = Vec::with_capacity(gids.len());
    for chunk in gids.chunks(500) {
        let arr: Vec<String> = chunk.iter().map(|g| sql_lit(g)).collect();
        let sql = format!(
            "SELECT twopc.outcome(g) FROM unnest(ARRAY[{}]::text[]) WITH ORDINALITY AS u(g, n) ORDER BY n",
            arr.join(",")
        );
        let text = cluster.psql_ok("bank", &sql).map_err(|e| e.to_string())?;
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != chunk.len() {
            return Err(format!(
                "twopc.outcome returned {} rows for {} gids",
                lines.len(),
                chunk.len()
            ));
        }
        for l in lines {
            out.push(match l.trim() {
                "committed" => Seen::Committed,
                "in_doubt" => Seen::InDoubt,
                other => Seen::NotCommitted(other.to_owned()),
            });
        }
    }
    Ok(out)
}

/// Redis's view of each txid on every server, merged.
fn redis_outcomes<S: Stores + ?Sized>(stack: &S, txids: &[String]) -> Result<Vec<Seen>, String> {
    let mut per: Vec<Vec<Seen>> = vec![Vec::new(); txids.len()];
    for mut con in redis_conns(stack)? {
        for (i, seen) in redis_outcomes_on(&mut con, txids)?.into_iter().enumerate() {
            per[i].push(seen);
        }
    }
    Ok(per.into_iter().map(merge_shards).collect())
}

/// [`redis_outcomes`] on one server.
fn redis_outcomes_on(con: &mut redis::Connection, txids: &[String]) -> Result<Vec<Seen>, String> {
    let mut out = Vec::with_capacity(txids.len());
    for chunk in txids.chunks(500) {
        let vals: Vec<Option<String>> = redis::cmd("HMGET")
            .arg("twopc:outcome")
            .arg(chunk)
            .query(con)
            .map_err(|e| e.to_string())?;
        let prepared: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg("twopc:prepared")
            .arg(chunk)
            .query(con)
            .map_err(|e| e.to_string())?;
        for (v, p) in vals.into_iter().zip(prepared) {
            out.push(match (v.as_deref(), p) {
                (_, Some(_)) => Seen::InDoubt,
                (Some("commit"), None) => Seen::Committed,
                (Some(o), None) => Seen::NotCommitted(o.to_owned()),
                (None, None) => Seen::NotCommitted("absent".into()),
            });
        }
    }
    Ok(out)
}

/// Balances per account in Redis, from whichever server holds the key.
fn redis_balances<S: Stores + ?Sized>(stack: &S) -> Result<Vec<Option<i64>>, String> {
    let keys: Vec<String> = (1..=stack.accounts())
        .map(|i| format!("balance:{i}"))
        .collect();
    let mut out: Vec<Option<i64>> = vec![None; keys.len()];
    for mut con in redis_conns(stack)? {
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        for (slot, v) in out.iter_mut().zip(vals) {
            if let Some(n) = v.and_then(|s| s.parse::<i64>().ok()) {
                *slot = Some(slot.unwrap_or(0) + n);
            }
        }
    }
    Ok(out)
}

/// Whether `tx` committed on every participant it names (`Some(true)`), on none
/// (`Some(false)`), or only on some or is still in doubt (`None`), by the stores' markers.
pub fn committed_everywhere<S: Stores + ?Sized>(
    stack: &S,
    opts: &CheckOptions,
    tx: &TxRecord,
) -> Result<Option<bool>, String> {
    let coord = CoordinatorId::new(tx.coordinator.clone().unwrap_or(opts.coordinator.clone()))
        .map_err(|e| e.to_string())?;
    let gid = format_gid(
        &coord,
        &TxId::new(tx.txid.clone()).map_err(|e| e.to_string())?,
    );
    let pg = pg_outcomes(stack, &[gid])?.remove(0);
    let rd = redis_outcomes(stack, std::slice::from_ref(&tx.txid))?.remove(0);
    Ok(atomic_outcome(tx, &pg, &rd))
}

/// From the views of the participants `tx` names: `Some(true)` committed on all of them,
/// `Some(false)` on none, `None` on only some, or still in doubt somewhere (not atomic).
fn atomic_outcome(tx: &TxRecord, pg: &Seen, rd: &Seen) -> Option<bool> {
    let views: Vec<&Seen> = [(tx.in_pg, pg), (tx.in_redis, rd)]
        .into_iter()
        .filter(|(named, _)| *named)
        .map(|(_, s)| s)
        .collect();
    if views.iter().any(|s| matches!(s, Seen::InDoubt)) {
        return None;
    }
    match views.iter().filter(|s| s.committed()).count() {
        0 => Some(false),
        n if n == views.len() => Some(true),
        _ => None,
    }
}

/// The later attempts (2, 3, ...) the stores have any record of, by client txid: Redis's
/// outcome hash and prepared set, Postgres's tracked transactions and prepared ones.
fn later_attempts<S: Stores + ?Sized>(
    stack: &S,
) -> Result<std::collections::HashMap<String, Vec<String>>, String> {
    let mut wires: Vec<String> = Vec::new();
    for mut con in redis_conns(stack)? {
        let outcomes: Vec<String> = redis::cmd("HKEYS")
            .arg("twopc:outcome")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        let prepared: Vec<String> = redis::cmd("ZRANGE")
            .arg("twopc:prepared")
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        wires.extend(outcomes);
        wires.extend(prepared);
    }
    for cluster in stack.pg_clusters() {
        let pg = cluster
            .psql_ok(
                "bank",
                "SELECT DISTINCT global_id FROM twopc.history WHERE global_id LIKE '~%'",
            )
            .map_err(|e| e.to_string())?;
        wires.extend(pg.lines().map(str::to_owned));
    }
    let mut by_client: std::collections::HashMap<String, Vec<String>> = Default::default();
    wires.sort();
    wires.dedup();
    for w in wires {
        let Ok(id) = TxId::new(w.clone()) else {
            continue;
        };
        if let Some(a) = twopc_protocol::attempt::parse(&id) {
            if let Some(client) = a.client {
                by_client.entry(client.to_string()).or_default().push(w);
            }
        }
    }
    Ok(by_client)
}

/// Runs every check. `txs` are the transactions of the scenario (possibly all so far).
pub fn check<S: Stores + ?Sized>(stack: &S, txs: &[TxRecord], opts: &CheckOptions) -> Report {
    let mut report = Report {
        transactions: txs.len(),
        ..Report::default()
    };
    let (settle, v) = wait_settled(stack, opts.settle_within);
    report.settle = settle;
    report.violations.extend(v);

    // Balances.
    let expected = i64::from(stack.accounts()) * opts.initial_balance;
    let balances = (pg_balances(stack), redis_balances(stack));
    match &balances {
        (Ok(pg), Ok(rd)) => {
            let pg_sum: i64 = pg.iter().map(|(_, b)| b).sum();
            let rd_sum: i64 = rd.iter().map(|b| b.unwrap_or(0)).sum();
            if pg_sum != expected {
                report.violations.push(Violation::MoneyNotConserved {
                    store: "postgres",
                    expected,
                    actual: pg_sum,
                });
            }
            if rd_sum != expected {
                report.violations.push(Violation::MoneyNotConserved {
                    store: "redis",
                    expected,
                    actual: rd_sum,
                });
            }
            for i in 1..=stack.accounts() {
                let p = pg.iter().find(|(a, _)| *a == i).map(|(_, b)| *b);
                let r = rd.get(i as usize - 1).copied().flatten();
                if p != r || p.is_none() {
                    report.violations.push(Violation::BalanceMismatch {
                        account: i,
                        pg: p,
                        redis: r,
                    });
                }
            }
        }
        (Err(e), _) => report
            .violations
            .push(Violation::CheckFailed(format!("postgres balances: {e}"))),
        (_, Err(e)) => report
            .violations
            .push(Violation::CheckFailed(format!("redis balances: {e}"))),
    }

    // Outcomes.
    let coord = match CoordinatorId::new(opts.coordinator.clone()) {
        Ok(c) => c,
        Err(e) => {
            report
                .violations
                .push(Violation::CheckFailed(format!("coordinator id: {e}")));
            return report;
        }
    };
    let retried = match later_attempts(stack) {
        Ok(v) => v,
        Err(e) => {
            report
                .violations
                .push(Violation::CheckFailed(format!("attempt ids: {e}")));
            return report;
        }
    };
    // Every attempt of every transaction, in order: (record index, wire txid).
    let attempts: Vec<(usize, String)> = txs
        .iter()
        .enumerate()
        .flat_map(|(k, t)| {
            let later = retried.get(&t.txid).cloned().unwrap_or_default();
            std::iter::once((k, t.txid.clone())).chain(later.into_iter().map(move |a| (k, a)))
        })
        .collect();
    let gids: Vec<String> = attempts
        .iter()
        .map(|(k, t)| {
            let via = txs[*k]
                .coordinator
                .as_ref()
                .and_then(|c| CoordinatorId::new(c.clone()).ok());
            match TxId::new(t.clone()) {
                Ok(id) => format_gid(via.as_ref().unwrap_or(&coord), &id),
                Err(_) => String::new(),
            }
        })
        .collect();
    let txids: Vec<String> = attempts.iter().map(|(_, t)| t.clone()).collect();
    let pg = match pg_outcomes(stack, &gids) {
        Ok(v) => v,
        Err(e) => {
            report
                .violations
                .push(Violation::CheckFailed(format!("postgres outcomes: {e}")));
            return report;
        }
    };
    let rd = match redis_outcomes(stack, &txids) {
        Ok(v) => v,
        Err(e) => {
            report
                .violations
                .push(Violation::CheckFailed(format!("redis outcomes: {e}")));
            return report;
        }
    };
    // Per record: how many of its attempts committed; None when one was not atomic.
    let mut commits: Vec<Option<usize>> = vec![Some(0); txs.len()];
    for (((k, wire), p), r) in attempts.iter().zip(pg).zip(rd) {
        match atomic_outcome(&txs[*k], &p, &r) {
            Some(c) => {
                if let Some(n) = &mut commits[*k] {
                    *n += usize::from(c);
                }
            }
            None => {
                report.violations.push(Violation::NotAtomic {
                    txid: wire.clone(),
                    pg: p.clone(),
                    redis: r.clone(),
                });
                commits[*k] = None;
            }
        }
    }
    let mut committed: Vec<&TxRecord> = Vec::new();
    for (t, n) in txs.iter().zip(commits) {
        let Some(n) = n else { continue };
        if n > 1 {
            report.violations.push(Violation::CheckFailed(format!(
                "transaction {:?} committed {n} of its attempts",
                t.txid
            )));
        }
        let all_commit = n > 0;
        match (t.told, all_commit) {
            (Told::Committed, false) | (Told::Aborted | Told::Refused, true) => {
                report.violations.push(Violation::ToldWrong {
                    txid: t.txid.clone(),
                    told: t.told,
                    committed: all_commit,
                })
            }
            (Told::BadAnswer(status), _) => report.violations.push(Violation::BadAnswer {
                txid: t.txid.clone(),
                status,
            }),
            _ => {}
        }
        if t.told == Told::Unknown {
            report.unknown_to_client += 1;
        }
        if all_commit {
            report.committed += 1;
            committed.push(t);
        } else {
            report.aborted += 1;
        }
    }
    if let (Ok(pg), Ok(rd)) = &balances {
        let pg_now: Vec<Option<i64>> = (1..=stack.accounts())
            .map(|i| pg.iter().find(|(a, _)| *a == i).map(|(_, b)| *b))
            .collect();
        let replayed = [
            (
                "postgres",
                pg_now.as_slice(),
                replay(
                    stack.accounts(),
                    opts.initial_balance,
                    committed.iter().flat_map(|t| &t.pg_moves),
                ),
            ),
            (
                "redis",
                rd.as_slice(),
                replay(
                    stack.accounts(),
                    opts.initial_balance,
                    committed.iter().flat_map(|t| &t.redis_moves),
                ),
            ),
        ];
        for (store, now, want) in replayed {
            for (i, (w, n)) in want.iter().zip(now).enumerate() {
                if Some(*w) != *n {
                    report.violations.push(Violation::EffectsMissing {
                        store,
                        account: i as u32 + 1,
                        expected: *w,
                        actual: *n,
                    });
                }
            }
        }
    }
    report
}

/// Every account's balance after applying `moves` (of the committed transactions) to the
/// seeded balances.
fn replay<'a>(
    accounts: u32,
    initial: i64,
    moves: impl Iterator<Item = &'a (u32, i64)>,
) -> Vec<i64> {
    let mut b = vec![initial; accounts as usize];
    for (a, d) in moves {
        if let Some(slot) = (*a as usize).checked_sub(1).and_then(|i| b.get_mut(i)) {
            *slot += d;
        }
    }
    b
}
