//! The decision log's disk fails while a COMMIT record is being made durable, end to end.
//!
//! The real coordinator runs with an `LD_PRELOAD` shim (compiled here from C with the
//! machine's `cc`) whose `fdatasync` fails with EIO while a flag file exists. A failed fsync
//! leaves the COMMIT record's fate unknown: it may still sit in the page cache and be read back
//! by the next process. The coordinator must then decide nothing — not abort, not commit — and
//! halt; after a restart (without the fault) recovery decides from what the log holds, and the
//! transaction ends the same in both stores, its client was told nothing false, and new work
//! commits. (Before, the coordinator aborted at once and told its client so, while the record
//! it had written could be read back and committed by the next process.)

use std::time::{Duration, Instant};
use twopc_tests::invariants::{self, Told};
use twopc_tests::reliability::{print_summary, told_in_time, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// `fdatasync` fails with EIO while the file named by `TWOPC_SHIM_FAIL_FILE` exists.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
int fdatasync(int fd) {
    const char *flag = getenv("TWOPC_SHIM_FAIL_FILE");
    if (flag && access(flag, F_OK) == 0) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// Builds the shim into `dir`; its path.
fn build_shim(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("fail_fdatasync.c");
    let lib = dir.join("fail_fdatasync.so");
    std::fs::write(&src, SHIM).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc (gcc is on every machine of this kind)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_of_a_commit_record_halts_and_recovery_decides() {
    let t_all = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("twopc-logfail-")
        .tempdir_in("/tmp")
        .unwrap();
    let shim = build_shim(dir.path());
    let flag = dir.path().join("fail-now");
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: 4,
            initial_balance: 1000,
            ..StackOptions::default()
        },
        "lf",
    )
    .await;
    let env = [
        ("LD_PRELOAD", shim.to_str().unwrap()),
        ("TWOPC_SHIM_FAIL_FILE", flag.to_str().unwrap()),
    ];
    tokio::task::block_in_place(|| rig.stack.restart_coordinator_with_env(&env)).unwrap();
    rig.wait_connected().await;
    let mut rows = Vec::new();

    // With the shim loaded but not failing, the coordinator works as ever.
    let t0 = Instant::now();
    let before = rig.transfer(1, 2, 5).await;
    rows.push(Row {
        name: "shim loaded, disk healthy: a transfer commits".into(),
        faults: 0,
        txs: 1,
        violations: usize::from(before != Told::Committed),
        ms: t0.elapsed().as_millis(),
        note: format!("told {before:?}"),
    });

    // The disk fails: the next COMMIT record cannot be made durable.
    let t0 = Instant::now();
    std::fs::write(&flag, b"").unwrap();
    let (tx, h) = rig.spawn_transfer(2, 3, 7);
    let txid = tx.txid.clone();
    let halted =
        tokio::task::block_in_place(|| rig.stack.coordinator.wait_exit(Duration::from_secs(20)));
    let told = told_in_time(h).await;
    rig.record(tx, told);
    let mut problems = Vec::new();
    if !halted {
        problems.push("the coordinator kept running after its fsync failed".to_string());
    }
    // Told nothing final: neither outcome was known when the fsync failed.
    if told != Told::Unknown {
        problems.push(format!(
            "client told {told:?} although the COMMIT record's fate was unknown"
        ));
    }
    std::fs::remove_file(&flag).unwrap();
    tokio::task::block_in_place(|| rig.stack.restart_coordinator_with_env(&env)).unwrap();
    rig.wait_connected().await;
    let rec = rig.txs.iter().find(|t| t.txid == txid).cloned().unwrap();
    let settled = tokio::task::block_in_place(|| {
        invariants::wait_settled(&rig.stack, Duration::from_secs(30));
        invariants::committed_everywhere(&rig.stack, &rig.check_opts, &rec)
    });
    match &settled {
        Ok(Some(_)) => {}
        Ok(None) => problems.push("after recovery the transaction is not atomic".into()),
        Err(e) => problems.push(format!("cannot read its outcome: {e}")),
    }
    rows.push(Row {
        name: "fdatasync fails on a COMMIT record: halt, recovery decides".into(),
        faults: 1,
        txs: 1,
        violations: problems.len(),
        ms: t0.elapsed().as_millis(),
        note: format!(
            "halted: {halted}; client told {told:?}; after recovery committed everywhere: {settled:?}; {}",
            problems.join("; ")
        ),
    });

    // Afterwards: every invariant, and new work commits.
    let t0 = Instant::now();
    let live = rig.transfer(3, 4, 1).await;
    let report = rig.check().await;
    rows.push(Row {
        name: "invariants, and a transfer after recovery commits".into(),
        faults: 0,
        txs: report.transactions,
        violations: report.violations.len() + usize::from(live != Told::Committed),
        ms: t0.elapsed().as_millis(),
        note: format!(
            "liveness {live:?}; {}",
            report.to_string().replace('\n', " ")
        ),
    });
    let total = print_summary("decision log failure", &rows);
    println!("whole suite: {:?}", t_all.elapsed());
    assert_eq!(total, 0, "see the summary above");
}
