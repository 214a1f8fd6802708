//! `twopc-bench-contention`: the contention benchmark (run by `scripts/bench-contention.sh`,
//! never by the tests).
//!
//! C concurrent clients, each in a loop transferring a random amount between two distinct
//! random accounts out of A (the bank transfer of [`twopc_protocol::transfer`]: two `UPDATE`s
//! of `accounts` in Postgres, two `INCRBY balance:<id>` in Redis), for every cell C × A, on
//! the whole stack started from release builds. Two sides, alternating round by round because
//! this machine's speed drifts by up to 2x over minutes:
//!
//! * **floor**: the same statements issued directly with native two-phase commit:
//!   `BEGIN; UPDATE …; UPDATE …; PREPARE TRANSACTION` with the two INCRBYs sent meanwhile,
//!   then `COMMIT PREPARED`. Lock conflicts are left to PostgreSQL's own lock waits and
//!   deadlock detector; the UPDATEs go lower account id first, as the twopc transfer's do
//!   (`sql_transfer`). A failed transaction (deadlock, serialization failure, anything) is
//!   counted as aborted and never retried.
//! * **twopc**: the same transfer through the coordinator's HTTP API, no client retries (the
//!   coordinator may retry by itself; its `attempts`, when the response has it, are counted).
//!
//! After every round the stores must be settled and the money conserved (totals in both
//! stores unchanged, every Redis key equal to its row); otherwise the run stops with a loud
//! failure, so a fast but wrong result cannot pass.
//!
//! Environment: `TWOPC_BENCH_SECS` (seconds per round, default 5), `TWOPC_BENCH_ROUNDS`
//! (rounds per cell and side, default 3), `TWOPC_BENCH_CLIENTS` (default `16,64`),
//! `TWOPC_BENCH_ACCOUNTS` (default `2,8,64`), `TWOPC_BENCH_CELLS` (e.g. `16x2,64x64`: only
//! these cells, instead of every clients × accounts pair), `TWOPC_BENCH_MAX_AMOUNT` (default
//! 10), `TWOPC_BENCH_SEED` (default 1), `TWOPC_BENCH_DEADLOCK_TIMEOUT` (e.g. `100ms`: set on
//! the cluster for both sides; default the server's own, 1 s), `TWOPC_BENCH_FLOOR_ORDERED=0`
//! (a floor that updates the debited account first whatever its id, deadlocks and all), `TWOPC_BENCH_ONLY` (`floor` or `twopc`: one side only),
//! `TWOPC_BENCH_COORDINATOR` (e.g. `ordered_prepare=false`: coordinator settings, comma-separated),
//! `TWOPC_BENCH_OUT` (where to write the Markdown results).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use twopc_coordinator::load::SplitMix;
use twopc_protocol::api::TransactionRequest;
use twopc_protocol::transfer::{redis_transfer, sql_transfer};
use twopc_protocol::ParticipantName;
use twopc_tests::bench::{env_list, env_num, median, pct};
use twopc_tests::invariants::{wait_settled, Violation};
use twopc_tests::stack::{Binaries, Stack, StackOptions};

/// Every account starts with this much in both stores: large enough that no random walk of
/// transfers in a run comes near 0, so neither Postgres' `CHECK (balance >= 0)` nor the Redis
/// guard (`min 0`) ever aborts a transfer and every abort is about contention.
const INITIAL_BALANCE: i64 = 1_000_000_000;

/// One contention setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    clients: usize,
    accounts: u64,
}

/// Which side a round measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Floor,
    Twopc,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Floor => "floor",
            Side::Twopc => "twopc",
        }
    }
}

/// One round of one side in one cell.
#[derive(Debug, Clone)]
struct Round {
    cell: Cell,
    side: Side,
    round: usize,
    elapsed: f64,
    committed: u64,
    /// Definite aborts (floor: the transaction failed and was rolled back; twopc: outcome
    /// `aborted`).
    aborted: u64,
    /// Neither: HTTP errors, `in_progress` after the client timeout, a failed COMMIT PREPARED.
    other: u64,
    /// Attempts spent over every transaction of the round, committed or not (the floor makes
    /// exactly one per transaction).
    attempts: u64,
    p50: f64,
    p99: f64,
    /// Aborts and other failures by kind.
    kinds: BTreeMap<String, u64>,
    /// twopc only: the coordinator-reported mean prepare / decide / commit ms of the committed
    /// transactions (how long a hot row stays locked is about prepare + decide + commit).
    phases: Option<[f64; 3]>,
}

impl Round {
    fn total(&self) -> u64 {
        self.committed + self.aborted + self.other
    }
    fn tps(&self) -> f64 {
        self.committed as f64 / self.elapsed.max(1e-9)
    }
    fn committed_pct(&self) -> f64 {
        100.0 * self.committed as f64 / self.total().max(1) as f64
    }
    /// Attempts spent per committed transaction: 1.0 when everything commits the first time;
    /// aborted transactions and the coordinator's own retries both raise it.
    fn attempts_per_commit(&self) -> f64 {
        if self.committed == 0 {
            f64::INFINITY
        } else {
            self.attempts as f64 / self.committed as f64
        }
    }
}

/// What one worker of a round saw.
#[derive(Default)]
struct Tally {
    committed_ms: Vec<f64>,
    aborted: u64,
    other: u64,
    attempts: u64,
    kinds: BTreeMap<String, u64>,
    phases: Vec<[f64; 3]>,
}

impl Tally {
    fn absorb(&mut self, o: Tally) {
        self.committed_ms.extend(o.committed_ms);
        self.aborted += o.aborted;
        self.other += o.other;
        self.attempts += o.attempts;
        for (k, n) in o.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
        self.phases.extend(o.phases);
    }

    fn kind(&mut self, k: String) {
        *self.kinds.entry(k).or_default() += 1;
    }

    fn into_round(mut self, cell: Cell, side: Side, round: usize, elapsed: f64) -> Round {
        self.committed_ms.sort_by(|a, b| a.total_cmp(b));
        let phases = (side == Side::Twopc && !self.phases.is_empty()).then(|| {
            let n = self.phases.len() as f64;
            let mean = |i: usize| self.phases.iter().map(|p| p[i]).sum::<f64>() / n;
            [mean(0), mean(1), mean(2)]
        });
        Round {
            cell,
            side,
            round,
            elapsed,
            committed: self.committed_ms.len() as u64,
            aborted: self.aborted,
            other: self.other,
            attempts: self.attempts,
            p50: pct(&self.committed_ms, 50.0),
            p99: pct(&self.committed_ms, 99.0),
            kinds: self.kinds,
            phases,
        }
    }
}

/// Folds what differs between two reasons of the same kind (quoted names and ids, numbers)
/// so that aborts can be counted by kind.
fn fold(reason: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for ch in reason.chars() {
        if ch == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if quoted {
            // Inside quotes: already replaced by the placeholder.
        } else if ch == '\n' {
            // Reasons can carry Postgres' multi-line DETAIL; the report lists one per line.
            out.push(' ');
        } else if !ch.is_ascii_digit() {
            out.push(ch);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

fn pg_error_kind(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), fold(db.message())),
        None => format!("postgres: {}", fold(&e.to_string())),
    }
}

struct Settings {
    secs: f64,
    rounds: usize,
    max_amount: i64,
    seed: u64,
    /// The floor updates the lower id first, as the twopc transfer does (default);
    /// `TWOPC_BENCH_FLOOR_ORDERED=0`: the debited account first, whatever its id (transfers
    /// over the same pair in opposite directions then deadlock inside PostgreSQL).
    floor_ordered: bool,
    /// `TWOPC_BENCH_ONLY=floor` or `twopc`: one side only (for profiling or debugging one).
    only: Option<Side>,
}

fn worker_rng(s: &Settings, cell: Cell, round: usize, worker: usize) -> SplitMix {
    SplitMix(
        s.seed
            .wrapping_mul(1_000_003)
            .wrapping_add((cell.clients as u64) << 40)
            .wrapping_add(cell.accounts << 24)
            .wrapping_add((round as u64) << 12)
            .wrapping_add(worker as u64),
    )
}

async fn floor_round(
    stack: &Stack,
    s: &Settings,
    cell: Cell,
    round: usize,
) -> Result<Round, Box<dyn std::error::Error>> {
    // Connect everyone before the clock starts: connection setup is not what is measured.
    let mut conns = Vec::new();
    for _ in 0..cell.clients {
        // Connection slots can still be taken for a while by the round before (the Postgres
        // participant's sessions): wait for them rather than fail the run at once.
        let give_up = Instant::now() + Duration::from_secs(30);
        let (pg, c) = loop {
            match tokio_postgres::connect(&stack.pg.conn_string("bank"), tokio_postgres::NoTls)
                .await
            {
                Ok(x) => break x,
                Err(e) if Instant::now() >= give_up => {
                    return Err(format!("floor cannot connect to Postgres for 30 s: {e}").into())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        tokio::spawn(c);
        let r = redis::Client::open(stack.redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        conns.push((pg, r));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.secs);
    let mut tasks = Vec::new();
    for (w, (pg, mut r)) in conns.into_iter().enumerate() {
        let mut rng = worker_rng(s, cell, round, w);
        let (accounts, max_amount, ordered) = (cell.accounts, s.max_amount, s.floor_ordered);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let (from, to, amount) = rng.transfer(accounts, max_amount);
                // Unique over the whole run: the extension tracks native prepares too and
                // refuses a gid a committed transaction already used.
                let gid = format!("cfloor-{}x{accounts}-{round}-{w}-{i}", cell.clients);
                t.attempts += 1;
                let t0 = Instant::now();
                // Literal values in one simple-query string, as the throughput benchmark's
                // floor does: one round trip for BEGIN, both UPDATEs and the PREPARE.
                let debit =
                    format!("UPDATE accounts SET balance = balance - {amount} WHERE id = {from}");
                let credit =
                    format!("UPDATE accounts SET balance = balance + {amount} WHERE id = {to}");
                let (first, second) = if ordered && to < from {
                    (credit, debit)
                } else {
                    (debit, credit)
                };
                let sql = format!("BEGIN; {first}; {second}; PREPARE TRANSACTION '{gid}'");
                let prepare = pg.batch_execute(&sql);
                let mut pipe = redis::pipe();
                pipe.cmd("INCRBY")
                    .arg(format!("balance:{from}"))
                    .arg(-amount)
                    .cmd("INCRBY")
                    .arg(format!("balance:{to}"))
                    .arg(amount);
                let incr = pipe.query_async::<(i64, i64)>(&mut r);
                let (p, rr) = tokio::join!(prepare, incr);
                match (p, rr) {
                    (Ok(()), Ok(_)) => {
                        match pg.batch_execute(&format!("COMMIT PREPARED '{gid}'")).await {
                            Ok(()) => t.committed_ms.push(t0.elapsed().as_secs_f64() * 1000.0),
                            Err(e) => {
                                t.other += 1;
                                t.kind(format!("COMMIT PREPARED failed: {}", pg_error_kind(&e)));
                            }
                        }
                    }
                    (Ok(()), Err(e)) => {
                        t.aborted += 1;
                        t.kind(format!("redis: {}", fold(&e.to_string())));
                        let _ = pg
                            .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
                            .await;
                    }
                    (Err(e), redis_result) => {
                        t.aborted += 1;
                        t.kind(pg_error_kind(&e));
                        // A failed statement inside an explicit BEGIN leaves the session in an
                        // aborted transaction block.
                        let _ = pg.batch_execute("ROLLBACK").await;
                        // Native Redis has no rollback: undo the INCRBYs by hand so that every
                        // key stays equal to its row (the conservation check needs it).
                        if redis_result.is_ok() {
                            let mut undo = redis::pipe();
                            undo.cmd("INCRBY")
                                .arg(format!("balance:{from}"))
                                .arg(amount)
                                .cmd("INCRBY")
                                .arg(format!("balance:{to}"))
                                .arg(-amount);
                            if let Err(e) = undo.query_async::<(i64, i64)>(&mut r).await {
                                t.kind(format!("redis undo failed: {e}"));
                            }
                        }
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.absorb(t.await?);
    }
    Ok(all.into_round(cell, Side::Floor, round, started.elapsed().as_secs_f64()))
}

async fn twopc_round(
    stack: &Stack,
    client: &reqwest::Client,
    s: &Settings,
    cell: Cell,
    round: usize,
) -> Result<Round, Box<dyn std::error::Error>> {
    let url = format!("{}/v1/transactions", stack.coordinator_url);
    let bank: ParticipantName = "bank".parse()?;
    let ledger: ParticipantName = "ledger".parse()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.secs);
    let mut tasks = Vec::new();
    for w in 0..cell.clients {
        let mut rng = worker_rng(s, cell, round, w);
        let (client, url, accounts, max_amount) =
            (client.clone(), url.clone(), cell.accounts, s.max_amount);
        let (bank, ledger) = (bank.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let (from, to, amount) = rng.transfer(accounts, max_amount);
                let body = TransactionRequest {
                    id: None,
                    participants: [
                        (bank.clone(), sql_transfer(from, to, amount)),
                        (ledger.clone(), redis_transfer(from, to, amount)),
                    ]
                    .into(),
                };
                let t0 = Instant::now();
                // Read as JSON values, not TransactionResponse: `attempts` is newer than some
                // coordinators this runs against, and a missing field means one attempt.
                let v = match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                    Ok(r) => {
                        t.attempts += 1;
                        t.other += 1;
                        t.kind(format!("http {}", r.status().as_u16()));
                        continue;
                    }
                    Err(e) => {
                        t.attempts += 1;
                        t.other += 1;
                        t.kind(format!("unreachable: {}", fold(&e.to_string())));
                        continue;
                    }
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let Some(v) = v else {
                    t.attempts += 1;
                    t.other += 1;
                    t.kind("bad response body".into());
                    continue;
                };
                t.attempts += v["attempts"].as_u64().unwrap_or(1);
                match v["outcome"].as_str() {
                    Some("committed") => {
                        t.committed_ms.push(ms);
                        let p = &v["timings"];
                        t.phases.push([
                            p["prepare_ms"].as_f64().unwrap_or(0.0),
                            p["decide_ms"].as_f64().unwrap_or(0.0),
                            p["commit_ms"].as_f64().unwrap_or(0.0),
                        ]);
                    }
                    Some("aborted") => {
                        t.aborted += 1;
                        t.kind(format!(
                            "{} {}",
                            v["abort_class"].as_str().unwrap_or("-"),
                            fold(v["reason"].as_str().unwrap_or("(no reason)"))
                        ));
                    }
                    other => {
                        t.other += 1;
                        t.kind(format!("outcome {}", other.unwrap_or("(none)")));
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.absorb(t.await?);
    }
    Ok(all.into_round(cell, Side::Twopc, round, started.elapsed().as_secs_f64()))
}

/// Waits until nothing is prepared in either store and no Postgres session is busy, then
/// checks that both stores still hold the seeded total and agree account by account. Returns
/// what is wrong.
async fn conservation(stack: &Stack) -> Vec<String> {
    let (_, mut problems) =
        tokio::task::block_in_place(|| wait_settled(stack, Duration::from_secs(30)));
    // Nothing prepared is not yet settled: a session left busy or inside a transaction can hold
    // row locks that slow down or time out every later round, whichever side runs it.
    let busy_sql = "SELECT pid, usename, state, wait_event_type || ':' || wait_event, \
                    now() - xact_start, left(query, 100) FROM pg_stat_activity \
                    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                    AND state IS DISTINCT FROM 'idle'";
    let mut busy = String::new();
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::task::block_in_place(|| stack.pg.psql_ok("bank", busy_sql)) {
            Ok(out) if out.trim().is_empty() => {
                busy.clear();
                break;
            }
            Ok(out) => busy = out,
            Err(e) => busy = e.to_string(),
        }
        if Instant::now() >= give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut extra = Vec::new();
    if !busy.is_empty() {
        let lines: Vec<&str> = busy.lines().collect();
        extra.push(format!(
            "postgres: {} session(s) still busy or in a transaction 30 s after the round, e.g.:\n{}",
            lines.len(),
            lines[..lines.len().min(10)].join("\n")
        ));
    }
    let n = stack.accounts;
    let expected = INITIAL_BALANCE * i64::from(n);
    let pg = match tokio::task::block_in_place(|| stack.pg_balances()) {
        Ok(b) => b,
        Err(e) => return vec![format!("cannot read Postgres balances: {e}")],
    };
    let keys: Vec<String> = (1..=n).map(|i| format!("balance:{i}")).collect();
    let rd: Vec<Option<i64>> = match async {
        let mut c = redis::Client::open(stack.redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("MGET").arg(&keys).query_async(&mut c).await
    }
    .await
    {
        Ok(v) => v,
        Err(e) => return vec![format!("cannot read Redis balances: {e}")],
    };
    let pg_sum: i64 = pg.iter().map(|(_, b)| b).sum();
    let rd_sum: i64 = rd.iter().flatten().sum();
    for (store, actual) in [("postgres", pg_sum), ("redis", rd_sum)] {
        if actual != expected {
            problems.push(Violation::MoneyNotConserved {
                store,
                expected,
                actual,
            });
        }
    }
    let pg_by_id: BTreeMap<u32, i64> = pg.into_iter().collect();
    for (i, r) in (1..=n).zip(&rd) {
        let p = pg_by_id.get(&i).copied();
        if p != *r {
            problems.push(Violation::BalanceMismatch {
                account: i,
                pg: p,
                redis: *r,
            });
        }
    }
    problems
        .iter()
        .map(ToString::to_string)
        .chain(extra)
        .collect()
}

/// What the one looking at a failed run needs first: what Postgres' sessions are doing, what
/// is prepared, and the end of the server log (the stack's directories go away on exit).
fn diagnose(stack: &Stack) {
    for (what, sql) in [
        (
            "sessions not idle",
            "SELECT pid, state, wait_event_type || ':' || wait_event, left(query, 120) \
             FROM pg_stat_activity WHERE state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()",
        ),
        (
            "sessions by user, application and state",
            "SELECT count(*), usename, application_name, state FROM pg_stat_activity \
             WHERE backend_type = 'client backend' GROUP BY 2, 3, 4 ORDER BY 1 DESC",
        ),
        (
            "prepared transactions",
            "SELECT gid, prepared, database FROM pg_prepared_xacts",
        ),
    ] {
        match stack.pg.psql_ok("bank", sql) {
            Ok(out) => eprintln!("--- {what}:\n{out}"),
            Err(e) => eprintln!("--- {what}: {e}"),
        }
    }
    // The log of a failed contention run can be thousands of copies of a few messages: print
    // each message once, in order of first appearance, with its count.
    let log = std::fs::read_to_string(stack.pg.log_path()).unwrap_or_default();
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    for line in log.lines() {
        // "2026-12-01 15:59:14.399 UTC [10629] FATAL:  ..." -> the part after "[pid] ".
        let msg = line.split_once("] ").map_or(line, |(_, m)| m);
        let msg = fold(msg);
        match seen.iter_mut().find(|(m, _, _)| *m == msg) {
            Some(e) => e.2 += 1,
            None => seen.push((msg, line.to_owned(), 1)),
        }
    }
    eprintln!("--- the Postgres log, each message once (count, first occurrence):");
    for (_, first, n) in seen.iter().take(100) {
        eprintln!("{n:>7}  {first}");
    }
}

fn cells() -> Vec<Cell> {
    if let Ok(list) = std::env::var("TWOPC_BENCH_CELLS") {
        return list
            .split(',')
            .filter_map(|c| {
                let (clients, accounts) = c.trim().split_once('x')?;
                Some(Cell {
                    clients: clients.parse().ok()?,
                    accounts: accounts.parse().ok()?,
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for clients in env_list("TWOPC_BENCH_CLIENTS", &[16usize, 64]) {
        for accounts in env_list("TWOPC_BENCH_ACCOUNTS", &[2u64, 8, 64]) {
            out.push(Cell { clients, accounts });
        }
    }
    out
}

fn fmt_apc(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "∞".into()
    }
}

fn report(
    s: &Settings,
    deadlock_timeout: &str,
    rounds: &[Round],
    failure: Option<&str>,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(out, "# Contention benchmark\n")?;
    if let Some(f) = failure {
        writeln!(
            out,
            "**RUN FAILED (money not conserved, stores not settled, or a round could not run); \
             the figures below are not valid.**\n\n```\n{f}\n```\n"
        )?;
    }
    writeln!(
        out,
        "Bank transfers between two distinct random accounts out of A, C clients in a loop, \
         {} s per round, {} round(s) per cell and side, floor and twopc alternating, same servers, \
         same run. Floor: the same statements with native PREPARE TRANSACTION / COMMIT PREPARED \
         plus Redis INCRBY, PostgreSQL's own lock waits and deadlock detector (deadlock_timeout \
         = {deadlock_timeout}), {}, failures counted as aborts, never retried. twopc: the \
         coordinator's HTTP API, no client retries. Amounts 1..={}. Medians over rounds; ratio = \
         median of the per-round twopc/floor committed tx/s.\n",
        s.secs,
        s.rounds,
        if s.floor_ordered {
            "UPDATEs lower account id first (as the twopc transfer's)"
        } else {
            "**UPDATEs debit first, not ordered by id (TWOPC_BENCH_FLOOR_ORDERED=0: not the \
             twopc transfer's order)**"
        },
        s.max_amount
    )?;
    if let Some(side) = s.only {
        writeln!(
            out,
            "**Only the {} side was run (TWOPC_BENCH_ONLY): no ratios.**\n",
            side.name()
        )?;
    }
    writeln!(
        out,
        "| clients | accounts | floor tx/s | twopc tx/s | ratio | floor committed % | twopc committed % \
         | floor attempts/commit | twopc attempts/commit | floor p50 ms | twopc p50 ms | floor p99 ms | twopc p99 ms |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut cells: Vec<Cell> = rounds.iter().map(|r| r.cell).collect();
    cells.sort();
    cells.dedup();
    let mut summary: BTreeMap<Cell, (f64, f64, f64)> = BTreeMap::new();
    for &cell in &cells {
        let side = |sd: Side| -> Vec<&Round> {
            rounds
                .iter()
                .filter(|r| r.cell == cell && r.side == sd)
                .collect()
        };
        let (f, t) = (side(Side::Floor), side(Side::Twopc));
        let m =
            |rs: &[&Round], g: &dyn Fn(&Round) -> f64| median(rs.iter().map(|r| g(r)).collect());
        let ratios: Vec<f64> = f
            .iter()
            .filter_map(|fr| {
                let tr = t.iter().find(|tr| tr.round == fr.round)?;
                Some(tr.tps() / fr.tps().max(1e-9))
            })
            .collect();
        let ratio = median(ratios);
        let t_pct = m(&t, &|r| r.committed_pct());
        summary.insert(cell, (ratio, t_pct, m(&t, &|r| r.tps())));
        writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.1} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            cell.clients,
            cell.accounts,
            m(&f, &|r| r.tps()),
            m(&t, &|r| r.tps()),
            ratio,
            m(&f, &|r| r.committed_pct()),
            t_pct,
            fmt_apc(m(&f, &|r| r.attempts_per_commit())),
            fmt_apc(m(&t, &|r| r.attempts_per_commit())),
            m(&f, &|r| r.p50),
            m(&t, &|r| r.p50),
            m(&f, &|r| r.p99),
            m(&t, &|r| r.p99),
        )?;
    }
    writeln!(out, "\nTargets (issue #15):\n")?;
    let mut any = false;
    for (cell, (ratio, t_pct, _)) in &summary {
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        if cell.accounts == 64 {
            any = true;
            writeln!(
                out,
                "- {} clients, 64 accounts: twopc committed {t_pct:.1} % (target ≥ 99 %): {}",
                cell.clients,
                verdict(*t_pct >= 99.0)
            )?;
        }
        if cell.accounts == 2 {
            any = true;
            writeln!(
                out,
                "- {} clients, 2 accounts: twopc committed {t_pct:.1} % (target ≥ 95 %): {}; \
                 committed throughput {ratio:.2}x the floor (target ≥ 0.4x): {}",
                cell.clients,
                verdict(*t_pct >= 95.0),
                verdict(*ratio >= 0.4)
            )?;
        }
    }
    if !any {
        writeln!(out, "- (no 2- or 64-account cell in this run)")?;
    }
    writeln!(
        out,
        "\n## Rounds\n\n\
         Attempts/commit: attempts spent over all transactions of the round (committed or not; \
         the floor makes one per transaction, the coordinator may make several) per committed \
         one. twopc phases: the coordinator-reported mean prepare / decide / commit ms of the \
         committed transactions (a hot row is locked from its UPDATE, inside prepare, until \
         COMMIT PREPARED, inside commit).\n"
    )?;
    writeln!(
        out,
        "| clients | accounts | round | side | s | committed | aborted | other | tx/s | committed % \
         | attempts/commit | p50 ms | p99 ms | twopc phases ms |"
    )?;
    writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for r in rounds {
        let phases = r.phases.map_or_else(
            || "–".to_string(),
            |p| format!("{:.2} / {:.2} / {:.2}", p[0], p[1], p[2]),
        );
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.0} | {:.1} | {} | {:.2} | {:.2} | {phases} |",
            r.cell.clients,
            r.cell.accounts,
            r.round + 1,
            r.side.name(),
            r.elapsed,
            r.committed,
            r.aborted,
            r.other,
            r.tps(),
            r.committed_pct(),
            fmt_apc(r.attempts_per_commit()),
            r.p50,
            r.p99,
        )?;
    }
    writeln!(out, "\n## Aborts and failures by kind (all rounds)\n")?;
    for &cell in &cells {
        for side in [Side::Floor, Side::Twopc] {
            let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
            for r in rounds.iter().filter(|r| r.cell == cell && r.side == side) {
                for (k, n) in &r.kinds {
                    *kinds.entry(k).or_default() += n;
                }
            }
            if kinds.is_empty() {
                continue;
            }
            let mut kinds: Vec<_> = kinds.into_iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            writeln!(
                out,
                "- {} clients × {} accounts, {}:",
                cell.clients,
                cell.accounts,
                side.name()
            )?;
            for (k, n) in kinds.iter().take(8) {
                let k: String = k.chars().take(240).collect();
                writeln!(out, "  - {n} × `{k}`")?;
            }
            if kinds.len() > 8 {
                writeln!(out, "  - ({} more kinds)", kinds.len() - 8)?;
            }
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = Settings {
        secs: env_num("TWOPC_BENCH_SECS", 5.0),
        rounds: env_num("TWOPC_BENCH_ROUNDS", 3usize).max(1),
        max_amount: env_num("TWOPC_BENCH_MAX_AMOUNT", 10i64).max(1),
        seed: env_num("TWOPC_BENCH_SEED", 1u64),
        floor_ordered: std::env::var("TWOPC_BENCH_FLOOR_ORDERED").map_or(true, |v| v != "0"),
        only: match std::env::var("TWOPC_BENCH_ONLY").as_deref() {
            Ok("floor") => Some(Side::Floor),
            Ok("twopc") => Some(Side::Twopc),
            Ok(other) => return Err(format!("TWOPC_BENCH_ONLY={other}: floor or twopc").into()),
            Err(_) => None,
        },
    };
    let cells = cells();
    if cells.is_empty() || cells.iter().any(|c| c.accounts < 2 || c.clients == 0) {
        return Err("every cell needs at least 1 client and 2 accounts".into());
    }
    let accounts = cells.iter().map(|c| c.accounts).max().unwrap_or(2);
    let stack = Stack::start(
        &Binaries::next_to_current_exe(),
        StackOptions {
            accounts: u32::try_from(accounts)?,
            initial_balance: INITIAL_BALANCE,
            fault_injection: false,
            coordinator_settings: twopc_tests::bench::env_settings("TWOPC_BENCH_COORDINATOR"),
            ..StackOptions::default()
        },
    )?;
    if let Ok(t) = std::env::var("TWOPC_BENCH_DEADLOCK_TIMEOUT") {
        stack.pg.psql_ok(
            "postgres",
            &format!(
                "ALTER SYSTEM SET deadlock_timeout = '{}'; SELECT pg_reload_conf();",
                t.replace('\'', "")
            ),
        )?;
    }
    let deadlock_timeout = stack.pg.psql_ok("bank", "SHOW deadlock_timeout")?;
    let deadlock_timeout = deadlock_timeout.trim().to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut rounds: Vec<Round> = Vec::new();
    let mut failure: Option<String> = None;
    'cells: for &cell in &cells {
        for round in 0..s.rounds {
            // Alternate which side goes first, so a drift in the machine's speed during the
            // cell favours neither.
            let order = if round % 2 == 0 {
                [Side::Floor, Side::Twopc]
            } else {
                [Side::Twopc, Side::Floor]
            };
            for side in order {
                if s.only.is_some_and(|o| o != side) {
                    continue;
                }
                eprintln!(
                    "{} clients × {} accounts, round {}/{}: {} ...",
                    cell.clients,
                    cell.accounts,
                    round + 1,
                    s.rounds,
                    side.name()
                );
                let r = match side {
                    Side::Floor => floor_round(&stack, &s, cell, round).await,
                    Side::Twopc => twopc_round(&stack, &client, &s, cell, round).await,
                };
                // A round that cannot run ends the run, but the rounds so far still get
                // written, with the reason on top.
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        let text = format!(
                            "{} round {} of {} clients × {} accounts could not run: {e}",
                            side.name(),
                            round + 1,
                            cell.clients,
                            cell.accounts
                        );
                        eprintln!("\n!!!!!!!! {text} !!!!!!!!\n");
                        diagnose(&stack);
                        failure = Some(text);
                        break 'cells;
                    }
                };
                eprintln!(
                    "  {:.0} committed tx/s, {} committed, {} aborted, {} other ({:.1} %), \
                     {} attempts/commit, p50 {:.2} ms, p99 {:.2} ms{}",
                    r.tps(),
                    r.committed,
                    r.aborted,
                    r.other,
                    r.committed_pct(),
                    fmt_apc(r.attempts_per_commit()),
                    r.p50,
                    r.p99,
                    r.phases.map_or_else(String::new, |p| format!(
                        ", phases {:.2}/{:.2}/{:.2} ms",
                        p[0], p[1], p[2]
                    ))
                );
                rounds.push(r);
                let problems = conservation(&stack).await;
                if !problems.is_empty() {
                    let text = format!(
                        "after {} round {} of {} clients × {} accounts:\n{}",
                        side.name(),
                        round + 1,
                        cell.clients,
                        cell.accounts,
                        problems.join("\n")
                    );
                    eprintln!(
                        "\n!!!!!!!! MONEY NOT CONSERVED / STORES NOT SETTLED !!!!!!!!\n{text}\n\
                         !!!!!!!! stopping: no figure of this run is valid !!!!!!!!\n"
                    );
                    diagnose(&stack);
                    failure = Some(text);
                    break 'cells;
                }
            }
        }
    }
    let out = report(&s, &deadlock_timeout, &rounds, failure.as_deref())?;
    println!("{out}");
    if let Ok(path) = std::env::var("TWOPC_BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    drop(stack);
    if failure.is_some() {
        std::process::exit(1);
    }
    Ok(())
}
