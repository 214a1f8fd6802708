//! The `load` subcommand: bank transfers ([`twopc_protocol::transfer`]) between random
//! accounts at a given concurrency, then a latency summary per outcome.

use crate::client::CliResult;
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use twopc_protocol::api::{TransactionRequest, TransactionResponse};
use twopc_protocol::transfer::{redis_transfer, sql_transfer};
use twopc_protocol::ParticipantName;

/// `load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    client: crate::client::ClientArgs,
    /// Number of transactions.
    #[arg(long, short = 'n', default_value_t = 1000)]
    transactions: u64,
    /// Concurrent clients.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: u64,
    /// Number of accounts (ids 1..=N must exist in Postgres and Redis).
    #[arg(long, default_value_t = 100)]
    accounts: u64,
    /// The Postgres participant's name.
    #[arg(long, default_value = "bank")]
    pg: ParticipantName,
    /// The Redis participant's name.
    #[arg(long, default_value = "ledger")]
    redis: ParticipantName,
    /// Largest amount moved per transfer.
    #[arg(long, default_value_t = 10)]
    max_amount: i64,
    /// Seed of the workload's random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
    /// Exit with status 1 when more than this share (0..=1) of the transactions did not
    /// commit (aborted, no final answer, or an HTTP error). The default 1 only reports.
    #[arg(long, default_value_t = 1.0, value_parser = share)]
    max_abort_rate: f64,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// A bank transfer between two accounts in both stores: `pg` (Postgres) and `redis`.
pub fn transfer(
    pg: &ParticipantName,
    redis: &ParticipantName,
    from: u64,
    to: u64,
    amount: i64,
) -> TransactionRequest {
    TransactionRequest {
        id: None,
        participants: [
            (pg.clone(), sql_transfer(from, to, amount)),
            (redis.clone(), redis_transfer(from, to, amount)),
        ]
        .into(),
    }
}

/// SplitMix64: the load generator's random numbers, seeded per worker so that a run can be
/// repeated (the contention benchmark draws the same transfers for both of its sides).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Two distinct accounts out of 1..=`accounts` (at least 2) and an amount in
    /// 1..=`max_amount`.
    pub fn transfer(&mut self, accounts: u64, max_amount: i64) -> (u64, u64, i64) {
        let from = 1 + self.next_u64() % accounts;
        let to = 1 + (from + self.next_u64() % (accounts - 1)) % accounts;
        let amount = 1 + (self.next_u64() % max_amount.max(1) as u64) as i64;
        (from, to, amount)
    }
}

/// The percentile `p` (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `load`: the bank-transfer load generator.
pub async fn load(a: LoadArgs) -> CliResult {
    if a.accounts < 2 || a.concurrency == 0 {
        return Err("need at least 2 accounts and concurrency >= 1".into());
    }
    let client = a.client.http()?;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(a.transactions);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let client = client.clone();
        let next = next.clone();
        let bar = bar.clone();
        let url = format!("{}/v1/transactions", a.client.url);
        let (pg, redis, accounts, max_amount, total) = (
            a.pg.clone(),
            a.redis.clone(),
            a.accounts,
            a.max_amount,
            a.transactions,
        );
        let mut rng = SplitMix(a.seed.wrapping_mul(1_000_003).wrapping_add(w));
        workers.push(tokio::spawn(async move {
            let mut results: Vec<(String, f64, Option<String>, u32)> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (from, to, amount) = rng.transfer(accounts, max_amount);
                let body = transfer(&pg, &redis, from, to, amount);
                let t0 = Instant::now();
                let (outcome, abort, attempts) = match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        match r.json::<TransactionResponse>().await {
                            Ok(tr) => (
                                tr.outcome.as_str().to_string(),
                                abort_group(&tr),
                                tr.attempts,
                            ),
                            Err(_) => ("bad_response".to_string(), None, 0),
                        }
                    }
                    Ok(r) => (format!("http_{}", r.status().as_u16()), None, 0),
                    Err(_) => ("unreachable".to_string(), None, 0),
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                results.push((outcome, ms, abort, attempts));
                bar.inc(1);
            }
            results
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await?);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let mut by_outcome: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut by_abort: std::collections::BTreeMap<String, usize> = Default::default();
    for (o, ms, abort, _) in &all {
        by_outcome.entry(o.clone()).or_default().push(*ms);
        if let Some(a) = abort {
            *by_abort.entry(a.clone()).or_default() += 1;
        }
    }
    println!(
        "{} transactions, concurrency {}, {:.1} s, {:.0} tx/s",
        all.len(),
        a.concurrency,
        elapsed,
        all.len() as f64 / elapsed.max(1e-9)
    );
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "outcome", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let mut every: Vec<f64> = all.iter().map(|(_, ms, _, _)| *ms).collect();
    every.sort_by(|x, y| x.total_cmp(y));
    for (o, mut v) in by_outcome {
        v.sort_by(|x, y| x.total_cmp(y));
        println!(
            "{:<14} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            o,
            v.len(),
            percentile(&v, 50.0),
            percentile(&v, 90.0),
            percentile(&v, 99.0),
            v.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "{:<14} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "all",
        every.len(),
        percentile(&every, 50.0),
        percentile(&every, 90.0),
        percentile(&every, 99.0),
        every.last().copied().unwrap_or(0.0)
    );
    let commit_attempts: Vec<u32> = all
        .iter()
        .filter(|(o, ..)| o == "committed")
        .map(|(.., n)| *n)
        .collect();
    let committed = commit_attempts.len();
    let not_committed = all.len() - committed;
    println!(
        "committed {committed} of {} ({:.1} %), {:.0} committed/s",
        all.len(),
        100.0 * committed as f64 / all.len().max(1) as f64,
        committed as f64 / elapsed.max(1e-9)
    );
    if committed > 0 {
        let sum: u64 = commit_attempts.iter().map(|n| u64::from(*n)).sum();
        println!(
            "attempts per commit: mean {:.2}, max {} (retried after conflict NO votes: {})",
            sum as f64 / committed as f64,
            commit_attempts.iter().max().copied().unwrap_or(1),
            commit_attempts.iter().filter(|n| **n > 1).count()
        );
    }
    if !by_abort.is_empty() {
        let mut groups: Vec<(String, usize)> = by_abort.into_iter().collect();
        groups.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        println!("aborts by class and reason (quoted names and ids folded):");
        for (group, n) in groups.iter().take(10) {
            println!("{n:>8}  {group}");
        }
        if groups.len() > 10 {
            println!("{:>8}  ({} more kinds)", "", groups.len() - 10);
        }
    }
    let rate = not_committed as f64 / all.len().max(1) as f64;
    if rate > a.max_abort_rate {
        eprintln!(
            "{not_committed} of {} transactions did not commit ({:.1} %), more than --max-abort-rate {}",
            all.len(),
            rate * 100.0,
            a.max_abort_rate
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// An aborted transaction's class and the shape of its reason, for grouping: every quoted
/// name or id becomes `"…"`, so that "key \"balance:1\" is locked by prepared transaction
/// \"c1-…-17\"" and its thousand siblings count as one kind of abort.
fn abort_group(tr: &TransactionResponse) -> Option<String> {
    if tr.outcome != twopc_protocol::api::Outcome::Aborted {
        return None;
    }
    let class = tr.abort_class.map_or("-", |c| c.as_str());
    let mut shape = String::new();
    let mut quoted = false;
    let reason = tr.reason.as_deref().unwrap_or("(no reason)");
    // A retried transaction's reason starts "attempt N: ": one kind whatever N.
    let reason = match reason
        .strip_prefix("attempt ")
        .and_then(|r| r.split_once(": "))
    {
        Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => {
            shape.push_str("attempt N: ");
            rest
        }
        _ => reason,
    };
    for ch in reason.chars() {
        if ch == '"' {
            if !quoted {
                shape.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            shape.push(ch);
        }
    }
    Some(format!("{class:<8} {shape}"))
}
