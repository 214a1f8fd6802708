//! The coordinator's decision log on a PostgreSQL primary with a synchronous streaming
//! standby: the primary is killed (-9) while transfers are in flight and the standby is
//! promoted. No COMMIT the coordinator acknowledged may be missing from the promoted log, the
//! coordinator carries on without a restart (its multi-host URL finds the new primary), and
//! every invariant holds.

use std::time::{Duration, Instant};
use twopc_tests::invariants::Told;
use twopc_tests::reliability::{told_in_time, Rig};
use twopc_tests::stack::{Binaries, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// Four transfers at once on disjoint account pairs (no contention), recorded.
async fn round(rig: &mut Rig) -> Vec<Told> {
    let mut hs = Vec::new();
    for k in 0..4u64 {
        hs.push(rig.spawn_transfer(2 * k + 1, 2 * k + 2, 1));
    }
    let mut told = Vec::new();
    for (tx, h) in hs {
        let t = told_in_time(h).await;
        rig.record(tx, t);
        told.push(t);
    }
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_primary_dies_and_the_promoted_standby_has_every_acknowledged_commit() {
    let opts = StackOptions {
        accounts: 8,
        initial_balance: 1000,
        // Longer than the failover takes: the coordinator keeps its id throughout.
        postgres_decision_log: Some(15_000),
        log_standby: true,
        ..StackOptions::default()
    };
    let mut rig = Rig::start(bins(), opts, "lf").await;
    for _ in 0..3 {
        assert!(round(&mut rig).await.iter().all(|t| *t == Told::Committed));
    }

    // The primary dies; transfers submitted now prepare, and their COMMIT writes meet a dead
    // server (the multi-host URL's other host is a standby that refuses writes) ...
    let t0 = Instant::now();
    tokio::task::block_in_place(|| rig.stack.log_pg.as_ref().unwrap().kill9().unwrap());
    let mut in_flight = Vec::new();
    for k in 0..4u64 {
        in_flight.push(rig.spawn_transfer(2 * k + 1, 2 * k + 2, 1));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        in_flight.iter().all(|(_, h)| !h.is_finished()),
        "a transfer finished without a decision log"
    );
    // ... until the standby is promoted: then they commit.
    tokio::task::block_in_place(|| rig.stack.log_standby.as_ref().unwrap().promote().unwrap());
    eprintln!(
        "log failover: primary killed, standby promoted after {:?}",
        t0.elapsed()
    );
    for (tx, h) in in_flight {
        let t = told_in_time(h).await;
        assert_eq!(
            t,
            Told::Committed,
            "a transfer in flight during the failover"
        );
        rig.record(tx, t);
    }
    // The coordinator carries on, on the promoted standby, without a restart.
    for _ in 0..3 {
        let told = round(&mut rig).await;
        assert!(told.iter().all(|t| *t == Told::Committed), "{told:?}");
    }
    assert!(rig.stack.coordinator.is_running(), "the coordinator halted");

    // Every commit a client was told of is in the promoted log.
    let standby = rig.stack.log_standby.as_ref().unwrap();
    let logged = standby
        .psql_ok(
            "twopc_log",
            "SELECT txid FROM twopc_log.decision WHERE decision = 'commit'",
        )
        .unwrap();
    let logged: std::collections::HashSet<&str> = logged.lines().map(str::trim).collect();
    let committed: Vec<&str> = rig
        .txs
        .iter()
        .filter(|t| t.told == Told::Committed)
        .map(|t| t.txid.as_str())
        .collect();
    assert!(committed.len() >= 24, "{} committed", committed.len());
    for txid in &committed {
        assert!(
            logged.contains(txid),
            "acknowledged COMMIT of {txid} lost in the failover"
        );
    }
    let report = rig.check().await;
    assert!(report.violations.is_empty(), "{report}");
}
