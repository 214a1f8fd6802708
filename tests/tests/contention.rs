//! Concurrent transactions on the same rows and keys (issue 15): they wait for each other's
//! locks instead of aborting, a deadlock that runs through both stores is broken within a
//! fraction of a second, and the coordinator runs a transaction that lost a lock again, so
//! that the client sees it commit. Real processes: the coordinator, PostgreSQL with the
//! extension's participant worker, the Redis participant and redis-server.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use twopc_tests::invariants::{self, CheckOptions, Told, TxRecord};
use twopc_tests::stack::{Binaries, Stack, StackOptions};

/// The tests here measure timing-dependent interleavings: one at a time, so that they do not
/// slow each other down.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

async fn post(client: &reqwest::Client, coordinator_url: &str, body: &Value) -> (Told, Value) {
    let resp = client
        .post(format!("{coordinator_url}/v1/transactions"))
        .json(body)
        .send()
        .await;
    let Ok(resp) = resp else {
        return (Told::Unknown, Value::Null);
    };
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let told = match (status, body["outcome"].as_str()) {
        (200, Some("committed")) => Told::Committed,
        (200, Some("aborted")) => Told::Aborted,
        (202, _) => Told::Unknown,
        (s, _) if (400..500).contains(&s) => Told::Refused,
        (s, _) => Told::BadAnswer(s),
    };
    (told, body)
}

fn transfer(id: &str, from: u32, to: u32, amount: i64) -> Value {
    let mut body = serde_json::to_value(twopc_tests::reliability::bank_ledger_transfer(
        from.into(),
        to.into(),
        amount,
    ))
    .unwrap();
    body["id"] = json!(id);
    body
}

/// `clients` clients at once, each posting `each` transfers of 1 between accounts 1 and 2 one
/// after the other (alternating directions, so no balance runs out: a guard NO would be
/// final), txids `{prefix}-{client}-{k}`: what each was told, and the response.
async fn hot_transfers(url: &str, clients: u32, each: u32, prefix: &str) -> Vec<(TxRecord, Value)> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, prefix) = (client.clone(), url.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for k in 0..each {
                let (from, to): (u32, u32) = if (c + k) % 2 == 0 { (1, 2) } else { (2, 1) };
                let id = format!("{prefix}-{c}-{k}");
                let (told, body) = post(&client, &url, &transfer(&id, from, to, 1)).await;
                seen.push((
                    TxRecord::transfer(id, told, from.into(), to.into(), 1),
                    body,
                ));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a client task"));
    }
    all
}

/// The seeded balance of the two hot accounts: enough that no transfer of 1 runs one dry.
const HOT_BALANCE: i64 = 1_000;

/// Every invariant of the reliability suite over `records`, on a stack seeded with `initial`.
fn assert_invariants(stack: &Stack, records: &[TxRecord], initial: i64) {
    let opts = CheckOptions {
        initial_balance: initial,
        ..CheckOptions::default()
    };
    let report = invariants::check(stack, records, &opts);
    assert!(report.ok(), "{report}");
}

/// The attempts a response reports (1 when the field is absent).
fn attempts(body: &Value) -> u64 {
    body["attempts"].as_u64().unwrap_or(1)
}

/// 16 clients, 25 transfers each, all between the same two accounts, no client retries:
/// nearly all commit, money is conserved, the stores agree and nothing stays in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_on_two_accounts_commit_nearly_everything() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 2,
            initial_balance: HOT_BALANCE,
            prepare_timeout_ms: 5_000,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    let started = Instant::now();
    let seen = hot_transfers(&stack.coordinator_url, 16, 25, "hot").await;
    let (records, bodies): (Vec<TxRecord>, Vec<Value>) = seen.into_iter().unzip();
    let elapsed = started.elapsed();
    let committed = records.iter().filter(|r| r.told == Told::Committed).count();
    let total_attempts: u64 = bodies.iter().map(attempts).sum();
    let reasons: Vec<String> = bodies
        .iter()
        .filter(|b| b["outcome"] == "aborted")
        .map(|b| b["reason"].as_str().unwrap_or("?").to_string())
        .take(5)
        .collect();
    println!(
        "16 clients × 25 transfers on 2 accounts: {committed}/400 committed in {:.1} s, \
         {total_attempts} attempts; first abort reasons: {reasons:#?}",
        elapsed.as_secs_f64()
    );
    assert_invariants(&stack, &records, HOT_BALANCE);
    assert!(
        committed * 100 >= 95 * records.len(),
        "only {committed} of {} committed; first abort reasons: {reasons:#?}",
        records.len()
    );
}

/// How the coordinator sends a crossed pair's Prepares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PrepareOrder {
    /// `ordered_prepare = false`: every transaction's Prepares at once.
    AllAtOnce,
    /// `ordered_prepare = true`, `parallel_prepare_when_idle = false`: one at a time, always.
    Ordered,
    /// The defaults: T1 starts alone and is prepared all at once, T2 is held until T1 has
    /// voted everywhere, then prepared in order.
    Default,
}

/// A crossed pair, with the coordinator sending its Prepares all at once (`ordered_prepare =
/// false`): T1 takes Postgres rows 1 and 2 and then waits for the Redis keys, which T2 took
/// before waiting in Postgres for T1's rows. Neither store sees the cycle; the younger (T2)
/// gives way within the give-way time, the coordinator runs it again, and both commit, well
/// within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_across_the_stores_resolves_with_one_retry() {
    crossed_pair(PrepareOrder::AllAtOnce).await;
}

/// The same interleaving with every Prepare ordered: T2 is asked to prepare in Redis only
/// after Postgres, where it waits for T1; no cycle can form, T1 commits as soon as its Redis
/// Prepare arrives, and T2 right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_prepares_cannot_deadlock_across_the_stores() {
    crossed_pair(PrepareOrder::Ordered).await;
}

/// With the defaults, the crossed interleaving a lone transaction prepared all at once invites:
/// T1, alone, is prepared everywhere at once, but its Postgres Prepare arrives 40 ms late,
/// after it has taken the Redis keys. T2, submitted meanwhile, asked Postgres first, would
/// take the rows there and wait for T1's keys while T1 waits for its rows (a cycle only giving
/// way breaks: a retry). Held instead (it asks nobody until T1 has voted everywhere), it waits
/// for T1's rows in Postgres, and both commit with no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_held_behind_a_lone_parallel_one_cannot_deadlock_with_it() {
    crossed_pair(PrepareOrder::Default).await;
}

async fn crossed_pair(order: PrepareOrder) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let coordinator_settings = match order {
        PrepareOrder::AllAtOnce => vec![("ordered_prepare".into(), "false".into())],
        PrepareOrder::Ordered => vec![
            ("ordered_prepare".into(), "true".into()),
            ("parallel_prepare_when_idle".into(), "false".into()),
        ],
        PrepareOrder::Default => vec![],
    };
    let stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 2,
            coordinator_settings,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    let client = reqwest::Client::new();
    let faults = format!("{}/v1/faults", stack.coordinator_url);
    // All at once or ordered: T1's Prepare to the ledger arrives 40 ms late; by then T1 holds
    // the rows in Postgres and (prepared in parallel) T2 has taken the keys in Redis and waits
    // for T1's rows; T2 gives way 200 ms after it began to wait, so the cycle has formed
    // before it does. Default: T1's Prepare to the bank is the late one (above).
    let late = if order == PrepareOrder::Default {
        "bank"
    } else {
        "ledger"
    };
    let r = client
        .post(&faults)
        .json(&json!({"fault": "delay_next", "participant": late, "ms": 40, "msg_type": "prepare"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let started = Instant::now();
    let t1 = {
        let (client, stack_url) = (client.clone(), stack.coordinator_url.clone());
        tokio::spawn(async move {
            let r = client
                .post(format!("{stack_url}/v1/transactions"))
                .json(&transfer("crossed-1", 1, 2, 5))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        })
    };
    // Let T1 take its first locks before T2 starts (the rows; with the defaults the keys).
    tokio::time::sleep(Duration::from_millis(15)).await;
    let (told2, r2) = post(
        &client,
        &stack.coordinator_url,
        &transfer("crossed-2", 2, 1, 3),
    )
    .await;
    let r1 = t1.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(r1["outcome"], "committed", "{r1}");
    assert_eq!(told2, Told::Committed, "{r2}");
    if order != PrepareOrder::AllAtOnce {
        assert_eq!(
            (attempts(&r1), attempts(&r2)),
            (1, 1),
            "no retry: {r1} {r2}"
        );
    } else {
        assert_eq!(
            (attempts(&r1), attempts(&r2)),
            (1, 2),
            "exactly one retry: {r1} {r2}"
        );
    }
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    let records = vec![
        TxRecord::transfer("crossed-1", Told::Committed, 1, 2, 5),
        TxRecord::transfer("crossed-2", Told::Committed, 2, 1, 3),
    ];
    assert_invariants(&stack, &records, CheckOptions::default().initial_balance);
}

/// Transactions with the ledger as their only participant (one-phase) on the keys hot
/// transfers keep prepared: each waits in the Redis participant for the prepared holder, as a
/// Prepare does, and commits. (They used to abort at once: `key "balance:1" is locked by
/// prepared transaction ...`, never retried.) `INCRBY 0` writes, so it needs the key's lock,
/// and leaves the balances the transfers account for unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_phase_transactions_on_hot_keys_wait_and_commit() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 2,
            initial_balance: HOT_BALANCE,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    let url = stack.coordinator_url.clone();
    let load = tokio::spawn(async move { hot_transfers(&url, 8, 20, "hot").await });
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for k in 0..40 {
        let body = json!({
            "id": format!("single-{k}"),
            "participants": {"ledger": {"redis": [
                {"op": "incrby", "key": format!("balance:{}", 1 + k % 2), "by": 0}
            ]}},
        });
        answers.push(post(&client, &stack.coordinator_url, &body).await);
    }
    let mut records = Vec::new();
    for (rec, body) in load.await.unwrap() {
        assert_eq!(rec.told, Told::Committed, "{body}");
        records.push(rec);
    }
    for (told, body) in &answers {
        assert_eq!(
            *told,
            Told::Committed,
            "a one-phase transaction on a hot key: {body}"
        );
        assert_eq!(attempts(body), 1, "{body}");
    }
    assert_invariants(&stack, &records, HOT_BALANCE);
}

/// The Redis participant is killed (SIGKILL) while transactions wait in its queue for each
/// other's keys, and started again: every transaction ends with a clear answer, committed
/// (after a retry, if need be) or aborted with a reason; nothing stays in doubt, and the
/// stores agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_killed_while_transactions_wait_leaves_nothing_in_doubt() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 2,
            initial_balance: HOT_BALANCE,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    let url = stack.coordinator_url.clone();
    let load = tokio::spawn(async move { hot_transfers(&url, 8, 30, "killed").await });
    // Let the queues fill, then kill the ledger in the middle of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.ledger.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.ledger.start().expect("restart the Redis participant");
    let mut records = Vec::new();
    for (rec, body) in load.await.unwrap() {
        if rec.told == Told::Aborted {
            let reason = body["reason"].as_str().unwrap_or("");
            assert!(!reason.is_empty(), "an abort without a reason: {body}");
        }
        assert!(
            matches!(rec.told, Told::Committed | Told::Aborted),
            "{}: no clear answer: {body}",
            rec.txid
        );
        records.push(rec);
    }
    let committed = records.iter().filter(|r| r.told == Told::Committed).count();
    println!(
        "ledger killed under contention: {committed}/{} committed",
        records.len()
    );
    assert_invariants(&stack, &records, HOT_BALANCE);
    assert!(committed > 0);
}
