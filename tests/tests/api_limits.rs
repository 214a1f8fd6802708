//! The client API's limits and edges, end to end against a real coordinator process and two
//! real Redis participants (the harness in `support/`): generated ids cannot be claimed by
//! clients, a transaction with nothing to do is answered at once, unknown paths and bad ids
//! get the JSON error format, duplicate JSON keys are refused, a body whose Prepare would be
//! over the participants' frame limit is refused with 413 before anything is sent (and an
//! unrelated transaction in flight is not hurt), and the `/v1/events` stream is bounded.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use twopc_coordinator::api::MAX_BODY_BYTES;
use twopc_protocol::{encode_frame, Frame, Message, MAX_FRAME_BYTES};

async fn get(url: &str) -> (u16, String, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await.unwrap_or_default();
    (
        status,
        ctype,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// A client may not pick an id from the generated namespace; generated ids come from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_ids_cannot_be_claimed_by_clients() {
    let (ledger, _vault, coord) = setup().await;
    // What a client would do to block the next generated ids: claim them first.
    for id in ["~c1-1-0", "~", "~anything"] {
        let mut body = transfer("x", 1, None);
        body["id"] = json!(id);
        let (status, err) = coord.post(&body).await;
        assert_eq!(status, 400, "{id}: {err}");
        assert_eq!(err["error"], "reserved_id", "{id}: {err}");
    }
    assert_eq!(ledger.get("ledger:a").await, None, "nothing ran");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let mut body = transfer("x", 1, None);
        body.as_object_mut().unwrap().remove("id");
        let (status, resp) = coord.post(&body).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["outcome"], "committed", "{resp}");
        let id = resp["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with('~'), "generated id {id}");
        // Looked up by its id (a `~` needs no escaping in a path).
        let (s, _, shown) = get(&format!("{}/v1/transactions/{id}", coord.url)).await;
        assert_eq!((s, shown["outcome"].clone()), (200, json!("committed")));
        assert!(seen.insert(id));
    }
    // An id that merely contains the character is the client's own.
    let (status, resp) = coord.post(&transfer("mine~1", 1, None)).await;
    assert_eq!((status, resp["outcome"].clone()), (200, json!("committed")));
}

/// Every participant has nothing to do: every vote is read-only, the transaction is decided
/// at once, and the client hears so at once (it used to get a 202 after the client timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_nothing_to_do_is_answered_at_once() {
    let (_ledger, _vault, coord) = setup().await;
    let t0 = Instant::now();
    let (status, resp) = coord
        .post(&json!({"id": "empty-ops", "participants": {
            "ledger": {"redis": []}, "vault": {"redis": []}}}))
        .await;
    let took = t0.elapsed();
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outcome"], "committed", "{resp}");
    // The harness's client timeout is 20 s; the decision takes milliseconds.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let (s, _, shown) = get(&format!("{}/v1/transactions/empty-ops", coord.url)).await;
    assert_eq!((s, shown["outcome"].clone()), (200, json!("committed")));
}

/// Requests no handler takes get the API's JSON error, not the web app's index.html or
/// axum's plain-text rejections; the web app is still served where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_bad_ids_get_json_errors() {
    let ledger = Participant::start("ledger", TOKEN_LEDGER).await;
    let vault = Participant::start("vault", TOKEN_VAULT).await;
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>twopc</title>",
    )
    .unwrap();
    let coord = Coordinator::start(
        &ledger,
        &vault,
        &format!("web_dir = \"{}\"\n", web.path().display()),
    );
    coord.wait_connected().await;
    for (path, want_status, want_code) in [
        ("/v1/transactions/", 404, "not_found"),
        ("/v1/transactions/a/b", 404, "not_found"),
        ("/v1/nothing-here", 404, "not_found"),
        ("/v1/", 404, "not_found"),
        ("/v1/transactions/%ff", 400, "bad_id"),
        ("/v1/transactions/%C3%28", 400, "bad_id"),
        ("/v1/transactions", 405, "method_not_allowed"),
        ("/v1/faults", 405, "method_not_allowed"),
    ] {
        let (status, ctype, body) = get(&format!("{}{path}", coord.url)).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
        assert_eq!(body["error"], want_code, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The web app and its client-side routes are still served.
    for path in ["/", "/some/app/route"] {
        let (status, ctype, _) = get(&format!("{}{path}", coord.url)).await;
        assert_eq!(status, 200, "{path}");
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
    }
}

/// A body in which some object repeats a key is refused: it can be read two ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_are_refused() {
    let (ledger, vault, coord) = setup().await;
    let bodies = [
        r#"{"id":"dup-1","id":"dup-2","participants":{"ledger":{"redis":[{"op":"incrby","key":"ledger:a","by":-1}]},"vault":{"redis":[{"op":"incrby","key":"vault:b","by":1}]}}}"#,
        r#"{"id":"dup-3","participants":{"ledger":{"redis":[{"op":"incrby","key":"ledger:a","by":-1}]},"ledger":{"redis":[]},"vault":{"redis":[{"op":"incrby","key":"vault:b","by":1}]}}}"#,
        r#"{"id":"dup-4","participants":{"ledger":{"redis":[{"op":"incrby","key":"ledger:a","by":-1,"by":-100}]},"vault":{"redis":[{"op":"incrby","key":"vault:b","by":1}]}}}"#,
    ];
    for b in bodies {
        let (status, err) = coord.post_raw(b.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "{b}: {err}");
        assert_eq!(err["error"], "duplicate_key", "{b}: {err}");
        assert!(err["message"].as_str().unwrap().contains("column"), "{err}");
    }
    assert_eq!(ledger.get("ledger:a").await, None, "nothing ran");
    assert_eq!(vault.get("vault:b").await, None, "nothing ran");
}

/// A request body exactly `MAX_BODY_BYTES` long whose message to `ledger`, with the frame's
/// envelope (version, request id, type, coordinator, timeout), is over the participants'
/// frame limit. With `with_vault` the vault takes part with nothing to do (the frame to
/// ledger must carry nearly the whole body), without it ledger alone gets CommitOnePhase.
fn oversized_body(id: &str, with_vault: bool) -> Vec<u8> {
    let make = |n: usize| {
        let mut parts = json!({"ledger": {"redis": [{"op": "set", "key": "ledger:big", "value": "x".repeat(n)}]}});
        if with_vault {
            parts["vault"] = json!({"redis": []});
        }
        serde_json::to_vec(&json!({"id": id, "participants": parts})).unwrap()
    };
    let overhead = make(0).len();
    let body = make(MAX_BODY_BYTES - overhead);
    assert_eq!(body.len(), MAX_BODY_BYTES);
    // The premise: the frame the coordinator would send is over the limit.
    let req: twopc_protocol::api::TransactionRequest = serde_json::from_slice(&body).unwrap();
    let ops = req.participants[&"ledger".parse().unwrap()].clone();
    let (txid, coordinator) = (req.id.unwrap(), "c1".parse().unwrap());
    let msg = if with_vault {
        Message::Prepare {
            txid,
            coordinator,
            ops,
            timeout_ms: Some(1500),
        }
    } else {
        Message::CommitOnePhase {
            txid,
            coordinator,
            ops,
        }
    };
    let frame = encode_frame(&Frame::new(1, msg));
    assert!(frame.len() > MAX_FRAME_BYTES, "{} bytes", frame.len());
    body
}

/// The body is within the body limit, but the message it becomes is not within the frame
/// limit: refused with 413 before anything is sent, and a transaction in flight at the same
/// participant still commits (it used to abort: the participant closed the connection on the
/// oversized frame, 1009, and every transaction waiting for its vote went with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_prepare_is_over_the_frame_limit_is_refused_with_413() {
    let (ledger, vault, coord) = setup().await;
    // An unrelated transaction in flight: its Prepare to ledger is held back for a second.
    coord
        .fault(json!({"fault": "delay_next", "participant": "ledger", "ms": 1000, "msg_type": "prepare"}))
        .await;
    let url = coord.url.clone();
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/transactions"))
            .json(&transfer("in-flight", 3, None))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (id, with_vault) in [("big-2pc", true), ("big-1pc", false)] {
        let body = oversized_body(id, with_vault);
        let (status, err) = coord.post_raw(body).await;
        assert_eq!(status, 413, "{id}: {err}");
        assert_eq!(err["error"], "frame_too_large", "{id}: {err}");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains("ledger") && msg.contains(&MAX_FRAME_BYTES.to_string()),
            "{msg}"
        );
        // Refused, not recorded: the id is unknown.
        let (s, _, _) = get(&format!("{}/v1/transactions/{id}", coord.url)).await;
        assert_eq!(s, 404, "{id}");
    }
    let (status, resp) = in_flight.await.unwrap();
    assert_eq!(
        (status, resp["outcome"].clone()),
        (200, json!("committed")),
        "{resp}"
    );
    assert_eq!(ledger.get("ledger:a").await.as_deref(), Some("-3"));
    assert_eq!(vault.get("vault:b").await.as_deref(), Some("3"));
    assert_eq!(ledger.get("ledger:big").await, None);
    // The connection never dropped.
    let metrics = reqwest::get(format!("{}/metrics", coord.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("twopc_transactions_aborted_total 0"),
        "{metrics}"
    );
}
