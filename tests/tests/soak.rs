//! Randomised soak: concurrent bank transfers while a seeded fault schedule crashes and
//! restarts every piece (coordinator, Redis participant, redis-server, Postgres, the Postgres
//! worker), partitions and cuts links and turns on random frame faults in the proxies; then
//! everything is healed and every invariant is checked over every transaction.
//!
//! * `cargo test -p twopc-tests --test soak` — the short run (~45 s of load), always on.
//! * `TWOPC_SOAK_SECS=600 cargo test -p twopc-tests --test soak -- --nocapture` — long run.
//! * `TWOPC_SOAK_SEED=<n>` replays a schedule (`random` picks one from the clock). The seed is
//!   printed at the start and in the failure message. The fault *schedule* and the workload
//!   are functions of the seed; thread timing is not, so a replay reproduces the same
//!   sequence of faults and transfers, not necessarily the same interleaving.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::{RandomFaults, SplitMix};
use twopc_tests::invariants::{Told, TxRecord};
use twopc_tests::reliability::{post_told_reason, print_summary, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};
use twopc_tests::util;

const ACCOUNTS: u64 = 8;
const WORKERS: u64 = 4;

/// The least share of the soak's transfers that must commit. Measured with the default seed
/// (45 s): 56 % on a quiet machine, 22 % with two release builds running beside it (the
/// clients then spin through fast "participant not connected" aborts while a crashed Postgres
/// and its worker take longer to come back; key conflicts between the four clients on eight
/// accounts abort another fifth). A coordinator planted to abort everything once it has
/// restarted with a non-empty log committed 6.6 % (only what came before its first restart);
/// this floor sits between the two. The liveness transfer after healing catches that bug too.
const MIN_COMMIT_SHARE: f64 = 0.10;

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

fn seed() -> u64 {
    match std::env::var("TWOPC_SOAK_SEED") {
        Ok(s) if s == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Ok(s) => s
            .parse()
            .expect("TWOPC_SOAK_SEED must be a number or `random`"),
        Err(_) => 20_261_123,
    }
}

/// The schedule's name for a failpoint that was armed but not hit before the next step.
const NOT_HIT: &str = "coordinator failpoint armed (not hit)";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let seed = seed();
    let secs: u64 = std::env::var("TWOPC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    println!("soak: seed {seed}, {secs} s of load (replay with TWOPC_SOAK_SEED={seed})");
    eprintln!("soak: seed {seed}, {secs} s of load (replay with TWOPC_SOAK_SEED={seed})");
    let t_all = Instant::now();
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: ACCOUNTS as u32,
            initial_balance: 1000,
            prepare_timeout_ms: 2000,
            decision_timeout_ms: 1000,
            // A fixed port: clients keep working across coordinator restarts.
            coordinator_port: util::free_port().unwrap(),
            ..StackOptions::default()
        },
        &format!("soak{seed}"),
    )
    .await;

    // The workload.
    let stop = Arc::new(AtomicBool::new(false));
    let records: Arc<Mutex<Vec<TxRecord>>> = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let reasons: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Default::default();
    let url = format!("{}/v1/transactions", rig.stack.coordinator_url);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (stop, records, sent, url) = (stop.clone(), records.clone(), sent.clone(), url.clone());
        let reasons = reasons.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut rng = SplitMix(seed ^ (0xA5A5_0000 + w));
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let from = 1 + rng.below(ACCOUNTS);
                let to = 1 + (from + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + rng.below(20) as i64;
                let txid = format!("soak{seed}-w{w}-{n}");
                n += 1;
                let mut body = twopc_tests::reliability::bank_ledger_transfer(from, to, amount);
                body.id = Some(twopc_protocol::TxId::new(txid.clone()).unwrap());
                let body = serde_json::to_value(body).unwrap();
                let (told, reason) = post_told_reason(&http, &url, &body).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if told != Told::Committed {
                    // Tally abort reasons with the numbers taken out (txids, accounts).
                    let r: String = reason
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_ascii_digit())
                        .take(90)
                        .collect();
                    *reasons.lock().unwrap().entry(r).or_insert(0u64) += 1;
                }
                records
                    .lock()
                    .unwrap()
                    .push(TxRecord::transfer(txid, told, from, to, amount));
                match told {
                    // The coordinator may be down: do not spin.
                    Told::Unknown | Told::BadAnswer(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    // A participant may be down (fast aborts): do not flood.
                    Told::Aborted | Told::Refused => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Told::Committed => {}
                }
            }
        }));
    }

    // The fault schedule.
    let mut rng = SplitMix(seed);
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut proxy_faults0 = 0;
    while Instant::now() < deadline {
        let k = rng.below(9);
        let t = t_all.elapsed().as_millis();
        let name: &'static str = match k {
            0 => {
                for (i, p) in [&rig.bank, &rig.ledger].into_iter().enumerate() {
                    p.set_random(Some(RandomFaults {
                        seed: rng.next_u64() ^ i as u64,
                        drop: 0.05,
                        delay: 0.1,
                        max_delay_ms: 1000,
                        duplicate: 0.05,
                        reorder: 0.05,
                    }));
                }
                tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
                for p in [&rig.bank, &rig.ledger] {
                    p.set_random(None);
                }
                "random frame faults for 1.5-3 s"
            }
            1 => {
                let p = if rng.below(2) == 0 {
                    &rig.bank
                } else {
                    &rig.ledger
                };
                p.partition();
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1700))).await;
                p.heal();
                "partition one participant for 0.3-2 s"
            }
            2 => {
                rig.bank.cut_once();
                rig.ledger.cut_once();
                "cut both connections"
            }
            3 => {
                tokio::task::block_in_place(|| {
                    rig.stack.ledger.kill9();
                    std::thread::sleep(Duration::from_millis(rng.below(500)));
                    rig.stack.ledger.start().unwrap();
                });
                "kill -9 the Redis participant"
            }
            4 => {
                rig.stack.coordinator.kill9();
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
                rig.restart_coordinator(&[]).await;
                "kill -9 the coordinator"
            }
            5 => {
                tokio::task::block_in_place(|| {
                    rig.stack.pg.crash().unwrap();
                    rig.stack.pg.start_server().unwrap();
                });
                "crash Postgres (stop -m immediate)"
            }
            6 => {
                tokio::task::block_in_place(|| {
                    rig.stack.redis.kill9();
                    std::thread::sleep(Duration::from_millis(rng.below(500)));
                    rig.stack.redis.start().unwrap();
                });
                "kill -9 redis-server"
            }
            7 => {
                for pid in rig.stack.pg.children_titled("twopc participant") {
                    util::sigkill(pid);
                }
                "kill -9 the Postgres worker"
            }
            _ => {
                // A coordinator failpoint: restart armed, it aborts at its next commit.
                let fp = [
                    "before_commit_log",
                    "after_commit_log",
                    "after_first_commit_send",
                ][rng.below(3) as usize];
                // No wait for the connections: under load it may abort at once.
                tokio::task::block_in_place(|| rig.stack.restart_coordinator(&[fp])).unwrap();
                let hit = tokio::task::block_in_place(|| {
                    rig.stack.coordinator.wait_exit(Duration::from_secs(10))
                });
                rig.restart_coordinator(&[]).await;
                if hit {
                    "coordinator failpoint hit"
                } else {
                    NOT_HIT
                }
            }
        };
        println!("soak seed {seed} t={t} ms: {name}");
        *counts.entry(name).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        let pf = rig.bank.stats().faults() + rig.ledger.stats().faults();
        if pf > proxy_faults0 {
            *counts.entry("(proxy frame faults and cuts)").or_default() += pf - proxy_faults0;
            proxy_faults0 = pf;
        }
    }

    // Heal and check.
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    for p in [&rig.bank, &rig.ledger] {
        p.clear();
        p.heal();
    }
    tokio::task::block_in_place(|| {
        if !rig.stack.redis.is_running() {
            rig.stack.redis.start().unwrap();
        }
        if rig.stack.pg.postmaster_pid().is_none() {
            rig.stack.pg.start_server().unwrap();
        }
        if !rig.stack.ledger.is_running() {
            rig.stack.ledger.start().unwrap();
        }
    });
    if !rig.stack.coordinator.is_running() {
        rig.restart_coordinator(&[]).await;
    }
    rig.wait_connected().await;
    rig.txs.extend(records.lock().unwrap().drain(..));
    let report = rig.check().await;
    let live = rig.transfer(1, 2, 1).await;

    // A failpoint that was armed but never hit injected nothing.
    let mut rows: Vec<Row> = counts
        .iter()
        .map(|(name, n)| Row {
            name: (*name).to_string(),
            faults: if *name == NOT_HIT { 0 } else { *n },
            txs: 0,
            violations: 0,
            ms: 0,
            note: if *name == NOT_HIT {
                format!("{n} armed, not counted as faults")
            } else {
                String::new()
            },
        })
        .collect();
    rows.push(Row {
        name: format!("invariants after healing (seed {seed})"),
        faults: 0,
        txs: report.transactions,
        violations: report.violations.len() + usize::from(live != Told::Committed),
        ms: t_all.elapsed().as_millis(),
        note: format!(
            "{}; liveness after healing: {live:?}",
            report.to_string().replace('\n', " ")
        ),
    });
    let share = report.committed as f64 / report.transactions.max(1) as f64;
    rows.push(Row {
        name: format!(
            "at least {:.0} % of the transfers commit",
            MIN_COMMIT_SHARE * 100.0
        ),
        faults: 0,
        txs: report.transactions,
        violations: usize::from(share < MIN_COMMIT_SHARE),
        ms: 0,
        note: format!(
            "{} of {} committed ({:.1} %)",
            report.committed,
            report.transactions,
            share * 100.0
        ),
    });
    let mut rs: Vec<(String, u64)> = reasons.lock().unwrap().clone().into_iter().collect();
    rs.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!(
        "soak: {} transactions sent; why the others did not commit:",
        sent.load(Ordering::Relaxed)
    );
    for (r, n) in rs.iter().take(8) {
        println!("  {n:>6}  {r}");
    }
    let total = print_summary(&format!("soak (seed {seed}, {secs} s)"), &rows);
    assert_eq!(
        total, 0,
        "soak found violations; replay with TWOPC_SOAK_SEED={seed} TWOPC_SOAK_SECS={secs}\n{report}"
    );
}
