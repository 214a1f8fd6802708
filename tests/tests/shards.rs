//! Sharded participants (issue 18) against real processes: `bank` on two PostgreSQL clusters
//! (the extension's worker on each) and `ledger` on three redis-servers (a Redis participant
//! for each), behind one coordinator that routes by the same ring the harness seeded with.
//!
//! * every shard is a participant of its own, `logical/shard`, connected;
//! * a transfer between accounts whose rows and keys sit on different shards commits in all
//!   four places, and so do the load generator's transfers (its statements carry the account
//!   as `shard_key`): money is conserved over the PostgreSQL shards and every Redis key equals
//!   its row;
//! * `reshard --plan` lists exactly the keys and rows a new shard would take, and where from;
//! * what cannot be routed is refused: a statement without `shard_key`, a shard named directly;
//! * one shard down: only the transactions touching it abort; back up, they commit again;
//! * a shard killed after its yes vote, before the Commit: the transaction commits there when
//!   the shard is back (it reports the transaction in doubt and is told the decision), and the
//!   reliability suite's invariant checker, run over all the shards, finds nothing wrong.

use std::time::Duration;
use twopc_protocol::api::{Outcome, ParticipantStatus, TransactionResponse};
use twopc_tests::sharded::ShardedStack;
use twopc_tests::stack::Binaries;

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

async fn transfer(
    http: &reqwest::Client,
    base: &str,
    (from, to, amount): (u32, u32, i64),
) -> TransactionResponse {
    http.post(format!("{base}/v1/transactions"))
        .json(&twopc_tests::reliability::bank_ledger_transfer(
            from.into(),
            to.into(),
            amount,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Money is conserved over the bank's shards, every account's row is on the shard the ring
/// names (and on no other), and every Redis key equals its row.
fn assert_consistent(stack: &ShardedStack) {
    let rows = stack.pg_balances().unwrap();
    let ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=stack.accounts).collect::<Vec<_>>(), "{rows:?}");
    let total: i64 = rows.iter().map(|r| r.1).sum();
    assert_eq!(total, stack.initial_balance * i64::from(stack.accounts));
    for (id, balance, shard) in &rows {
        assert_eq!(ShardedStack::shard_of_row(&stack.bank_ring, *id), shard);
        assert_eq!(
            stack.redis_balance(*id).unwrap(),
            Some(*balance),
            "balance:{id} differs from its row"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_across_shards_commit_everywhere_and_a_shard_down_hurts_only_its_keys() {
    let mut stack = tokio::task::block_in_place(|| ShardedStack::start(&bins(), 2, 3, 12))
        .expect("start the sharded stack");
    let base = stack.coordinator_url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Each shard is a participant of its own.
    let list: Vec<ParticipantStatus> = http
        .get(format!("{base}/v1/participants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bank/pg1",
            "bank/pg2",
            "ledger/r1",
            "ledger/r2",
            "ledger/r3"
        ]
    );
    assert!(list.iter().all(|p| p.connected), "{list:?}");
    tokio::task::block_in_place(|| assert_consistent(&stack));
    let rows = tokio::task::block_in_place(|| stack.pg_balances().unwrap());
    assert!(
        rows.iter().any(|r| r.2 == "pg1") && rows.iter().any(|r| r.2 == "pg2"),
        "both bank shards hold accounts: {rows:?}"
    );

    // Accounts whose rows and keys are on different shards.
    let row_shard = |id: u32| ShardedStack::shard_of_row(&stack.bank_ring, id).to_owned();
    let key_shard = |id: u32| {
        stack
            .ledger_ring
            .route_redis(&format!("balance:{id}"))
            .to_owned()
    };
    let (a, b) = (1..=12)
        .flat_map(|a| (1..=12).map(move |b| (a, b)))
        .find(|&(a, b)| row_shard(a) != row_shard(b) && key_shard(a) != key_shard(b))
        .expect("12 accounts spread over the shards");
    let r = transfer(&http, &base, (a, b, 7)).await;
    assert_eq!(r.outcome, Outcome::Committed, "{r:?}");
    tokio::task::block_in_place(|| assert_consistent(&stack));

    // The load generator, unchanged, against the sharded participants.
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(bins().coordinator)
            .args([
                "load",
                "--url",
                &base,
                "-n",
                "150",
                "-c",
                "4",
                "--accounts",
                "12",
            ])
            .arg("--quiet")
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::task::block_in_place(|| assert_consistent(&stack));

    // reshard --plan: exactly the keys and rows the ring with a fourth (third) shard gives the
    // new shard, each listed with where it is now.
    let plan = |participant: &str, add: &str, data: Vec<String>, extra: &[&str]| {
        let mut cmd = std::process::Command::new(bins().coordinator);
        cmd.args(["reshard", "--plan", "--config"])
            .arg(&stack.config_path)
            .args(["--participant", participant, "--add", add])
            .args(extra);
        for d in data {
            cmd.arg("--data").arg(d);
        }
        let out = tokio::task::block_in_place(|| cmd.output().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("misplaced"), "{stderr}");
        let mut moves: Vec<(String, String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
            })
            .collect();
        moves.sort();
        (moves, stderr)
    };
    let redis_data: Vec<String> = stack
        .ledger
        .iter()
        .map(|l| format!("{}={}", l.name, l.redis.url()))
        .collect();
    // No --match: the participants' own keys (twopc:*) must be left out by the plan itself.
    let (moves, summary) = plan("ledger", "r4", redis_data, &[]);
    let with_r4 = twopc_protocol::shard::Ring::new(&["r1", "r2", "r3", "r4"]).unwrap();
    let mut want: Vec<(String, String, String)> = (1..=12)
        .map(|id| format!("balance:{id}"))
        .filter(|k| with_r4.route_redis(k) == "r4")
        .map(|k| {
            let from = stack.ledger_ring.route_redis(&k).to_owned();
            (k, from, "r4".to_owned())
        })
        .collect();
    want.sort();
    assert!(!want.is_empty(), "some key moves to r4");
    assert_eq!(moves, want, "{summary}");
    assert!(summary.contains(&format!(
        "{} of 12 keys of ledger would move to r4",
        want.len()
    )));
    let pg_data: Vec<String> = stack
        .bank
        .iter()
        .map(|b| format!("{}={}", b.name, b.pg.url("bank")))
        .collect();
    let (moves, summary) = plan(
        "bank",
        "pg3",
        pg_data,
        &["--table", "accounts", "--column", "id"],
    );
    let with_pg3 = twopc_protocol::shard::Ring::new(&["pg1", "pg2", "pg3"]).unwrap();
    let mut want: Vec<(String, String, String)> = (1..=12u32)
        .filter(|&id| ShardedStack::shard_of_row(&with_pg3, id) == "pg3")
        .map(|id| (id.to_string(), row_shard(id), "pg3".to_owned()))
        .collect();
    want.sort();
    assert!(!want.is_empty(), "some row moves to pg3");
    assert_eq!(moves, want, "{summary}");

    // What cannot be routed is refused, with a reason.
    for (body, code, says) in [
        (
            serde_json::json!({"participants": {"bank": {"sql": [
                {"query": "UPDATE accounts SET balance = balance WHERE id = 1"}]}}}),
            "shard_key",
            "needs a \"shard_key\"",
        ),
        (
            serde_json::json!({"participants": {"ledger/r1": {"redis": [
                {"op": "set", "key": "k", "value": "v"}]}}}),
            "unknown_participant",
            "name its participant (ledger)",
        ),
    ] {
        let r = http
            .post(format!("{base}/v1/transactions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"], code, "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }

    // One ledger shard down: transfers that do not touch it commit, one that does aborts.
    let down = stack.ledger[2].name.clone();
    stack.ledger[2].participant.kill9();
    let on = |shard: &str| {
        (1..=12)
            .filter(|&id| key_shard(id) == shard)
            .collect::<Vec<_>>()
    };
    let elsewhere: Vec<u32> = (1..=12).filter(|&id| key_shard(id) != down).collect();
    let there = on(&down);
    assert!(
        elsewhere.len() >= 2 && !there.is_empty(),
        "{elsewhere:?} {there:?}"
    );
    let r = transfer(&http, &base, (elsewhere[0], elsewhere[1], 3)).await;
    assert_eq!(r.outcome, Outcome::Committed, "{r:?}");
    let r = transfer(&http, &base, (there[0], elsewhere[0], 3)).await;
    assert_eq!(r.outcome, Outcome::Aborted, "{r:?}");
    tokio::task::block_in_place(|| assert_consistent(&stack));

    // Back up: it commits again.
    stack.ledger[2].participant.start().unwrap();
    tokio::task::block_in_place(|| stack.wait_connected(5, Duration::from_secs(30))).unwrap();
    let r = transfer(&http, &base, (there[0], elsewhere[0], 3)).await;
    assert_eq!(r.outcome, Outcome::Committed, "{r:?}");
    tokio::task::block_in_place(|| assert_consistent(&stack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_killed_in_doubt_commits_when_it_returns() {
    let mut stack = tokio::task::block_in_place(|| ShardedStack::start(&bins(), 1, 2, 8))
        .expect("start the sharded stack");
    let base = stack.coordinator_url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let key_shard = |id: u32| {
        stack
            .ledger_ring
            .route_redis(&format!("balance:{id}"))
            .to_owned()
    };
    let from = (1..=8)
        .find(|&id| key_shard(id) == "r2")
        .expect("a key on r2");
    let to = (1..=8)
        .find(|&id| key_shard(id) == "r1")
        .expect("a key on r1");
    let victim = stack
        .ledger
        .iter()
        .position(|l| l.name == "r1")
        .expect("shard r1");

    // Branches are prepared in name order (ordered_prepare): r1 votes yes, then r2's Prepare
    // is held back, so the decision waits; r1 is killed in that window and is down when the
    // Commit goes out.
    let r = http
        .post(format!("{base}/v1/faults"))
        .body(r#"{"fault":"delay_next","participant":"ledger/r2","ms":1500,"msg_type":"prepare"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let submit = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move { transfer(&http, &base, (from, to, 9)).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack.ledger[victim].participant.kill9();
    let answer = submit.await.unwrap();
    assert_eq!(answer.outcome, Outcome::Committed, "{answer:?}");
    // Committed, but not yet on r1, which is down with the transaction prepared.
    let pending = tokio::task::block_in_place(|| stack.redis_balance(to).unwrap());
    assert_eq!(
        pending,
        Some(stack.initial_balance),
        "r1 has not committed yet"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.ledger[victim].participant.start().unwrap();
    // Back: it reports the transaction in doubt, is told to commit, and the stores agree.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let to_balance = tokio::task::block_in_place(|| stack.redis_balance(to).unwrap());
        if to_balance == Some(stack.initial_balance + 9) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "balance:{to} on the returned shard is {to_balance:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| assert_consistent(&stack));
    // The reliability suite's invariant checker over the shards: nothing in doubt on any of
    // them, money conserved, the transfer's effects replayed, atomic and told truthfully.
    use twopc_tests::invariants::{check, CheckOptions, Told, TxRecord};
    let record = TxRecord::transfer(
        answer.id.as_str(),
        Told::Committed,
        from.into(),
        to.into(),
        9,
    );
    let report = tokio::task::block_in_place(|| check(&stack, &[record], &CheckOptions::default()));
    assert!(report.ok(), "{report}");
}
