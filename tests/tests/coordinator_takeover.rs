//! Several coordinators on one PostgreSQL decision log: a coordinator frozen (SIGSTOP) past
//! its lease has its id taken over by a survivor, which finishes its transactions while it is
//! still frozen: the one with a logged COMMIT is committed everywhere, the undecided one is
//! aborted everywhere. Resumed, the frozen coordinator finds its lease gone and halts before
//! deciding anything (no transaction is decided twice); restarted, it claims its id again at a
//! higher epoch. Killed -9 with its data directory deleted, its transactions end through the
//! survivor too. Load runs on both coordinators throughout; the invariant checker covers all.

use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::{Action, Dir, Rule};
use twopc_tests::invariants::{self, Told, TxRecord};
use twopc_tests::reliability::{post_told, told_in_time, Rig};
use twopc_tests::stack::{Binaries, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// A transfer through coordinator `url`, recorded.
async fn transfer_via(rig: &mut Rig, (id, url): (&str, &str), from: u64, to: u64) -> Told {
    let txid = rig.next_txid();
    let body = rig.transfer_body(&txid, from, to, 1);
    let told = post_told(&rig.http, &format!("{url}/v1/transactions"), &body).await;
    rig.record(TxRecord::transfer(txid, told, from, to, 1).via(id), told);
    told
}

/// A transfer through c1 (the rig's coordinator) whose COMMIT is logged and whose Commit to
/// the ledger is lost, now and on every re-send: returns once that Commit was sent.
async fn logged_but_undelivered(
    rig: &Rig,
    from: u64,
    to: u64,
) -> (TxRecord, tokio::task::JoinHandle<Told>) {
    rig.ledger.add_rule(Rule {
        dir: Dir::ToParticipant,
        msg_type: Some("commit".into()),
        action: Action::Drop,
        times: 1_000,
    });
    let commits = rig.ledger.seen(Dir::ToParticipant, "commit");
    let started = rig.spawn_transfer(from, to, 1);
    assert!(
        rig.ledger
            .wait_seen(
                Dir::ToParticipant,
                "commit",
                commits + 1,
                Duration::from_secs(10)
            )
            .await
    );
    started
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process of ours.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn prepared_anywhere(rig: &Rig) -> (String, String) {
    let pg = rig
        .stack
        .pg
        .query("bank", "SELECT count(*) FROM pg_prepared_xacts")
        .trim()
        .to_owned();
    let redis = invariants::in_doubt(&rig.stack)
        .map(|(_, rd)| rd.len().to_string())
        .unwrap_or_else(|e| e);
    (pg, redis)
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lease_of(rig: &Rig, id: &str) -> String {
    rig.stack
        .log_pg
        .as_ref()
        .unwrap()
        .query(
            "twopc_log",
            &format!(
                "SELECT split_part(holder, '@', 1) || ' ' || epoch || ' ' || released
                 FROM twopc_log.lease WHERE coordinator_id = '{id}'"
            ),
        )
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_takes_over_a_frozen_or_killed_coordinators_id() {
    let opts = StackOptions {
        accounts: 12,
        initial_balance: 1000,
        postgres_decision_log: Some(1500),
        ..StackOptions::default()
    };
    let mut rig = Rig::start(bins(), opts, "to").await;
    let extra = tempfile::tempdir().unwrap();
    let (mut c2, c2_url) = tokio::task::block_in_place(|| {
        rig.stack
            .spawn_coordinator(&bins(), "c2", extra.path())
            .unwrap()
    });
    let (mut c3, c3_url) = tokio::task::block_in_place(|| {
        rig.stack
            .spawn_coordinator(&bins(), "c3", extra.path())
            .unwrap()
    });
    let c1_url = rig.stack.coordinator_url.clone();
    for url in [&c2_url, &c3_url] {
        let t0 = Instant::now();
        loop {
            let body = match rig.http.get(format!("{url}/v1/participants")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if body.matches("\"connected\":true").count() == 2 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{url} not connected: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Load spread over all three, each on accounts of its own.
    for k in 0..3 {
        for (id, url, from) in [("c1", &c1_url, 5), ("c2", &c2_url, 7), ("c3", &c3_url, 11)] {
            assert_eq!(
                transfer_via(&mut rig, (id, url), from, from + 1).await,
                Told::Committed,
                "{id} #{k}"
            );
        }
    }
    let listed: serde_json::Value = rig
        .http
        .get(format!("{c2_url}/v1/coordinators"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["decision_log"], "postgres", "{listed}");
    let ids: Vec<&str> = listed["coordinators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coordinator_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"], "{listed}");

    // c1 decides COMMIT for one transaction but its Commit never reaches the ledger, and has
    // another one prepared at both whose ledger vote it never hears; then it freezes.
    let (logged, logged_h) = logged_but_undelivered(&rig, 1, 2).await;
    let votes = rig.ledger.seen(Dir::ToCoordinator, "vote");
    rig.ledger
        .add_rule(Rule::once(Dir::ToCoordinator, "vote", Action::Drop));
    let (undecided, undecided_h) = rig.spawn_transfer(3, 4, 1);
    assert!(
        rig.ledger
            .wait_seen(
                Dir::ToCoordinator,
                "vote",
                votes + 1,
                Duration::from_secs(10)
            )
            .await
    );
    let before = lease_of(&rig, "c1");
    let epoch: u64 = before.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(before.starts_with("c1 "), "{before}");
    let c1_pid = rig.stack.coordinator.pid().unwrap();
    signal(c1_pid, libc::SIGSTOP);
    let frozen_at = Instant::now();
    assert_ne!(prepared_anywhere(&rig), ("0".into(), "0".into()));

    // While it is frozen, a survivor (c2 or c3, whichever claims first) takes its id over and
    // finishes both.
    until("nothing prepared any more", Duration::from_secs(20), || {
        prepared_anywhere(&rig) == ("0".into(), "0".into())
    })
    .await;
    assert!(stopped(c1_pid), "c1 must still be frozen");
    eprintln!(
        "takeover finished c1's transactions {:?} after the freeze",
        frozen_at.elapsed()
    );
    let lease = lease_of(&rig, "c1");
    assert!(
        lease.starts_with(&format!("c2 {} ", epoch + 1))
            || lease.starts_with(&format!("c3 {} ", epoch + 1)),
        "c1's lease after the takeover: {lease}"
    );
    // The survivors keep serving their own ids meanwhile.
    assert_eq!(
        transfer_via(&mut rig, ("c3", &c3_url), 11, 12).await,
        Told::Committed
    );
    assert_eq!(
        transfer_via(&mut rig, ("c2", &c2_url), 7, 8).await,
        Told::Committed
    );

    // Resumed, c1 notices its lease is gone and halts without deciding anything.
    signal(c1_pid, libc::SIGCONT);
    until("c1 halted", Duration::from_secs(10), || {
        !rig.stack.coordinator.is_running()
    })
    .await;
    for (tx, h) in [(logged, logged_h), (undecided, undecided_h)] {
        let told = told_in_time(h).await;
        rig.record(tx, told);
    }
    let opts = rig.check_opts.clone();
    let outcome = |rig: &Rig, i: usize| {
        tokio::task::block_in_place(|| {
            invariants::committed_everywhere(&rig.stack, &opts, &rig.txs[i]).unwrap()
        })
    };
    let n = rig.txs.len();
    assert_eq!(
        outcome(&rig, n - 2),
        Some(true),
        "the logged COMMIT is committed everywhere"
    );
    assert_eq!(
        outcome(&rig, n - 1),
        Some(false),
        "the undecided one is aborted everywhere"
    );
    // Any coordinator answers for any transaction: c2 reports c1's, from the shared log.
    let found: serde_json::Value = rig
        .http
        .get(format!("{c2_url}/v1/transactions/{}", rig.txs[n - 2].txid))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["outcome"], "committed", "{found}");
    assert_eq!(found["coordinator"], "c1", "{found}");
    let decisions = rig.stack.log_pg.as_ref().unwrap().query(
        "twopc_log",
        &format!(
            "SELECT decision || '@' || epoch FROM twopc_log.decision WHERE txid = '{}'",
            rig.txs[n - 1].txid
        ),
    );
    assert!(!decisions.contains("commit"), "decided twice: {decisions}");

    // Restarted, c1 claims its id again at a higher epoch and serves.
    rig.ledger.clear();
    rig.restart_coordinator(&[]).await;
    rig.wait_connected().await;
    let lease = lease_of(&rig, "c1");
    assert_eq!(
        lease,
        format!("c1 {} false", epoch + 2),
        "c1's lease after its restart"
    );
    let c1_url = rig.stack.coordinator_url.clone();
    assert_eq!(
        transfer_via(&mut rig, ("c1", &c1_url), 5, 6).await,
        Told::Committed
    );

    // Killed -9 with its data directory gone: its logged COMMIT still completes, via a
    // survivor.
    let (killed, killed_h) = logged_but_undelivered(&rig, 9, 10).await;
    rig.stack.coordinator.kill9();
    let told = told_in_time(killed_h).await;
    rig.record(killed, told);
    let _ = std::fs::remove_dir_all(rig.stack.coordinator_settings.data_dir.clone());
    until(
        "the killed coordinator's commit finished",
        Duration::from_secs(20),
        || prepared_anywhere(&rig) == ("0".into(), "0".into()),
    )
    .await;
    let n = rig.txs.len();
    assert_eq!(outcome(&rig, n - 1), Some(true));
    assert_eq!(
        transfer_via(&mut rig, ("c2", &c2_url), 7, 8).await,
        Told::Committed
    );

    let mut takeovers = 0;
    for url in [&c2_url, &c3_url] {
        let metrics = rig
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        takeovers += metrics
            .lines()
            .find_map(|l| l.strip_prefix("twopc_takeovers_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(metrics.contains("twopc_lease_epoch 1\n"), "{metrics}");
    }
    assert!(takeovers >= 2, "c1 was taken over {takeovers} times");

    let report = rig.check().await;
    assert!(report.violations.is_empty(), "{report}");
    c2.kill9();
    c3.kill9();
}
