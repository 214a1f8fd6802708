//! Network faults between the coordinator and the participants, through the WebSocket fault
//! proxy (`twopc_tests::fault_proxy`) and the coordinator's own fault API (`POST /v1/faults`):
//! lost, delayed, duplicated and reordered frames of every protocol type, partitions and
//! cut connections. Each row runs transfers under its fault and asserts what it is about: that
//! its fault demonstrably fired (counted by the proxies, or seen as a `fault_injected` event
//! of the coordinator naming the row's transaction), the outcome its client must be told, and
//! the recovery step it names (a re-sent Commit or Abort, an Abort reaching a prepared
//! participant). Then it heals, checks every invariant (`twopc_tests::invariants`) over all
//! transactions so far, and requires a fresh transfer to commit. One stack serves all rows
//! (run sequentially); the summary table lists each row.

use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::{Action, Dir, FaultProxy, RandomFaults, Rule};
use twopc_tests::invariants::{Told, TxRecord};
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
    DropAbortToBank,
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
    Fault::DropAbortToBank,
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
    for (tx, h) in hs {
        let told = h.await.unwrap_or(Told::Unknown);
        rig.record(tx, told);
        out.push(told);
    }
    out
}

/// What a row did and whether it did what it says.
struct RowResult {
    /// Faults that demonstrably fired (counted by the proxies or seen in the coordinator's
    /// event stream), not faults armed.
    fired: u64,
    /// What happened.
    note: String,
    /// Each way the row did not do what it says.
    problems: Vec<String>,
}

impl RowResult {
    fn new(fired: u64, note: String) -> RowResult {
        RowResult {
            fired,
            note,
            problems: Vec::new(),
        }
    }

    /// The fault fired at least `n` times.
    fn fired_at_least(mut self, n: u64) -> RowResult {
        if self.fired < n {
            self.problems.push(format!(
                "fault fired {} times, expected at least {n}",
                self.fired
            ));
        }
        self
    }

    /// The client was told `want`.
    fn told(mut self, got: Told, want: Told) -> RowResult {
        if got != want {
            self.problems
                .push(format!("client told {got:?}, the row expects {want:?}"));
        }
        self
    }

    /// A check of the row's own.
    fn require(mut self, ok: bool, what: &str) -> RowResult {
        if !ok {
            self.problems.push(what.to_owned());
        }
        self
    }
}

/// Whether `proxy` has seen `n` frames of `ty` travelling in `dir` within 10 s.
async fn seen_within(proxy: &FaultProxy, dir: Dir, ty: &str, n: u64) -> bool {
    proxy.wait_seen(dir, ty, n, Duration::from_secs(10)).await
}

/// Frame faults and cuts counted by both proxies so far.
fn proxy_faults(rig: &Rig) -> u64 {
    rig.bank.stats().faults() + rig.ledger.stats().faults()
}

/// Collects the coordinator's `fault_injected` events of one run that name a transaction
/// (the ones the driver publishes when an armed fault fires on a message).
struct FaultEvents {
    /// The transaction each event named.
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultEvents {
    async fn watch(coordinator_url: &str) -> FaultEvents {
        use futures_util::StreamExt;
        let url = format!(
            "{}/v1/events",
            coordinator_url.replacen("http://", "ws://", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to the event stream");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Ok(text) = m.into_text() else { continue };
                let Ok(ev) = serde_json::from_str::<twopc_protocol::Event>(&text) else {
                    continue;
                };
                if let twopc_protocol::event::EventKind::FaultInjected { .. } = ev.kind {
                    sink.lock().unwrap().push(ev.txid.map(|t| t.to_string()));
                }
            }
        });
        FaultEvents { seen, task }
    }

    /// Faults that fired on a message of `txid`.
    fn fired_on(&self, txid: &str) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.as_deref() == Some(txid))
            .count() as u64
    }
}

impl Drop for FaultEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one transfer and returns its txid and what its client was told.
async fn one(rig: &mut Rig, from: u64, to: u64, amount: i64) -> (String, Told) {
    let (tx, h) = rig.spawn_transfer(from, to, amount);
    let txid = tx.txid.clone();
    let told = h.await.unwrap_or(Told::Unknown);
    rig.record(tx, told);
    (txid, told)
}

/// Whether every answer is a final one (a live coordinator owes one to every client).
fn all_final(told: &[Told]) -> bool {
    told.iter()
        .all(|t| matches!(t, Told::Committed | Told::Aborted))
}

/// Runs one row.
async fn run(rig: &mut Rig, f: Fault) -> RowResult {
    let ps = |d, t: &str, a| Rule::once(d, t, a);
    let f0 = proxy_faults(rig);
    let fired = |rig: &Rig| proxy_faults(rig) - f0;
    match f {
        Fault::DropPrepareToBank => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Drop));
            let t = rig.transfer(1, 2, 1).await;
            RowResult::new(fired(rig), format!("told {t:?} by the prepare timeout"))
                .fired_at_least(1)
                .told(t, Told::Aborted)
        }
        Fault::DropVoteFromLedger => {
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Drop));
            let aborts = rig.ledger.seen(Dir::ToParticipant, "abort");
            let t = rig.transfer(2, 3, 1).await;
            let abort_sent =
                seen_within(&rig.ledger, Dir::ToParticipant, "abort", aborts + 1).await;
            RowResult::new(
                fired(rig),
                format!("told {t:?}; the prepared ledger got the Abort: {abort_sent}"),
            )
            .fired_at_least(1)
            .told(t, Told::Aborted)
            .require(abort_sent, "the ledger, prepared, never got an Abort")
        }
        Fault::DropCommitToBank => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "commit", Action::Drop));
            let commits = rig.bank.seen(Dir::ToParticipant, "commit");
            let t = rig.transfer(3, 4, 1).await;
            let resent = seen_within(&rig.bank, Dir::ToParticipant, "commit", commits + 2).await;
            RowResult::new(fired(rig), format!("told {t:?}; Commit re-sent: {resent}"))
                .fired_at_least(1)
                .told(t, Told::Committed)
                .require(resent, "the lost Commit was not re-sent")
        }
        Fault::DropAckFromLedger => {
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "ack", Action::Drop));
            let commits = rig.ledger.seen(Dir::ToParticipant, "commit");
            let t = rig.transfer(4, 5, 1).await;
            let resent = seen_within(&rig.ledger, Dir::ToParticipant, "commit", commits + 2).await;
            RowResult::new(
                fired(rig),
                format!("told {t:?}; Commit re-sent after the lost Ack: {resent}"),
            )
            .fired_at_least(1)
            .told(t, Told::Committed)
            .require(resent, "the Commit whose Ack was lost was not re-sent")
        }
        Fault::DropAbortToBank => {
            // The bank prepares and votes YES; then the ledger votes NO (account 1 holds far
            // less than a million, and the debit has a floor of 0): the abort must reach a
            // prepared bank, and its first Abort is lost. (The coordinator asks the bank
            // first: prepares go one participant at a time, in name order.)
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "abort", Action::Drop));
            let aborts = rig.bank.seen(Dir::ToParticipant, "abort");
            let txid = rig.next_txid();
            let body = serde_json::json!({
                "id": txid,
                "participants": {
                    "bank": {"sql": [
                        {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"},
                        {"query": "UPDATE accounts SET balance = balance + 1 WHERE id = 2"},
                    ]},
                    "ledger": {"redis": [
                        {"op": "incrby", "key": "balance:1", "by": -1000000, "min": 0},
                        {"op": "incrby", "key": "balance:2", "by": 1000000},
                    ]},
                }
            });
            let t = rig.spawn_post(body).await.unwrap_or(Told::Unknown);
            rig.txs.push(
                TxRecord::other(txid, t)
                    .pg_move(1, -1)
                    .pg_move(2, 1)
                    .redis_move(1, -1_000_000)
                    .redis_move(2, 1_000_000),
            );
            let resent = seen_within(&rig.bank, Dir::ToParticipant, "abort", aborts + 2).await;
            RowResult::new(
                fired(rig),
                format!("told {t:?} (bank YES, ledger NO); Abort re-sent: {resent}"),
            )
            .fired_at_least(1)
            .told(t, Told::Aborted)
            .require(
                resent,
                "the lost Abort to the prepared bank was not re-sent",
            )
        }
        Fault::DuplicatePrepares => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToParticipant, "prepare", Action::Duplicate));
            let t = rig.transfer(5, 6, 1).await;
            RowResult::new(fired(rig), format!("told {t:?}"))
                .fired_at_least(2)
                .told(t, Told::Committed)
        }
        Fault::DuplicateCommitsAndAcks => {
            rig.bank
                .add_rule(ps(Dir::ToParticipant, "commit", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "ack", Action::Duplicate));
            let t = rig.transfer(6, 1, 1).await;
            RowResult::new(fired(rig), format!("told {t:?}"))
                .fired_at_least(2)
                .told(t, Told::Committed)
        }
        Fault::DuplicateVotes => {
            rig.bank
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Duplicate));
            rig.ledger
                .add_rule(ps(Dir::ToCoordinator, "vote", Action::Duplicate));
            let t = rig.transfer(1, 3, 1).await;
            RowResult::new(fired(rig), format!("told {t:?}"))
                .fired_at_least(2)
                .told(t, Told::Committed)
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
            RowResult::new(
                fired(rig),
                format!("told {t:?}; the late YES changed nothing"),
            )
            .fired_at_least(1)
            .told(t, Told::Aborted)
        }
        Fault::DelayCommit => {
            rig.ledger.add_rule(ps(
                Dir::ToParticipant,
                "commit",
                Action::Delay(Duration::from_millis(1500)),
            ));
            let t = rig.transfer(3, 5, 1).await;
            RowResult::new(fired(rig), format!("told {t:?}"))
                .fired_at_least(1)
                .told(t, Told::Committed)
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
            let reordered = rig.bank.stats().reordered + rig.ledger.stats().reordered;
            RowResult::new(
                fired(rig),
                format!("told {told:?}; {reordered} frames reordered"),
            )
            .fired_at_least(1)
            .require(all_final(&told), "a client got no final answer")
        }
        Fault::PartitionLedgerInPhase1 => {
            rig.ledger.add_rule(ps(
                Dir::ToParticipant,
                "prepare",
                Action::Delay(Duration::from_millis(500)),
            ));
            let (tx, h) = rig.spawn_transfer(4, 6, 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            rig.ledger.partition();
            let t = h.await.unwrap_or(Told::Unknown);
            rig.record(tx, t);
            tokio::time::sleep(Duration::from_millis(500)).await;
            rig.ledger.heal();
            RowResult::new(fired(rig), format!("told {t:?}"))
                .fired_at_least(1)
                .told(t, Told::Aborted)
        }
        Fault::PartitionBankInPhase2 => {
            rig.bank.add_rule(ps(
                Dir::ToParticipant,
                "commit",
                Action::Delay(Duration::from_millis(1000)),
            ));
            let before = rig.bank.seen(Dir::ToParticipant, "commit");
            let (tx, h) = rig.spawn_transfer(5, 1, 1);
            let in_phase2 = seen_within(&rig.bank, Dir::ToParticipant, "commit", before + 1).await;
            rig.bank.partition();
            let t = h.await.unwrap_or(Told::Unknown);
            rig.record(tx, t);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            rig.bank.heal();
            RowResult::new(
                fired(rig),
                format!("told {t:?} while the bank was cut off; healed after 2.5 s"),
            )
            .require(
                in_phase2,
                "the bank's Commit was never sent (not in phase 2)",
            )
            .fired_at_least(1)
            .told(t, Told::Committed)
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
            for (tx, h) in hs {
                let t = h.await.unwrap_or(Told::Unknown);
                rig.record(tx, t);
                told.push(t);
            }
            RowResult::new(fired(rig), format!("told {told:?}"))
                .fired_at_least(1)
                .require(all_final(&told), "a client got no final answer")
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
            let asked = rig.ledger.seen(Dir::ToCoordinator, "decision_request");
            let t = rig.transfer(6, 2, 1).await;
            let asked = rig.ledger.seen(Dir::ToCoordinator, "decision_request") - asked;
            RowResult::new(
                fired(rig),
                format!("told {t:?}; the ledger asked {asked} times while in doubt"),
            )
            // The vote and at least one decision request.
            .fired_at_least(2)
            .told(t, Told::Aborted)
        }
        Fault::ApiDropNextCommit => {
            let events = FaultEvents::watch(&rig.stack.coordinator_url).await;
            rig.coordinator_fault(serde_json::json!({"fault": "drop_next", "participant": "ledger", "msg_type": "commit"}))
                .await;
            let (txid, t) = one(rig, 2, 5, 1).await;
            let n = events.fired_on(&txid);
            RowResult::new(
                n,
                format!("told {t:?}; the coordinator dropped {n} Commit(s)"),
            )
            .fired_at_least(1)
            .told(t, Told::Committed)
        }
        Fault::ApiDelayNextPrepare => {
            let events = FaultEvents::watch(&rig.stack.coordinator_url).await;
            rig.coordinator_fault(serde_json::json!({"fault": "delay_next", "participant": "bank", "ms": 4000, "msg_type": "prepare"}))
                .await;
            let (txid, t) = one(rig, 3, 6, 1).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let n = events.fired_on(&txid);
            RowResult::new(
                n,
                format!("told {t:?}: the Prepare left after the prepare timeout"),
            )
            .fired_at_least(1)
            .told(t, Told::Aborted)
        }
        Fault::ApiPartitionHeal => {
            rig.coordinator_fault(serde_json::json!({"fault": "partition", "participant": "bank"}))
                .await;
            let t = rig.transfer(4, 1, 1).await;
            rig.coordinator_fault(serde_json::json!({"fault": "heal", "participant": "bank"}))
                .await;
            // Without the partition this transfer commits; its abort is the fault's effect.
            RowResult::new(
                u64::from(t == Told::Aborted),
                format!("told {t:?} while partitioned"),
            )
            .fired_at_least(1)
            .told(t, Told::Aborted)
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
            let told = concurrent(rig, 12, 5).await;
            let c = told.iter().filter(|t| **t == Told::Committed).count();
            RowResult::new(fired(rig), format!("{c}/12 committed"))
                .fired_at_least(1)
                .require(all_final(&told), "a client got no final answer")
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
        let RowResult {
            fired: faults,
            mut note,
            problems,
        } = run(&mut rig, f).await;
        for p in &problems {
            note.push_str(&format!("; ROW FAILED: {p}"));
        }
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
            note.push_str(&format!(
                "; VIOLATION liveness transfer after healing {live:?}"
            ));
        }
        rows.push(Row {
            name: format!("{f:?}"),
            faults,
            txs: report.transactions,
            violations: report.violations.len()
                + problems.len()
                + usize::from(live != Told::Committed),
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
