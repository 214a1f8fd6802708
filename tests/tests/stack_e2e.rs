//! The whole product end to end: coordinator process, PostgreSQL with pg_twopc_ext's worker as
//! the `bank` participant, the Redis participant process as `ledger` — a bank transfer in both
//! stores, atomically, including NO votes from each side and the CLI's load generator.

use serde_json::{json, Value};
use std::process::Command;
use twopc_tests::stack::{Binaries, Stack, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

fn redis_get(stack: &Stack, key: &str) -> Option<i64> {
    let out = Command::new("redis-cli")
        .args(["-p", &stack.redis.port().to_string(), "GET", key])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

async fn post(stack: &Stack, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/v1/transactions", stack.coordinator_url))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn transfer(from: u32, to: u32, amount: i64) -> Value {
    serde_json::to_value(twopc_tests::reliability::bank_ledger_transfer(
        from.into(),
        to.into(),
        amount,
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_are_atomic_across_postgres_and_redis() {
    let stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 4,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    // No participant token on any command line (`ps` shows those to every user).
    let shown = stack.command_lines_showing_tokens();
    assert!(shown.is_empty(), "tokens on command lines: {shown:#?}");

    let r = post(&stack, &transfer(1, 2, 30)).await;
    assert_eq!(r["outcome"], "committed", "{r}");
    assert_eq!(
        stack.pg_balances().unwrap(),
        vec![(1, 70), (2, 130), (3, 100), (4, 100)]
    );
    assert_eq!(
        (
            redis_get(&stack, "balance:1"),
            redis_get(&stack, "balance:2")
        ),
        (Some(70), Some(130))
    );
    // The prepared transaction was tracked and finished by the coordinator path.
    let id = r["id"].as_str().unwrap();
    let via = stack
        .pg
        .psql_ok(
            "bank",
            &format!("SELECT decision || ' ' || via FROM twopc.history WHERE global_id = '{id}'"),
        )
        .unwrap();
    assert_eq!(via, "commit coordinator");

    // Postgres votes NO (the CHECK constraint forbids an overdraft): nothing changes anywhere.
    let mut overdraft = transfer(3, 4, 500);
    overdraft["participants"]["ledger"]["redis"][0]["min"] = json!(null);
    let r = post(&stack, &overdraft).await;
    assert_eq!(r["outcome"], "aborted", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("bank voted no") && reason.contains("23514"),
        "{reason}"
    );
    assert_eq!(redis_get(&stack, "balance:3"), Some(100));
    assert_eq!(stack.pg_balances().unwrap()[2], (3, 100));

    // Redis votes NO (the min-0 guard): nothing changes anywhere.
    let mut guarded = transfer(4, 3, 50);
    guarded["participants"]["ledger"]["redis"][0]["by"] = json!(-1000);
    let r = post(&stack, &guarded).await;
    assert_eq!(r["outcome"], "aborted", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("ledger voted no"),
        "{r}"
    );
    assert_eq!(stack.pg_balances().unwrap()[3], (4, 100));
    assert_eq!(
        stack
            .pg
            .psql_ok("bank", "SELECT count(*) FROM pg_prepared_xacts")
            .unwrap(),
        "0"
    );

    // The CLI load generator over the same stack. One client: nothing conflicts, so every
    // transfer must commit (the load command exits non-zero otherwise).
    let load = |n: &str, clients: &str, accounts: &str, max_amount: &str, max_abort_rate: &str| {
        let out = Command::new(bins().coordinator)
            .args([
                "load",
                "--url",
                &stack.coordinator_url,
                "-n",
                n,
                "-c",
                clients,
                "--accounts",
                accounts,
                "--max-amount",
                max_amount,
                "--quiet",
                "--max-abort-rate",
                max_abort_rate,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text, err)
    };
    let (ok, text, err) = load("100", "1", "4", "10", "0");
    assert!(
        ok,
        "one client, no conflicts: every transfer commits\n{text}\n{err}"
    );
    assert!(text.contains("100 transactions"), "{text}");
    assert!(
        text.contains("committed") && !text.contains("aborted"),
        "{text}"
    );
    // The demo's load line, 16 clients on 2 accounts: every transfer touches both hot rows
    // and keys, and they wait for each other instead of aborting (at most 5 % may abort, and
    // the load command exits non-zero otherwise); both stores agree and money is conserved.
    // Amounts of 1, so that the random walk of two balances near 100 does not run one dry:
    // that abort (the CHECK constraint, a final NO) would be right, but is not contention.
    let (ok, text, err) = load("500", "16", "2", "1", "0.05");
    assert!(
        ok,
        "16 clients on 2 accounts commit nearly everything\n{text}\n{err}"
    );
    assert!(text.contains("500 transactions"), "{text}");
    println!("{text}");
    let pg = stack.pg_balances().unwrap();
    assert_eq!(pg.iter().map(|(_, b)| b).sum::<i64>(), 400, "{pg:?}");
    for (id, b) in &pg {
        assert_eq!(
            redis_get(&stack, &format!("balance:{id}")),
            Some(*b),
            "account {id}"
        );
    }
    let participants: Value = reqwest::get(format!("{}/v1/participants", stack.coordinator_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(participants.as_array().unwrap().len(), 2, "{participants}");
}

/// The reproduction from issue 12: a body of about 1,000,000 bytes of `1e15` parameters is
/// within the body limit, but each number is re-encoded as `1000000000000000.0`, so its
/// Prepare would be about 3.8 MB. It is refused with 413 before anything is sent; a transfer
/// in flight at the same participant meanwhile commits (it used to abort: the participant
/// closed the connection on the oversized frame, 1009).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_body_whose_prepare_outgrows_the_frame_limit_is_refused_with_413() {
    let stack = Stack::start(
        &bins(),
        StackOptions {
            accounts: 2,
            fault_injection: true,
            ..StackOptions::default()
        },
    )
    .expect("start the stack");
    let http = reqwest::Client::new();
    let faults = format!("{}/v1/faults", stack.coordinator_url);
    let r = http
        .post(&faults)
        .json(&json!({"fault": "delay_next", "participant": "bank", "ms": 1000, "msg_type": "prepare"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let url = format!("{}/v1/transactions", stack.coordinator_url);
    let in_flight = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            http.post(&url)
                .json(&transfer(1, 2, 5))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let params = vec!["1e15"; 199_990].join(",");
    let body = format!(
        r#"{{"id":"big-sql","participants":{{"bank":{{"sql":[{{"query":"SELECT 1","params":[{params}]}}]}},"ledger":{{"redis":[]}}}}}}"#
    );
    assert!(
        body.len() <= twopc_coordinator::api::MAX_BODY_BYTES,
        "{}",
        body.len()
    );
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let err: Value = r.json().await.unwrap();
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"], "frame_too_large", "{err}");
    assert!(err["message"].as_str().unwrap().contains("bank"), "{err}");

    let done = in_flight.await.unwrap();
    assert_eq!(done["outcome"], "committed", "{done}");
    assert_eq!(stack.pg_balances().unwrap(), vec![(1, 95), (2, 105)]);
    assert_eq!(redis_get(&stack, "balance:1"), Some(95));
    let r = http
        .get(format!("{}/v1/transactions/big-sql", stack.coordinator_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "refused, so unknown");
}
