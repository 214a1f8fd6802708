//! Measurement pieces shared by the benchmark binaries (`src/bin/twopc-bench*.rs`, run by
//! `scripts/bench*.sh`, never by the tests): the load that drives transfers through a
//! coordinator, percentiles and medians, metric scraping, and reading `TWOPC_BENCH_*`
//! settings.

use crate::stack::Stack;
use std::time::{Duration, Instant};

/// What one load run at one concurrency measured.
#[derive(Debug, Clone)]
pub struct Level {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Committed transactions per second.
    pub tps: f64,
    /// Median latency of the committed transactions, ms.
    pub p50: f64,
    /// 99th percentile latency of the committed transactions, ms.
    pub p99: f64,
    /// Transactions that did not commit (errors, aborts).
    pub errors: u64,
    /// Transactions committed.
    pub committed: u64,
    /// Through the coordinator: the coordinator-reported mean prepare / decide / commit ms of
    /// the committed transactions (zeros for the floor).
    pub phases: [f64; 3],
}

/// The `p`th percentile of `sorted` (nearest rank; 0 when empty).
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize).min(sorted.len() - 1)]
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A [`Level`] from the latencies (ms) of the committed transactions of a run of `elapsed`
/// seconds.
pub fn summarize(concurrency: usize, elapsed: f64, mut lat: Vec<f64>, errors: u64) -> Level {
    lat.sort_by(|a, b| a.total_cmp(b));
    Level {
        concurrency,
        committed: lat.len() as u64,
        tps: lat.len() as f64 / elapsed,
        p50: pct(&lat, 50.0),
        p99: pct(&lat, 99.0),
        errors,
        phases: [0.0; 3],
    }
}

/// `concurrency` clients, each on its own account (1..=concurrency, so no lock conflicts), in
/// a loop for `secs` seconds: a 2-participant transfer (one Postgres row update, one Redis
/// INCRBY) through the stack's coordinator, `POST /v1/transactions`, no retries.
pub async fn through_coordinator(stack: &Stack, concurrency: usize, secs: f64) -> Level {
    through_coordinators(
        std::slice::from_ref(&stack.coordinator_url),
        concurrency,
        secs,
    )
    .await
}

/// [`through_coordinator`] spread over several coordinators (base URLs) of one stack: client
/// `w` sends every transfer to `coordinators[w % coordinators.len()]` (round-robin, each
/// client sticking to one), still on its own account `w + 1`.
pub async fn through_coordinators(coordinators: &[String], concurrency: usize, secs: f64) -> Level {
    assert!(!coordinators.is_empty(), "no coordinator to send to");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let url = format!("{}/v1/transactions", coordinators[w % coordinators.len()]);
        tasks.push(tokio::spawn(async move {
            let account = w + 1;
            let body = serde_json::json!({"participants": {
                "bank": {"sql": [{"query": "UPDATE accounts SET balance = balance + $1 WHERE id = $2", "params": [1, account]}]},
                "ledger": {"redis": [{"op": "incrby", "key": format!("balance:{account}"), "by": 1}]},
            }});
            let mut lat = Vec::new();
            let mut phases: Vec<[f64; 3]> = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = match client.post(&url).json(&body).send().await {
                    Ok(r) => match r.json::<serde_json::Value>().await {
                        Ok(v) if v["outcome"] == "committed" => {
                            let t = &v["timings"];
                            phases.push([
                                t["prepare_ms"].as_f64().unwrap_or(0.0),
                                t["decide_ms"].as_f64().unwrap_or(0.0),
                                t["commit_ms"].as_f64().unwrap_or(0.0),
                            ]);
                            true
                        }
                        _ => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (lat, errors, phases)
        }));
    }
    let mut all = Vec::new();
    let mut phases = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e, p) = t.await.unwrap();
        all.extend(l);
        phases.extend(p);
        errors += e;
    }
    let n = phases.len().max(1) as f64;
    let mean = |i: usize| phases.iter().map(|p| p[i]).sum::<f64>() / n;
    let mut level = summarize(concurrency, started.elapsed().as_secs_f64(), all, errors);
    level.phases = [mean(0), mean(1), mean(2)];
    eprintln!(
        "  coordinator-reported mean phases at c={concurrency}: prepare {:.2} ms, decide {:.2} ms, commit {:.2} ms",
        level.phases[0], level.phases[1], level.phases[2]
    );
    level
}

/// The value of the sample `name` (no labels) in OpenMetrics text such as the coordinator's
/// `GET /metrics`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        if n == name {
            v.split_whitespace().next()?.parse().ok()
        } else {
            None
        }
    })
}

/// CPU time (user + system, all threads, seconds) the process `pid` has used so far, from
/// `/proc/<pid>/stat` (`utime` + `stime`); `None` when it is gone or unreadable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    crate::proc_cpu::times(pid).map(|(own, _)| own)
}

/// The comma-separated list in the environment variable `name`, or `default`.
pub fn env_list<T: std::str::FromStr + Clone>(name: &str, default: &[T]) -> Vec<T> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// `name=value` pairs, comma-separated, from the environment variable `name` (e.g.
/// `TWOPC_BENCH_COORDINATOR=ordered_prepare=false`): settings for the coordinator's
/// configuration file, so that one run can compare a setting against the default.
pub fn env_settings(name: &str) -> Vec<(String, String)> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The number in the environment variable `name`, or `default`.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
