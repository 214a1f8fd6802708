//! The client API's limits and edges, end to end against a real coordinator process and two
//! real Redis participants (the harness in `support/`): generated ids cannot be claimed by
//! clients, a transaction with nothing to do is answered at once, unknown paths and bad ids
//! get the JSON error format, duplicate JSON keys are refused, a body whose Prepare would be
//! over the participants' frame limit is refused with 413 before anything is sent (and an
//! unrelated transaction in flight is not hurt), and the `/v1/events` stream is bounded.

mod support;

use futures_util::StreamExt;
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
            submitted_by: None,
            txid,
            coordinator,
            ops,
            timeout_ms: Some(1500),
            priority: None,
            epoch: None,
        }
    } else {
        Message::CommitOnePhase {
            submitted_by: None,
            txid,
            coordinator,
            ops,
            priority: None,
            epoch: None,
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

/// A transfer on keys of its own (concurrent transfers do not contend for locks).
fn own_transfer(id: &str) -> Value {
    json!({"id": id, "participants": {
        "ledger": {"redis": [{"op": "incrby", "key": format!("ledger:{id}"), "by": -1}]},
        "vault": {"redis": [{"op": "incrby", "key": format!("vault:{id}"), "by": 1}]},
    }})
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Median latency in ms of `n` sequential committed transfers.
async fn median_latency_ms(coord: &Coordinator, tag: &str, n: usize) -> f64 {
    let mut ms = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let (status, resp) = coord.post(&own_transfer(&format!("{tag}-{i}"))).await;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            (status, resp["outcome"].clone()),
            (200, json!("committed")),
            "{resp}"
        );
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[n / 2]
}

fn events_url(coord: &Coordinator) -> String {
    format!("{}/v1/events", coord.url.replace("http://", "ws://"))
}

/// 1,500 clients open the event stream and never read. The coordinator takes its configured
/// number (default 64) and refuses the rest with a JSON 503; its memory and the latency of
/// ordinary transactions stay bounded; when they leave, their places are free again. A client
/// that starts a 60 MiB message is cut off at the frame header. (Before the limit: 36 MB ->
/// 220 MB RSS, median latency 3.9 -> ~100 ms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_event_subscribers_cannot_exhaust_the_coordinator() {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let (_ledger, _vault, coord) = setup().await;
    let pid = coord.process.pid().unwrap();
    median_latency_ms(&coord, "warm", 20).await;
    let rss_before = rss_kb(pid);
    let lat_without = median_latency_ms(&coord, "without", 40).await;

    let t0 = Instant::now();
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..1500 {
        match tokio_tungstenite::connect_async(events_url(&coord)).await {
            Ok((ws, _)) => idle.push(ws),
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 503);
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"], "too_many_subscribers", "{body}");
                refused += 1;
            }
            Err(e) => panic!("event stream connect: {e}"),
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    assert_eq!(
        (idle.len(), refused),
        (64, 1436),
        "default max_event_subscribers"
    );
    let lat_with = median_latency_ms(&coord, "with", 40).await;
    let rss_during = rss_kb(pid);

    drop(idle);
    // Their places come back: a new subscriber is let in and hears the next transaction.
    let mut ws = None;
    for _ in 0..100 {
        if let Ok((w, _)) = tokio_tungstenite::connect_async(events_url(&coord)).await {
            ws = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = ws.expect("a subscriber is let in after the idle ones left");
    let (status, _) = coord.post(&own_transfer("after")).await;
    assert_eq!(status, 200);
    let mut heard = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if m.to_text().unwrap_or("").contains("\"after\"") {
            heard = true;
            break;
        }
    }
    assert!(heard, "the new subscriber hears the next transaction");
    drop(ws);

    // An unfinished 60 MiB message: refused at its frame header, not buffered.
    let rss_pre_big = rss_kb(pid);
    let closed_in = send_unfinished_huge_message(&coord).await;
    let rss_after = rss_kb(pid);

    let mb = |kb: u64| kb as f64 / 1024.0;
    eprintln!(
        "events: RSS before {:.1} MB, with {} idle subscribers {:.1} MB, after {:.1} MB; \
         median latency without {lat_without:.1} ms, with {lat_with:.1} ms; \
         {refused} refused; 1500 connects in {connect_s:.1} s; \
         60 MiB message cut off in {closed_in:?}",
        mb(rss_before),
        64,
        mb(rss_during),
        mb(rss_after),
    );
    assert!(
        rss_during < rss_before + 40 * 1024,
        "RSS grew from {} to {} kB",
        rss_before,
        rss_during
    );
    assert!(
        rss_after < rss_pre_big + 8 * 1024,
        "the 60 MiB message was buffered"
    );
    assert!(
        lat_with < (lat_without * 3.0).max(lat_without + 25.0),
        "median latency {lat_without:.1} ms -> {lat_with:.1} ms"
    );
}

/// Starts a 60 MiB text message on the event stream and sends 1 MiB of it; returns how long
/// the coordinator took to close the connection.
async fn send_unfinished_huge_message(coord: &Coordinator) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = coord.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&hostport).await.unwrap();
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // FIN + text; masked, 64-bit length.
    let mut frame = vec![0x81u8, 0x80 | 127];
    frame.extend_from_slice(&(60u64 * 1024 * 1024).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    let t0 = Instant::now();
    s.write_all(&frame).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        // The coordinator may close while we are still writing; that is the point.
        if s.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t0.elapsed(),
            Ok(Ok(_)) => continue, // events or the close frame; EOF follows
            Err(_) => panic!("the coordinator kept reading a 60 MiB message"),
        }
    }
}

/// A subscriber that falls further behind than `event_buffer` events misses the oldest and is
/// told how many (`{"lagged": n}`, which the web app shows as "skipped by server"); the
/// stream then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_event_reader_is_dropped_behind_and_told() {
    let ledger = Participant::start("ledger", TOKEN_LEDGER).await;
    let vault = Participant::start("vault", TOKEN_VAULT).await;
    let coord = Coordinator::start(&ledger, &vault, "event_buffer = 16\n");
    coord.wait_connected().await;
    // A reader with a small socket receive buffer, so the coordinator's sends to it stall
    // soon instead of filling megabytes of kernel buffers.
    let hostport = coord.url.trim_start_matches("http://").to_owned();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(hostport.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(events_url(&coord), stream)
        .await
        .unwrap();
    // It does not read while 2,000+ events go by.
    let url = coord.url.clone();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..20 {
                let r = http
                    .post(format!("{url}/v1/transactions"))
                    .json(&own_transfer(&format!("slow-{w}-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Heartbeats keep the stream going, so read until the note and a few events after it.
    let mut lagged = 0u64;
    let mut events_after = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while events_after < 5 && Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else {
            break;
        };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("")).unwrap_or(Value::Null);
        if let Some(n) = v["lagged"].as_u64() {
            lagged += n;
        } else if lagged > 0 && v["seq"].is_u64() {
            events_after += 1;
        }
    }
    assert!(
        lagged > 0,
        "the slow reader was never told it missed events"
    );
    assert!(
        events_after > 0,
        "the stream did not go on after the lag note"
    );
    eprintln!("slow reader: {lagged} events dropped and reported, {events_after} after");
}
