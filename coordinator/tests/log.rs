//! The decision log across a real process crash, through the public API only.
//!
//! The test re-runs this test binary as a child process (`crash_child`), which commits from 16
//! concurrent clients, prints every commit whose receipt resolved, and exits in the middle of
//! the load without running any destructor or final sync. The parent then reopens the log and
//! checks that every acknowledged commit is there. It lives in its own test binary because the
//! child inherits the parent's descriptors until it execs, which must not meet another test's
//! directory lock.

use std::path::Path;
use std::sync::Arc;
use twopc_coordinator::log::{DecisionLog, FileLog, FileLogConfig, LogRecord};
use twopc_protocol::{Decision, ParticipantName, TxId};

const DIR_VAR: &str = "TWOPC_LOG_CRASH_CHILD_DIR";
const ROUND_VAR: &str = "TWOPC_LOG_CRASH_CHILD_ROUND";
const ACKS: usize = 600;

fn config() -> FileLogConfig {
    FileLogConfig {
        segment_bytes: 8192,
        ..FileLogConfig::default()
    }
}

fn txid(id: u64) -> TxId {
    TxId::new(format!("t{id}")).unwrap()
}

/// The child half: does nothing unless the parent started it.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    use std::io::Write as _;
    let round: u64 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    let log = Arc::new(FileLog::open(Path::new(&dir), config()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
        for c in 0..16u64 {
            let log = log.clone();
            let acked_tx = acked_tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let id = round * 100_000_000 + c * 1_000_000 + i;
                    let commit = LogRecord::Commit {
                        txid: txid(id),
                        participants: vec![ParticipantName::new("bank").unwrap()],
                        body_hash: id,
                        at_ms: 1_700_000_000_000 + i,
                        client: None,
                    };
                    if log.append_durable(commit).await.is_err() {
                        return;
                    }
                    let _ = acked_tx.send(id);
                    let _ = log.append_lazy(LogRecord::End {
                        txid: txid(id),
                        heuristics: Vec::new(),
                    });
                }
            });
        }
        let mut out = std::io::stdout().lock();
        for _ in 0..ACKS {
            let id = acked_rx.recv().await.unwrap();
            writeln!(out, "acked t{id}").unwrap();
        }
        out.flush().unwrap();
        // No destructors, no final sync: the writer thread dies wherever it is. (`exit`, not
        // `abort`, so that no core file is left behind.)
        std::process::exit(3);
    });
}

#[test]
fn acknowledged_commits_survive_a_process_crash() {
    if std::env::var_os(DIR_VAR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "the child should have crashed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let acked: Vec<&str> = stdout
            .lines()
            // libtest may print "test crash_child ... " in front of the first line.
            .filter_map(|l| l.split_once("acked ").map(|(_, t)| t))
            .collect();
        assert_eq!(acked.len(), ACKS, "round {round}: {stdout}");

        let log = FileLog::open(dir.path(), config()).unwrap();
        let state = log.recover().unwrap();
        for t in acked {
            let outcome = state.outcomes.get(&TxId::new(t).unwrap());
            assert_eq!(
                outcome.map(|o| o.decision),
                Some(Decision::Commit),
                "round {round}: acknowledged {t} lost"
            );
        }
        // Whatever was not ended is pending, with its participants, for recovery to finish.
        assert!(state
            .pending
            .iter()
            .all(|p| p.participants.len() == 1 && !state.outcomes[&p.txid].ended));
        log.close().unwrap();
    }
}
