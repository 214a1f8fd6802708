//! Network faults between the coordinator and the participants, through the WebSocket fault
//! proxy (`twopc_tests::fault_proxy`) and the coordinator's own fault API (`POST /v1/faults`):
//! lost, delayed, duplicated and reordered frames of every protocol type, partitions and
//! cut connections. Each row runs transfers under its fault, heals, and checks every
//! invariant (`twopc_tests::invariants`) over all transactions so far. One stack serves all
//! rows (run sequentially); the summary table lists each row.

use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::{Action, Dir, RandomFaults, Rule};
use twopc_tests::invariants::Told;
use twopc_tests::reliability::{print_summary, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    DropPrepareToBank,
    DropVoteFromLedger,
    DropCommitToBank,
    DropAckFromLedger,
    DropAbortToLedger,
    DuplicatePrepares,
    DuplicateCommitsAndAcks,
    DuplicateVotes,
    LateVoteAfterTimeout,
    DelayCommit,
    ReorderEverything,
    PartitionLedgerInPhase1,
    PartitionBankInPhase2,
    CutConnectionsUnderLoad,
    DropDecisionRequests,
    ApiDropNextCommit,
    ApiDelayNextPrepare,
    ApiPartitionHeal,
    RandomMix,
}

const ALL: [Fault; 19] = [
    Fault::DropPrepareToBank,
    Fault::DropVoteFromLedger,
    Fault::DropCommitToBank,
    Fault::DropAckFromLedger,
    Fault::DropAbortToLedger,
    Fault::DuplicatePrepares,
    Fault::DuplicateCommitsAndAcks,
    Fault::DuplicateVotes,
    Fault::LateVoteAfterTimeout,
    Fault::DelayCommit,
    Fault::ReorderEverything,
    Fault::PartitionLedgerInPhase1,
    Fault::PartitionBankInPhase2,
    Fault::CutConnectionsUnderLoad,
    Fault::DropDecisionRequests,
    Fault::ApiDropNextCommit,
    Fault::ApiDelayNextPrepare,
    Fault::ApiPartitionHeal,
    Fault::RandomMix,
];

async fn concurrent(rig: &mut Rig, n: u64, seed: u64) -> Vec<Told> {
    let mut hs = Vec::new();
    for k in 0..n {
        let from = 1 + (seed + k) % 6;
        let to = 1 + (seed + k + 1 + k % 3) % 6;
        let to = if to == from { 1 + to % 6 } else { to };
        hs.push(rig.spawn_transfer(from, to, 1 + (k as i64 % 3)));
    }
    let mut out = Vec::new();
    for (txid, h) in hs {
        let told = h.await.unwrap_or(Told::Unknown);
        rig.record(txid, told);
        out.push(told);
    }
    out
}

/// Runs one row; returns (faults injected, note).
async fn run(rig: &mut Rig, f: Fault) -> (u64, String) {
    let ps = |d, t: &str, a| Rule::once(d, t, a);
    match f {
        Fault::DropPrepareToBank => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Drop));
            let t = rig.transfer(1, 2, 1).await;
            (
                1,
                format!("told {t:?} (expected Aborted by prepare timeout)"),
            )
        }
        Fault::DropVoteFromLedger => {
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Drop));
            let t = rig.transfer(2, 3, 1).await;
            (
                1,
                format!("told {t:?}; the ledger held a prepared tx and asked"),
            )
        }
        Fault::DropCommitToBank => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "commit", Action::Drop));
            let t = rig.transfer(3, 4, 1).await;
            (1, format!("told {t:?}; commit re-sent"))
        }
        Fault::DropAckFromLedger => {
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "ack", Action::Drop));
            let t = rig.transfer(4, 5, 1).await;
            (1, format!("told {t:?}; commit re-sent, already_applied"))
        }
        Fault::DropAbortToLedger => {
            // A NO vote from the bank (account 1 cannot go below 0) makes an abort; the
            // ledger's Abort is lost and must be re-sent.
            rig.ledger
                .add_rule(ps(Dir::ToParticipant, "abort", Action::Drop));
            let t = rig.transfer(1, 2, 1_000_000).await;
            (1, format!("told {t:?} (expected Aborted: NO vote)"))
        }
        Fault::DuplicatePrepares => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Duplicate));
            let t = rig.transfer(5, 6, 1).await;
            (2, format!("told {t:?}"))
        }
        Fault::DuplicateCommitsAndAcks => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "commit", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "ack", Action::Duplicate));
            let t = rig.transfer(6, 1, 1).await;
            (2, format!("told {t:?}"))
        }
        Fault::DuplicateVotes => {
            rig.bank
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Duplicate));
            let t = rig.transfer(1, 3, 1).await;
            (2, format!("told {t:?}"))
        }
        Fault::LateVoteAfterTimeout => {
            // The vote arrives after the 3 s prepare timeout: the abort stands.
            rig.bank.add_rule(ps(
                Dir::ToCoordinator,
                "vote",
                Action::Delay(Duration::from_millis(4000)),
            ));
            let t = rig.transfer(2, 4, 1).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            (1, format!("told {t:?} (expected Aborted)"))
        }
        Fault::DelayCommit => {
            rig.ledger.add_rule(ps(
                Dir::ToParticipant,
                "commit",
                Action::Delay(Duration::from_millis(1500)),
            ));
            let t = rig.transfer(3, 5, 1).await;
            (1, format!("told {t:?}"))
        }
        Fault::ReorderEverything => {
            for p in [&rig.bank, &rig.ledger] {
                for d in [Dir::ToParticipant, Dir::ToCoordinator] {
                    p.add_rule(Rule {
                        dir: d,
                        msg_type: None,
                        action: Action::Reorder,
                        times: 6,
                    });
                }
            }
            let told = concurrent(rig, 6, 11).await;
            let s = rig.bank.stats().reordered + rig.ledger.stats().reordered;
            (s, format!("told {told:?}"))
        }
        Fault::PartitionLedgerInPhase1 => {
            rig.ledger.add_rule(ps(
                Dir::ToParticipant,
                "prepare",
                Action::Delay(Duration::from_millis(500)),
            ));
            let (txid, h) = rig.spawn_transfer(4, 6, 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            rig.ledger.partition();
            let t = h.await.unwrap_or(Told::Unknown);
            rig.record(txid, t);
            tokio::time::sleep(Duration::from_millis(500)).await;
            rig.ledger.heal();
            (1, format!("told {t:?} (expected Aborted)"))
        }
        Fault::PartitionBankInPhase2 => {
            rig.bank.add_rule(ps(
                Dir::ToParticipant,
                "commit",
                Action::Delay(Duration::from_millis(1000)),
            ));
            let (txid, h) = rig.spawn_transfer(5, 1, 1);
            let before = rig.bank.seen(Dir::ToParticipant, "commit");
            rig.bank
                .wait_seen(
                    Dir::ToParticipant,
                    "commit",
                    before + 1,
                    Duration::from_secs(10),
                )
                .await;
            rig.bank.partition();
            let t = h.await.unwrap_or(Told::Unknown);
            rig.record(txid, t);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            rig.bank.heal();
            (
                1,
                format!("told {t:?} while the bank was cut off; healed after 2.5 s"),
            )
        }
        Fault::CutConnectionsUnderLoad => {
            let mut hs = Vec::new();
            for k in 0..8u64 {
                hs.push(rig.spawn_transfer(1 + k % 6, 1 + (k + 2) % 6, 1));
                if k % 3 == 1 {
                    rig.bank.cut_once();
                    rig.ledger.cut_once();
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let mut told = Vec::new();
            for (txid, h) in hs {
                let t = h.await.unwrap_or(Told::Unknown);
                rig.record(txid, t);
                told.push(t);
            }
            (6, format!("told {told:?}"))
        }
        Fault::DropDecisionRequests => {
            // The ledger's vote is lost, so it holds a prepared tx and asks; its first two
            // decision requests are lost as well.
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Drop));
            rig.ledger.add_rule(Rule {
                dir: Dir::ToCoordinator,
                msg_type: Some("decision_request".into()),
                action: Action::Drop,
                times: 2,
            });
            let t = rig.transfer(6, 2, 1).await;
            (3, format!("told {t:?}"))
        }
        Fault::ApiDropNextCommit => {
            rig.coordinator_fault(serde_json::json!({"fault": "drop_next", "participant": "ledger", "msg_type": "commit"}))
                .await;
            let t = rig.transfer(2, 5, 1).await;
            (1, format!("told {t:?}"))
        }
        Fault::ApiDelayNextPrepare => {
            rig.coordinator_fault(serde_json::json!({"fault": "delay_next", "participant": "bank", "ms": 4000, "msg_type": "prepare"}))
                .await;
            let t = rig.transfer(3, 6, 1).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            (
                1,
                format!("told {t:?} (expected Aborted: prepare arrives after the timeout)"),
            )
        }
        Fault::ApiPartitionHeal => {
            rig.coordinator_fault(serde_json::json!({"fault": "partition", "participant": "bank"}))
                .await;
            let t = rig.transfer(4, 1, 1).await;
            rig.coordinator_fault(serde_json::json!({"fault": "heal", "participant": "bank"}))
                .await;
            (
                1,
                format!("told {t:?} while partitioned (expected Aborted)"),
            )
        }
        Fault::RandomMix => {
            for (i, p) in [&rig.bank, &rig.ledger].into_iter().enumerate() {
                p.set_random(Some(RandomFaults {
                    seed: 1234 + i as u64,
                    drop: 0.05,
                    delay: 0.1,
                    max_delay_ms: 800,
                    duplicate: 0.05,
                    reorder: 0.05,
                }));
            }
            let f0 = rig.bank.stats().faults() + rig.ledger.stats().faults();
            let told = concurrent(rig, 12, 5).await;
            let f1 = rig.bank.stats().faults() + rig.ledger.stats().faults();
            let c = told.iter().filter(|t| **t == Told::Committed).count();
            (f1 - f0, format!("{c}/12 committed"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn network_faults() {
    let t_all = Instant::now();
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: 6,
            initial_balance: 1000,
            prepare_timeout_ms: 3000,
            decision_timeout_ms: 1000,
            ..StackOptions::default()
        },
        "nf",
    )
    .await;
    assert_eq!(rig.transfer(1, 2, 1).await, Told::Committed);
    let mut rows = Vec::new();
    for f in ALL {
        let t0 = Instant::now();
        eprintln!("--- network fault row {f:?}");
        let (faults, mut note) = run(&mut rig, f).await;
        // Heal: no more faults, connections allowed.
        for p in [&rig.bank, &rig.ledger] {
            p.clear();
            p.heal();
        }
        rig.wait_connected().await;
        let report = rig.check().await;
        for v in &report.violations {
            note.push_str(&format!("; VIOLATION {v}"));
        }
        let live = rig.transfer(1, 2, 1).await;
        if live != Told::Committed {
            note.push_str(&format!("; liveness transfer after healing {live:?}"));
        }
        rows.push(Row {
            name: format!("{f:?}"),
            faults,
            txs: report.transactions,
            violations: report.violations.len() + usize::from(live != Told::Committed),
            ms: t0.elapsed().as_millis(),
            note,
        });
    }
    let last = rig.check().await;
    rows.push(Row {
        name: "final-check".into(),
        faults: 0,
        txs: last.transactions,
        violations: last.violations.len(),
        ms: 0,
        note: last.to_string().replace('\n', " "),
    });
    let total = print_summary("network faults", &rows);
    eprintln!("network faults: {} s", t_all.elapsed().as_secs());
    assert_eq!(
        total, 0,
        "violations under network faults (see the table above)"
    );
}
