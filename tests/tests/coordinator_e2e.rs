//! The coordinator end to end: a real coordinator process, real redis-servers, real
//! participant servers over WebSockets.
//!
//! Two Redis participants, `ledger` and `vault`, each over its own redis-server, play the two
//! resources of a transfer (the Postgres participant has its own suite). The coordinator runs
//! as a child process (`twopc-coordinator-under-test`, the real entry point) so it can be
//! killed with SIGKILL or stopped by a failpoint at an exact protocol step, then restarted on
//! the same data directory. Waits are "until it happens, or fail after a generous deadline";
//! nothing asserts speed.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_commits_on_both_and_is_idempotent() {
    let (ledger, vault, coord) = setup().await;
    let (status, resp) = coord.post(&transfer("t1", 10, None)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outcome"], "committed", "{resp}");
    assert!(resp["timings"]["total_ms"].as_f64().is_some());
    assert_eq!(ledger.get("ledger:a").await.as_deref(), Some("-10"));
    assert_eq!(vault.get("vault:b").await.as_deref(), Some("10"));

    // Same id, same body: the recorded outcome, nothing applied twice.
    let (status, again) = coord.post(&transfer("t1", 10, None)).await;
    assert_eq!(
        (status, again["outcome"].clone()),
        (200, json!("committed"))
    );
    assert_eq!(ledger.get("ledger:a").await.as_deref(), Some("-10"));
    // Same id, different body: refused.
    let (status, err) = coord.post(&transfer("t1", 99, None)).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "id_conflict");

    let r = reqwest::get(format!("{}/v1/transactions/t1", coord.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["outcome"], "committed");
    let r = reqwest::get(format!("{}/v1/transactions/nope", coord.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let metrics = reqwest::get(format!("{}/metrics", coord.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("twopc_transactions_committed_total 1"),
        "{metrics}"
    );
    // OpenMetrics text (prometheus-client puts `le` before the family's own labels).
    assert!(
        metrics.lines().any(
            |l| l.starts_with("twopc_phase_seconds_bucket{") && l.contains("phase=\"prepare\"")
        ),
        "{metrics}"
    );
    eventually(10, "no prepared state left", || async {
        ledger.prepared_state().await.is_empty() && vault.prepared_state().await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_vote_aborts_everywhere() {
    let (ledger, vault, coord) = setup().await;
    let (status, resp) = coord
        .post(&transfer("t-no", 5, Some("never-matches")))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outcome"], "aborted", "{resp}");
    let reason = resp["reason"].as_str().unwrap();
    assert!(reason.contains("vault voted no"), "{reason}");
    // A failed guard: another attempt would fail the same way.
    assert_eq!(resp["abort_class"], "final", "{resp}");
    eventually(10, "ledger rolled back, nothing prepared", || async {
        ledger.prepared_state().await.is_empty() && vault.prepared_state().await.is_empty()
    })
    .await;
    assert_eq!(ledger.get("ledger:a").await, None);
    assert_eq!(vault.get("vault:flag").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_timeout_aborts_and_the_late_prepare_is_rolled_back() {
    let (ledger, vault, coord) = setup().await;
    // vault's Prepare arrives 3 s late; the prepare timeout is 1.5 s.
    coord.fault(json!({"fault": "delay_next", "participant": "vault", "ms": 3000, "msg_type": "prepare"})).await;
    let (status, resp) = coord.post(&transfer("t-slow", 7, None)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outcome"], "aborted", "{resp}");
    assert!(
        resp["reason"].as_str().unwrap().contains("prepare timeout"),
        "{resp}"
    );
    // The late Prepare does reach vault and prepares; its YES gets an Abort.
    tokio::time::sleep(Duration::from_secs(3)).await;
    eventually(15, "nothing left prepared anywhere", || async {
        ledger.prepared_state().await.is_empty() && vault.prepared_state().await.is_empty()
    })
    .await;
    assert_eq!(vault.get("vault:b").await, None);
    assert_eq!(ledger.get("ledger:a").await, None);
}

/// Starts a coordinator armed with `failpoint`, submits `body`, and waits until the failpoint
/// kills the process; the client must get no answer. Returns the stopped coordinator.
async fn crash_at(
    ledger: &Participant,
    vault: &Participant,
    failpoint: &str,
    body: Value,
) -> Coordinator {
    let mut coord = Coordinator::start(ledger, vault, "");
    coord.kill9();
    coord.spawn(&[failpoint]);
    coord.wait_connected().await;
    let url = coord.url.clone();
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/transactions"))
            .json(&body)
            .send()
            .await
    });
    assert!(
        coord.wait_crash(Duration::from_secs(20)),
        "the failpoint {failpoint} did not fire"
    );
    assert!(
        post.await.unwrap().is_err(),
        "the client must get no answer from a dead coordinator"
    );
    coord
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_after_the_commit_is_durable_commits_both_after_restart() {
    let ledger = Participant::start("ledger", TOKEN_LEDGER).await;
    let vault = Participant::start("vault", TOKEN_VAULT).await;
    let mut coord = crash_at(
        &ledger,
        &vault,
        "after_commit_log",
        transfer("t-crash", 3, None),
    )
    .await;
    // Both hold it prepared; nothing applied yet.
    assert!(!ledger.prepared_state().await.is_empty());
    assert!(!vault.prepared_state().await.is_empty());
    assert_eq!(ledger.get("ledger:a").await, None);

    coord.spawn(&[]);
    eventually(20, "both committed after recovery", || async {
        ledger.get("ledger:a").await.as_deref() == Some("-3")
            && vault.get("vault:b").await.as_deref() == Some("3")
    })
    .await;
    let shown: Value = reqwest::get(format!("{}/v1/transactions/t-crash", coord.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["outcome"], "committed", "{shown}");
    eventually(10, "nothing left prepared", || async {
        ledger.prepared_state().await.is_empty() && vault.prepared_state().await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_before_the_decision_aborts_both_after_restart() {
    let ledger = Participant::start("ledger", TOKEN_LEDGER).await;
    let vault = Participant::start("vault", TOKEN_VAULT).await;
    let mut coord = crash_at(
        &ledger,
        &vault,
        "before_commit_log",
        transfer("t-undecided", 4, None),
    )
    .await;
    assert!(
        !ledger.prepared_state().await.is_empty(),
        "ledger should hold it prepared"
    );

    coord.spawn(&[]);
    eventually(20, "both rolled back (presumed abort)", || async {
        ledger.prepared_state().await.is_empty() && vault.prepared_state().await.is_empty()
    })
    .await;
    assert_eq!(ledger.get("ledger:a").await, None);
    assert_eq!(vault.get("vault:b").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_down_during_phase_two_commits_when_it_returns() {
    let (ledger, mut vault, coord) = setup().await;
    // Hold vault's Commit back long enough to take vault down before it arrives.
    coord.fault(json!({"fault": "delay_next", "participant": "vault", "ms": 1500, "msg_type": "commit"})).await;
    let url = coord.url.clone();
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/transactions"))
            .json(&transfer("t-down", 6, None))
            .send()
            .await
    });
    eventually(10, "ledger committed", || async {
        ledger.get("ledger:a").await.as_deref() == Some("-6")
    })
    .await;
    vault.stop().await;
    // The decision is durable: the client hears committed although vault has not acked.
    let resp: Value = post.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(resp["outcome"], "committed", "{resp}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        vault.get("vault:b").await,
        None,
        "vault cannot have committed while down"
    );
    assert!(
        !vault.prepared_state().await.is_empty(),
        "vault must still hold it prepared"
    );
    vault.restart().await;
    eventually(20, "vault committed after it came back", || async {
        vault.get("vault:b").await.as_deref() == Some("6")
    })
    .await;
    eventually(10, "nothing left prepared", || async {
        vault.prepared_state().await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_input_gets_clear_json_errors() {
    let (_ledger, _vault, coord) = setup().await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed_json"),
        (b"[]".to_vec(), 400, "invalid_request"),
        (
            br#"{"participants": {}}"#.to_vec(),
            400,
            "empty_transaction",
        ),
        (
            br#"{"participants": {"nobody": {"redis": []}}}"#.to_vec(),
            400,
            "unknown_participant",
        ),
        (
            br#"{"participants": {"ledger": {"sql": [{"query": "select 1"}]}}}"#.to_vec(),
            400,
            "wrong_operations",
        ),
        (
            br#"{"id": "", "participants": {"ledger": {"redis": []}}}"#.to_vec(),
            400,
            "bad_id",
        ),
        (
            format!(
                r#"{{"id": "{}", "participants": {{"ledger": {{"redis": []}}}}}}"#,
                "x".repeat(200)
            )
            .into_bytes(),
            400,
            "bad_id",
        ),
        (
            br#"{"id": "a\u0001b", "participants": {"ledger": {"redis": []}}}"#.to_vec(),
            400,
            "bad_id",
        ),
        (
            br#"{"participants": {"ledger": {"redis": [{"op": "flushall"}]}}}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            br#"{"participants": {"ledger": {"redis": []}}, "extra": 1}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (vec![b' '; 2 * 1024 * 1024], 413, "payload_too_large"),
    ];
    for (body, want_status, want_code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (status, err) = coord.post_raw(body).await;
        assert_eq!(status, want_status, "{preview}: {err}");
        assert_eq!(err["error"], want_code, "{preview}: {err}");
        assert!(
            !err["message"].as_str().unwrap_or("").is_empty(),
            "{preview}: {err}"
        );
    }
    // The coordinator is fine afterwards.
    let (status, resp) = coord.post(&transfer("after-bad-input", 1, None)).await;
    assert_eq!(
        (status, resp["outcome"].clone()),
        (200, json!("committed")),
        "{resp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_participant_uses_one_phase_commit() {
    let (ledger, _vault, coord) = setup().await;
    // Everything the coordinator does for "solo", until its end.
    let events = watch_events(
        &coord.url,
        |v| v["txid"] == "solo",
        |s| s.iter().any(|v| v["kind"] == "tx_end"),
    )
    .await;
    let body = json!({"id": "solo", "participants": {"ledger": {"redis": [{"op": "set", "key": "ledger:solo", "value": "v"}]}}});
    let (status, resp) = coord.post(&body).await;
    assert_eq!(
        (status, resp["outcome"].clone()),
        (200, json!("committed")),
        "{resp}"
    );
    assert_eq!(ledger.get("ledger:solo").await.as_deref(), Some("v"));
    let events = events.await.unwrap();
    let sent: Vec<&str> = events
        .iter()
        .filter(|v| v["kind"] == "message_sent")
        .filter_map(|v| v["msg_type"].as_str())
        .collect();
    // One phase: CommitOnePhase only (re-sent if its answer is slow under load), no Prepare,
    // no Commit, and nothing written to the decision log (no forced COMMIT record, no fsync
    // the client waits for).
    assert!(
        !sent.is_empty() && sent.iter().all(|t| *t == "commit_one_phase"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|v| v["kind"] == "log_write"),
        "{events:#?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", coord.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("twopc_transactions_committed_total 1"),
        "{metrics}"
    );
    let guarded = json!({"id": "solo-no", "participants": {"ledger": {"redis": [
        {"op": "set", "key": "ledger:solo", "value": "w", "guard": {"expect": "not-v"}}]}}});
    let (_, resp) = coord.post(&guarded).await;
    assert_eq!(resp["outcome"], "aborted", "{resp}");
    assert_eq!(ledger.get("ledger:solo").await.as_deref(), Some("v"));
}

/// Connects to the event stream and collects, from now on, the events `keep` selects, until
/// `enough` says so or 20 s pass (heartbeats keep the stream busy, so silence never comes).
async fn watch_events(
    url: &str,
    keep: impl Fn(&Value) -> bool + Send + 'static,
    enough: impl Fn(&[Value]) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Value>> {
    use futures_util::StreamExt;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/v1/events", url.replace("http://", "ws://")))
            .await
            .unwrap();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !enough(&seen) {
            let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await else {
                break;
            };
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("")).unwrap_or(Value::Null);
            if keep(&v) {
                seen.push(v);
            }
        }
        seen
    })
}

/// The `heuristic` events from now on, until `want` of them (or 20 s).
async fn watch_heuristics(url: &str, want: usize) -> tokio::task::JoinHandle<Vec<Value>> {
    watch_events(url, |v| v["kind"] == "heuristic", move |s| s.len() >= want).await
}

/// An operator (here: another client of the vault participant, with its token) rolls the
/// vault's prepared branch back while the coordinator's COMMIT to it is delayed: the vault
/// acknowledges the COMMIT with `conflict`. Ledger committed, vault did not, and the client,
/// the lookup, the event stream and the metrics all say so: `heuristic_mixed`, never a plain
/// `committed`. A second one whose client was answered before the conflict arrived shows it
/// on lookup, also after a coordinator restart (the END record keeps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_acknowledged_conflict_is_a_heuristic_outcome() {
    use twopc_protocol::{Message, TxId};
    use twopc_tests::wire_client::WireClient;
    let (ledger, vault, mut coord) = setup().await;
    let events = watch_heuristics(&coord.url, 2).await;
    let mut operator = WireClient::connect(vault.addr, Some(vault.token))
        .await
        .unwrap();

    // The client is answered after every ack, or after ack_wait_ms (1 s in the harness).
    // "h-mixed": the COMMIT to vault is held back 600 ms, and the conflict is in the answer.
    // "h-late": vault is also cut off once COMMIT is decided, so the client is answered
    // "committed" first; the conflict arrives after the heal and shows on lookup.
    for (id, told_at_once) in [("h-mixed", true), ("h-late", false)] {
        coord
            .fault(json!({"fault": "delay_next", "participant": "vault", "ms": 600, "msg_type": "commit"}))
            .await;
        let url = coord.url.clone();
        let body = transfer(id, 7, None);
        let client = tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/transactions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
        let lookup = || async {
            reqwest::get(format!("{}/v1/transactions/{id}", coord.url))
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)
        };
        if !told_at_once {
            // Decided (the lookup says committed while delivering): cut the vault off.
            eventually(5, "commit decided", || async {
                lookup().await["outcome"] == "committed"
            })
            .await;
            coord
                .fault(json!({"fault": "partition", "participant": "vault"}))
                .await;
        }
        // Once the vault holds it prepared, the operator forces it back.
        eventually(5, "vault prepared", || async {
            !vault.prepared_state().await.is_empty()
        })
        .await;
        let ack = operator
            .request(Message::Abort {
                txid: TxId::new(id).unwrap(),
                reason: Some("operator: heuristic rollback".into()),
                coordinator: None,
                epoch: None,
            })
            .await;
        assert!(matches!(ack, Message::Ack { .. }), "{ack:?}");
        let (status, resp) = client.await.unwrap();
        assert_eq!(status, 200, "{resp}");
        let shown = if told_at_once {
            resp
        } else {
            assert_eq!(
                resp["outcome"], "committed",
                "answered before the conflict: {resp}"
            );
            coord
                .fault(json!({"fault": "heal", "participant": "vault"}))
                .await;
            eventually(10, "the lookup shows the heuristic", || async {
                lookup().await["outcome"] == "heuristic_mixed"
            })
            .await;
            lookup().await
        };
        assert_eq!(shown["outcome"], "heuristic_mixed", "{shown}");
        assert_eq!(shown["decision"], "commit", "{shown}");
        assert_eq!(
            shown["heuristics"],
            json!([{"participant": "vault", "result": "conflict"}]),
            "{shown}"
        );
        assert_eq!(lookup().await["outcome"], "heuristic_mixed");
    }
    // Mixed indeed: ledger applied both transfers, vault neither.
    assert_eq!(ledger.get("ledger:a").await.as_deref(), Some("-14"));
    assert_eq!(vault.get("vault:b").await, None);
    let metrics = reqwest::get(format!("{}/metrics", coord.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("twopc_heuristic_hazards_total 2"),
        "{metrics}"
    );
    let seen = events.await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|e| e["participant"] == "vault" && e["result"] == "conflict"),
        "{seen:?}"
    );

    // Kept across a restart (the END record is written lazily: let it reach the disk).
    tokio::time::sleep(Duration::from_millis(500)).await;
    coord.spawn(&[]);
    coord.wait_connected().await;
    for id in ["h-mixed", "h-late"] {
        let v: Value = reqwest::get(format!("{}/v1/transactions/{id}", coord.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["outcome"], "heuristic_mixed", "{id} after restart: {v}");
        assert_eq!(v["heuristics"][0]["participant"], "vault", "{v}");
    }
}
