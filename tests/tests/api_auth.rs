//! Client authentication and scoped rights on the coordinator's API (issue 19), against the
//! real stack: a coordinator with four `[[client]]`s whose token digests come from its own
//! `hash-token` subcommand.
//!
//! * every endpoint but `/healthz` refuses a missing or wrong token with 401 (and
//!   `WWW-Authenticate: Bearer`), an out-of-scope one with 403, and takes the right one;
//! * a client limited to `bank` cannot name `ledger`; a rotated token's old and new values
//!   both work;
//! * the event stream takes `?access_token=` and refuses a client without the `events` scope;
//! * request-rate and in-flight limits answer 429 with `Retry-After`; a transaction counts
//!   against the in-flight limit until it ends, even when its client hung up, and it commits
//!   (nothing in flight is lost);
//! * each transaction is recorded with the name of the client that submitted it: in its
//!   answer and lookups, in its `tx_begin` event, and in the extension's `twopc.history` on the
//!   PostgreSQL participant, committed or rolled back (`submitted_by`);
//! * no answer and no event carries a token.

use futures_util::StreamExt;
use std::time::Duration;
use twopc_tests::stack::{Binaries, Stack, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

const OPS: &str = "tok-ops-6f0e2d9b41a7";
const READER: &str = "tok-reader-0c3b7e5a19f2";
const TELLER: &str = "tok-teller-5d81a4c0e7b3";
const TELLER_NEXT: &str = "tok-teller-next-9a2f6b1d3c48";
const SLOW: &str = "tok-slow-e4c1d7f08b25";
const ALL: [&str; 5] = [OPS, READER, TELLER, TELLER_NEXT, SLOW];

/// The digest `twopc-coordinator hash-token` prints for `token` (read from standard input).
fn digest(token: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(bins().coordinator)
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let d = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(d.len(), 64, "{d}");
    d
}

fn clients() -> String {
    format!(
        r#"
[[client]]
name = "ops"
token_sha256 = ["{}"]
scopes = ["submit", "read", "events", "faults"]

[[client]]
name = "reader"
token_sha256 = ["{}"]
scopes = ["read"]

[[client]]
name = "bank-teller"
token_sha256 = ["{}", "{}"]
scopes = ["submit", "read"]
participants = ["bank"]

[[client]]
name = "slow"
token_sha256 = ["{}"]
scopes = ["submit", "read"]
requests_per_sec = 5
max_in_flight = 1
"#,
        digest(OPS),
        digest(READER),
        digest(TELLER),
        digest(TELLER_NEXT),
        digest(SLOW)
    )
}

/// Every answer's body, to check at the end that none carries a token.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        self.0.push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body, headers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_need_their_token_and_stay_within_their_scope_and_limits() {
    for token in ALL {
        twopc_tests::secrets::register(token);
    }
    let tables = clients();
    let stack = tokio::task::block_in_place(|| {
        Stack::start(
            &bins(),
            StackOptions {
                accounts: 4,
                fault_injection: true,
                coordinator_tables: tables,
                api_token: Some(OPS.into()),
                ..StackOptions::default()
            },
        )
        .expect("start the stack")
    });
    let base = stack.coordinator_url.clone();
    let http = reqwest::Client::new();
    let mut seen = Seen::default();
    let transfer = |id: &str, from: u64, to: u64| {
        let mut body = twopc_tests::reliability::bank_ledger_transfer(from, to, 1);
        body.id = Some(twopc_protocol::TxId::new(id).unwrap());
        body
    };

    // The health check is open.
    let (st, _, _) = seen.send(http.get(format!("{base}/healthz")), None).await;
    assert_eq!(st, 200);

    // Every other endpoint (a HEAD, a trailing slash or a percent-encoded path too): no token
    // or a wrong one is 401, the right one gets through.
    // (And what each answers with the right token.)
    let endpoints: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "GET /v1/participants",
            http.get(format!("{base}/v1/participants")),
            200,
        ),
        (
            "GET /v1/coordinators",
            http.get(format!("{base}/v1/coordinators")),
            200,
        ),
        ("GET /v1/config", http.get(format!("{base}/v1/config")), 200),
        ("GET /metrics", http.get(format!("{base}/metrics")), 200),
        (
            "GET /v1/transactions/none",
            http.get(format!("{base}/v1/transactions/none")),
            404,
        ),
        (
            "POST /v1/transactions",
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("a1", 1, 2)),
            200,
        ),
        (
            "POST /v1/faults",
            http.post(format!("{base}/v1/faults"))
                .body(r#"{"fault":"heal","participant":"ledger"}"#),
            200,
        ),
        (
            "GET /v1/nowhere",
            http.get(format!("{base}/v1/nowhere")),
            404,
        ),
        (
            "HEAD /v1/participants",
            http.head(format!("{base}/v1/participants")),
            200,
        ),
        (
            "GET /v1/events/",
            http.get(format!("{base}/v1/events/")),
            404,
        ),
        (
            "GET /v1/%65vents",
            http.get(format!("{base}/v1/%65vents")),
            404,
        ),
    ];
    for (what, req, want) in endpoints {
        for token in [None, Some("not-a-token"), Some("")] {
            let (st, body, headers) = seen.send(req.try_clone().unwrap(), token).await;
            assert_eq!(st, 401, "{what} with {token:?}: {body}");
            if !what.starts_with("HEAD") {
                assert_eq!(body["error"], "unauthorized", "{what}: {body}");
            }
            assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
        }
        let (st, body, _) = seen.send(req, Some(OPS)).await;
        assert_eq!(st, want, "{what} as ops: {body}");
    }
    // That transfer (a1) ran, as ops, and says so.
    let (st, body, _) = seen
        .send(http.get(format!("{base}/v1/transactions/a1")), Some(OPS))
        .await;
    assert_eq!(
        (st, body["outcome"].as_str(), body["submitted_by"].as_str()),
        (200, Some("committed"), Some("ops")),
        "{body}"
    );
    // The extension's history names the client too, committed or aborted: a2's bank branch
    // prepares (the ledger's Prepare is held back), then the ledger's guard votes no and the
    // bank rolls back, which writes the finish-log row.
    let (st, body, _) = seen
        .send(
            http.post(format!("{base}/v1/faults")).body(
                r#"{"fault":"delay_next","participant":"ledger","ms":400,"msg_type":"prepare"}"#,
            ),
            Some(OPS),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let refused = serde_json::json!({"id": "a2", "participants": {
        "bank": {"sql": [{"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"}]},
        "ledger": {"redis": [
            {"op": "set", "key": "ledger:a2", "value": "w", "guard": {"expect": "not-v"}}]}}});
    let (st, body, _) = seen
        .send(
            http.post(format!("{base}/v1/transactions")).json(&refused),
            Some(OPS),
        )
        .await;
    assert_eq!(
        (st, body["outcome"].as_str()),
        (200, Some("aborted")),
        "{body}"
    );
    let history = "SELECT string_agg(global_id || ' ' || decision || ' ' || \
                   coalesce(submitted_by, '-'), ', ' ORDER BY global_id) \
                   FROM twopc.history WHERE global_id IN ('a1', 'a2')";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen_rows = tokio::task::block_in_place(|| stack.pg.query("bank", history));
        if seen_rows == "a1 commit ops, a2 abort ops" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bank's history: {seen_rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Who am I: any client's token will do.
    let (st, body, _) = seen
        .send(http.get(format!("{base}/v1/whoami")), Some(READER))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        body,
        serde_json::json!({"authenticated": true, "client": "reader", "scopes": ["read"]})
    );
    let (_, body, _) = seen
        .send(http.get(format!("{base}/v1/whoami")), Some(TELLER_NEXT))
        .await;
    assert_eq!(body["client"], "bank-teller");
    assert_eq!(body["participants"], serde_json::json!(["bank"]));
    let (st, _, _) = seen.send(http.get(format!("{base}/v1/whoami")), None).await;
    assert_eq!(st, 401);

    // Scopes: a reader reads, and may do nothing else.
    let (st, _, _) = seen
        .send(http.get(format!("{base}/v1/participants")), Some(READER))
        .await;
    assert_eq!(st, 200);
    for (what, req) in [
        (
            "submit",
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("r1", 1, 2)),
        ),
        (
            "faults",
            http.post(format!("{base}/v1/faults"))
                .body(r#"{"fault":"heal","participant":"ledger"}"#),
        ),
    ] {
        let (st, body, _) = seen.send(req, Some(READER)).await;
        assert_eq!(st, 403, "{what}: {body}");
        assert_eq!(body["error"], "forbidden");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{what}\" scope")),
            "{body}"
        );
    }
    let (st, _, _) = seen
        .send(http.get(format!("{base}/v1/transactions/r1")), Some(OPS))
        .await;
    assert_eq!(st, 404, "the refused submission must not have run");

    // Participants: the teller may use bank only, with either of its two tokens.
    let (st, body, _) = seen
        .send(
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("t1", 1, 2)),
            Some(TELLER),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not use participant ledger"),
        "{body}"
    );
    for (i, token) in [TELLER, TELLER_NEXT].into_iter().enumerate() {
        let one_bank = serde_json::json!({
            "id": format!("t-bank-{i}"),
            "participants": {"bank": {"sql": [
                {"query": "UPDATE accounts SET balance = balance WHERE id = $1", "params": [3]}
            ]}}
        });
        let (st, body, _) = seen
            .send(
                http.post(format!("{base}/v1/transactions")).json(&one_bank),
                Some(token),
            )
            .await;
        assert_eq!(
            (st, body["outcome"].as_str(), body["submitted_by"].as_str()),
            (200, Some("committed"), Some("bank-teller")),
            "{body}"
        );
    }

    // The event stream: ?access_token= for a browser; the events scope is needed.
    let ws = base.replacen("http://", "ws://", 1);
    let refused = tokio_tungstenite::connect_async(format!("{ws}/v1/events")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("events without a token: {other:?}"),
    }
    let refused =
        tokio_tungstenite::connect_async(format!("{ws}/v1/events?access_token={READER}")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("events as reader: {other:?}"),
    }
    let (mut events, _) =
        tokio_tungstenite::connect_async(format!("{ws}/v1/events?access_token={OPS}"))
            .await
            .expect("events as ops");
    let (st, _, _) = seen
        .send(
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("e1", 1, 2)),
            Some(OPS),
        )
        .await;
    assert_eq!(st, 200);
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !frames
        .iter()
        .any(|f: &String| f.contains("tx_end") && f.contains("\"e1\""))
    {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("e1's events within 10 s")
            .expect("the stream stays open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = next {
            frames.push(t.to_string());
        }
    }
    let begin = frames
        .iter()
        .find(|f| f.contains("\"tx_begin\"") && f.contains("\"e1\""))
        .expect("e1's tx_begin");
    assert!(begin.contains(r#""submitted_by":"ops""#), "{begin}");
    seen.0.extend(frames);

    // Limits. In flight: one transaction of `slow` is held in phase 1 (its Prepare to the
    // ledger delayed) and its client hangs up at once; the transaction still counts, so a
    // second one is refused with 429 until the first has finished. The first commits.
    let (st, body, _) = seen
        .send(
            http.post(format!("{base}/v1/faults")).body(
                r#"{"fault":"delay_next","participant":"ledger","ms":1500,"msg_type":"prepare"}"#,
            ),
            Some(OPS),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let hasty = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = hasty
        .post(format!("{base}/v1/transactions"))
        .bearer_auth(SLOW)
        .json(&transfer("s1", 3, 4))
        .send()
        .await;
    assert!(gone.is_err(), "the hasty client was answered: {gone:?}");
    let (st, body, headers) = seen
        .send(
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("s2", 3, 4)),
            Some(SLOW),
        )
        .await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["error"], "too_many_in_flight", "{body}");
    assert_eq!(headers["retry-after"], "1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body, _) = seen
            .send(http.get(format!("{base}/v1/transactions/s1")), Some(OPS))
            .await;
        if body["outcome"] == "committed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "s1: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Rate: 5 a second with a burst of 5; ten lookups at once run out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut limited = 0;
    for _ in 0..10 {
        let (st, body, headers) = seen
            .send(http.get(format!("{base}/v1/transactions/s1")), Some(SLOW))
            .await;
        match st {
            200 => {}
            429 => {
                limited += 1;
                assert_eq!(body["error"], "rate_limited", "{body}");
                assert_eq!(headers["retry-after"], "1");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!((4..=6).contains(&limited), "{limited} of 10 limited");
    // The refused s2 never ran; after the limits it runs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, body, _) = seen
        .send(
            http.post(format!("{base}/v1/transactions"))
                .json(&transfer("s2", 3, 4)),
            Some(SLOW),
        )
        .await;
    assert_eq!(
        (st, body["outcome"].as_str()),
        (200, Some("committed")),
        "{body}"
    );

    // Money moved exactly as the committed transfers say: a1, e1 (1 → 2), s1, s2 (3 → 4).
    let pg = tokio::task::block_in_place(|| stack.pg_balances().unwrap());
    assert_eq!(pg, vec![(1, 98), (2, 102), (3, 98), (4, 102)]);

    // No answer and no event carries a token.
    for text in &seen.0 {
        for token in ALL {
            assert!(!text.contains(token), "a token in {text}");
        }
    }
}
