//! Bad input, end to end: a seeded fuzzer for the wire decoder (arbitrary text, mutated valid
//! frames, oversized frames: it never panics, every error is a typed `DecodeError`, every
//! accepted frame round-trips); a fuzzer for the client API against a running coordinator
//! (random and mutated JSON bodies: always a 2xx or a 4xx with a JSON error body, never a 5xx
//! or a dropped connection); hostile txids (quotes, backslashes, 128 bytes, every printable
//! byte) through Postgres and Redis; SQL that errors; Redis type errors; wrong tokens; frames
//! over the size limit. Afterwards every invariant must hold.
//!
//! `TWOPC_FUZZ_SEED=<n>` changes the seed, `TWOPC_FUZZ_CASES=<n>` the number of cases; the
//! seed is printed and included in every failure message.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use twopc_protocol::message::{decode_frame, encode_frame, DecodeError, Frame, Message};
use twopc_protocol::{TxId, MAX_FRAME_BYTES};
use twopc_tests::fault_proxy::SplitMix;
use twopc_tests::invariants::{Told, TxRecord};
use twopc_tests::reliability::{print_summary, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};
use twopc_tests::wire_client::{Incoming, WireClient};

fn seed() -> u64 {
    std::env::var("TWOPC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7_331)
}

fn cases(default: usize) -> usize {
    std::env::var("TWOPC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// Valid frames of every message type, as seeds for mutation.
fn valid_frames() -> Vec<String> {
    let texts = [
        r#"{"v":1,"id":1,"type":"prepare","txid":"t1","coordinator":"c1","ops":{"sql":[{"query":"SELECT 1","params":[1,"a",null,true]}]},"timeout_ms":1000}"#,
        r#"{"v":1,"id":2,"type":"prepare","txid":"t2","coordinator":"c1","ops":{"redis":[{"op":"incrby","key":"k","by":-5,"min":0},{"op":"set","key":"s","value":"v","guard":{"expect":"x"}}]}}"#,
        r#"{"v":1,"id":3,"type":"vote","txid":"t1","vote":"yes"}"#,
        r#"{"v":1,"id":4,"type":"vote","txid":"t1","vote":"no","reason":"r"}"#,
        r#"{"v":1,"id":5,"type":"commit","txid":"t1"}"#,
        r#"{"v":1,"id":6,"type":"abort","txid":"t1","reason":"x"}"#,
        r#"{"v":1,"id":7,"type":"ack","txid":"t1","decision":"commit","result":"applied"}"#,
        r#"{"v":1,"id":8,"type":"decision_request","txid":"t1"}"#,
        r#"{"v":1,"id":9,"type":"decision_answer","txid":"t1","status":"pending"}"#,
        r#"{"v":1,"id":10,"type":"list_prepared"}"#,
        r#"{"v":1,"id":11,"type":"in_doubt_report","participant":"bank","kind":"postgres","prepared":[{"txid":"t1","coordinator":"c1","prepared_at_ms":5}]}"#,
        r#"{"v":1,"id":12,"type":"ping","nonce":3}"#,
        r#"{"v":1,"id":13,"type":"error","code":"malformed","message":"m"}"#,
    ];
    texts.iter().map(|s| s.to_string()).collect()
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "-1",
    "1e999",
    "18446744073709551616",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "0.5",
    "\"v\"",
    "\"type\"",
    "\"txid\"",
    "\"commit\"",
    "2",
];

fn mutate(rng: &mut SplitMix, s: &str) -> String {
    let mut b: Vec<u8> = s.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(b'{');
        }
        let i = rng.below(b.len() as u64) as usize;
        match rng.below(7) {
            0 => b[i] = rng.below(128) as u8,
            1 => {
                b.remove(i);
            }
            2 => b.truncate(i),
            3 => {
                let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                b.splice(i..i, t.bytes());
            }
            4 => {
                let j = rng.below(b.len() as u64) as usize;
                b.swap(i, j);
            }
            5 => {
                let dup = b[i..].to_vec();
                b.extend_from_slice(&dup[..dup.len().min(40)]);
            }
            _ => b.insert(i, rng.below(256) as u8),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn random_text(rng: &mut SplitMix) -> String {
    let n = rng.below(200) as usize;
    let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The decoder never panics; accepted frames round-trip; errors are typed and carry a reply.
#[test]
fn wire_decoder_fuzz() {
    let seed = seed();
    let n = cases(20_000);
    let mut rng = SplitMix(seed);
    let seeds = valid_frames();
    for s in &seeds {
        decode_frame(s).unwrap_or_else(|e| panic!("seed frame {s} does not decode: {e}"));
    }
    let (mut ok, mut errs) = (0usize, std::collections::BTreeMap::<&str, usize>::new());
    for case in 0..n {
        let text = if rng.below(4) == 0 {
            random_text(&mut rng)
        } else {
            let base = &seeds[rng.below(seeds.len() as u64) as usize];
            mutate(&mut rng, base)
        };
        let r = std::panic::catch_unwind(|| decode_frame(&text));
        let r = r.unwrap_or_else(|_| {
            panic!("decode_frame panicked (seed {seed}, case {case}) on {text:?}")
        });
        match r {
            Ok(frame) => {
                ok += 1;
                let again = decode_frame(&encode_frame(&frame))
                    .unwrap_or_else(|e| panic!("re-encoded frame does not decode ({e}): {frame:?} (seed {seed}, case {case})"));
                assert_eq!(again, frame, "round trip (seed {seed}, case {case})");
            }
            Err(e) => {
                let kind = match &e {
                    DecodeError::TooLarge { .. } => "too_large",
                    DecodeError::Malformed { .. } => "malformed",
                    DecodeError::UnsupportedVersion { .. } => "unsupported_version",
                    DecodeError::UnknownType { .. } => "unknown_type",
                    DecodeError::InvalidFields { .. } => "invalid_fields",
                };
                assert!(!e.to_string().is_empty());
                // Every error has a reply frame that itself encodes and decodes.
                let reply = encode_frame(&e.reply());
                assert!(matches!(
                    decode_frame(&reply).map(|f| f.msg),
                    Ok(Message::Error { .. })
                ));
                *errs.entry(kind).or_default() += 1;
            }
        }
    }
    // Over the size limit: typed, without parsing.
    let big = format!(
        r#"{{"v":1,"id":1,"type":"commit","txid":"{}"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    assert!(matches!(
        decode_frame(&big),
        Err(DecodeError::TooLarge { .. })
    ));
    println!(
        "wire decoder fuzz (seed {seed}): {n} cases, {ok} accepted, errors {errs:?}, 0 panics"
    );
    assert!(
        errs.len() >= 3,
        "the fuzzer should reach several error kinds: {errs:?}"
    );
}

/// A random JSON value (bounded depth), avoiding the bank's real keys and tables.
fn random_json(rng: &mut SplitMix, depth: u32) -> Value {
    match rng.below(if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!((rng.next_u64() % 1000) as f64 / 7.0),
        4 => {
            let pool = [
                "",
                "x",
                "fuzz:k",
                "'; DROP TABLE accounts; --",
                "\"",
                "\\",
                "ü",
                "sql",
                "redis",
                "incrby",
                "set",
                "bank",
                "ledger",
                "id",
                "participants",
            ];
            json!(pool[rng.below(pool.len() as u64) as usize])
        }
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "id",
                "participants",
                "bank",
                "ledger",
                "sql",
                "redis",
                "op",
                "key",
                "by",
                "query",
                "params",
                "value",
                "zzz",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    keys[rng.below(keys.len() as u64) as usize].to_string(),
                    random_json(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// A harmless valid request: touches no balances.
fn harmless(id: &str) -> Value {
    json!({
        "id": id,
        "participants": {
            "bank": {"sql": [{"query": "UPDATE accounts SET owner = owner WHERE id = $1", "params": [1]}]},
            "ledger": {"redis": [{"op": "incrby", "key": "fuzz:counter", "by": 1}]}
        }
    })
}

fn mutate_json(rng: &mut SplitMix, v: &mut Value, depth: u32) {
    match v {
        Value::Object(m) if !m.is_empty() && depth < 6 && rng.below(3) != 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len() as u64) as usize];
            match rng.below(4) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(k.clone(), random_json(rng, depth));
                }
                _ => mutate_json(rng, m.get_mut(k).unwrap(), depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 6 && rng.below(3) != 0 => {
            let i = rng.below(a.len() as u64) as usize;
            mutate_json(rng, &mut a[i], depth + 1);
        }
        _ => *v = random_json(rng, depth),
    }
}

async fn api_fuzz(rig: &mut Rig, n: usize, seed: u64) -> (usize, String) {
    let mut rng = SplitMix(seed ^ 0xF00D);
    let url = format!("{}/v1/transactions", rig.stack.coordinator_url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    for case in 0..n {
        let body: Vec<u8> = match rng.below(4) {
            0 => serde_json::to_vec(&random_json(&mut rng, 0)).unwrap(),
            1 => mutate(&mut rng, &harmless(&format!("fz{seed}-{case}")).to_string()).into_bytes(),
            2 => random_text(&mut rng).into_bytes(),
            _ => {
                let mut v = harmless(&format!("fz{seed}-{case}"));
                mutate_json(&mut rng, &mut v, 0);
                serde_json::to_vec(&v).unwrap()
            }
        };
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match r {
            Err(e) => failures.push(format!("case {case}: connection error {e}")),
            Ok(r) => {
                let status = r.status().as_u16();
                *by_status.entry(status).or_default() += 1;
                let v: Option<Value> = r.json().await.ok();
                // Every process of the stack runs with RUST_BACKTRACE=1.
                if let Some(text) = v.as_ref().map(Value::to_string) {
                    if twopc_tests::reliability::shows_rust_internals(&text) {
                        failures.push(format!("case {case}: Rust internals in {text}"));
                    }
                }
                let good = match status {
                    200..=299 => v.is_some(),
                    400..=499 => v
                        .as_ref()
                        .is_some_and(|v| v["error"].is_string() && v["message"].is_string()),
                    _ => false,
                };
                if !good {
                    failures.push(format!(
                        "case {case}: status {status} body {v:?} for request {:?}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
    }
    // Over the body limit: 413 with a JSON error.
    let big = format!(
        r#"{{"participants":{{"ledger":{{"redis":[{{"op":"set","key":"fuzz:big","value":"{}"}}]}}}}}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    match r {
        Ok(r) if r.status().as_u16() == 413 => {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if v["error"] != "payload_too_large" {
                failures.push(format!("oversized body: error body {v}"));
            }
        }
        other => failures.push(format!("oversized body: {other:?}")),
    }
    for f in failures.iter().take(5) {
        eprintln!("API FUZZ FAILURE (seed {seed}): {f}");
    }
    (
        failures.len(),
        format!("{n} bodies, statuses {by_status:?}"),
    )
}

/// Printable-ASCII txids that need quoting or encoding everywhere.
fn hostile_ids(seed: u64) -> Vec<String> {
    let printable: String = (0x20u8..0x7f).map(char::from).collect();
    let mut ids = vec![
        format!("q'uote-{seed}"),
        format!("dq\"uote\\back-{seed}"),
        format!("semi;colon -- drop table accounts; {seed}"),
        format!("{}{}", "L".repeat(128 - seed.to_string().len()), seed),
        format!("%s%n{{}}$1 :: $$ {seed}"),
        format!("twopc:c1:fake-{seed}"),
        format!("{seed}-{}", &printable[..printable.len().min(100)]),
        format!(" lead and trail {seed} "),
    ];
    ids.retain(|i| TxId::new(i.clone()).is_ok());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_end_to_end() {
    let seed = seed();
    let t_all = Instant::now();
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: 4,
            initial_balance: 1000,
            ..StackOptions::default()
        },
        &format!("bi{seed}"),
    )
    .await;
    let mut rows = Vec::new();
    let url = format!("{}/v1/transactions", rig.stack.coordinator_url);

    // 1. API fuzz.
    let t0 = Instant::now();
    let (bad, note) = api_fuzz(&mut rig, cases(300), seed).await;
    rows.push(Row {
        name: "client API fuzz: 2xx or 4xx+JSON, never 5xx/drop".into(),
        faults: 0,
        txs: 0,
        violations: bad,
        ms: t0.elapsed().as_millis(),
        note,
    });

    // 2. Hostile txids end to end (real transfers through Postgres and Redis).
    let t0 = Instant::now();
    let ids = hostile_ids(seed);
    let mut v = 0;
    let mut notes = Vec::new();
    for id in &ids {
        let body = rig.transfer_body(id, 1, 2, 1);
        let told = twopc_tests::reliability::post_told(&rig.http, &url, &body).await;
        if told != Told::Committed {
            v += 1;
            notes.push(format!("{id:?} -> {told:?}"));
        }
        rig.txs.push(TxRecord::transfer(id.clone(), told, 1, 2, 1));
        // Lookup by id works too.
        let r = rig
            .http
            .get(format!(
                "{}/v1/transactions/{}",
                rig.stack.coordinator_url,
                urlencode(id)
            ))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 200 {
            v += 1;
            notes.push(format!("lookup {id:?}: {}", r.status()));
        }
    }
    // 129 bytes and a control character: refused with bad_id.
    for bad_id in ["x".repeat(129), "tab\there".to_string()] {
        let body = rig.transfer_body(&bad_id, 1, 2, 1);
        let r = rig.http.post(&url).json(&body).send().await.unwrap();
        let s = r.status().as_u16();
        let e: Value = r.json().await.unwrap_or(Value::Null);
        if s != 400 || e["error"] != "bad_id" {
            v += 1;
            notes.push(format!("bad id {bad_id:?}: {s} {e}"));
        }
    }
    rows.push(Row {
        name: "hostile txids through Postgres and Redis".into(),
        faults: 0,
        txs: ids.len(),
        violations: v,
        ms: t0.elapsed().as_millis(),
        note: if notes.is_empty() {
            format!(
                "{} ids committed and looked up; 129-byte and control-char ids refused",
                ids.len()
            )
        } else {
            notes.join("; ")
        },
    });

    // 3. SQL that errors, Redis type errors, guard failures: clear NO votes, nothing applied.
    let t0 = Instant::now();
    let mut v = 0;
    let mut notes = Vec::new();
    let setup = json!({"participants": {"ledger": {"redis": [{"op": "hset", "key": "fuzz:hash", "field": "f", "value": "v"}]}}});
    let _ = rig.http.post(&url).json(&setup).send().await.unwrap();
    // (what, participants, Postgres moves, Redis moves if it committed: each must abort).
    type Moves = &'static [(u32, i64)];
    let cases: Vec<(&str, Value, Moves, Moves)> = vec![
        (
            "sql syntax error",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"},
            {"query": "UPDAT accounts SET oops"}]},
            "ledger": {"redis": [{"op": "incrby", "key": "balance:1", "by": -1}]}}),
            &[(1, -1)],
            &[(1, -1)],
        ),
        (
            "division by zero",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"},
            {"query": "SELECT 1/0"}]},
            "ledger": {"redis": [{"op": "incrby", "key": "balance:1", "by": -1}]}}),
            &[(1, -1)],
            &[(1, -1)],
        ),
        (
            "check constraint (overdraft)",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - $1 WHERE id = $2", "params": [100000, 2]}]},
            "ledger": {"redis": [{"op": "incrby", "key": "balance:2", "by": -100000}]}}),
            &[(2, -100000)],
            &[(2, -100000)],
        ),
        (
            "bad parameter type",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - $1 WHERE id = $2", "params": ["ten", 2]}]},
            "ledger": {"redis": [{"op": "incrby", "key": "balance:2", "by": -10}]}}),
            // "ten" has no numeric value: it cannot commit in Postgres at all.
            &[],
            &[(2, -10)],
        ),
        (
            "redis WRONGTYPE",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 3"}]},
            "ledger": {"redis": [{"op": "incrby", "key": "fuzz:hash", "by": 1}]}}),
            &[(3, -1)],
            &[],
        ),
        (
            "redis guard fails",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 3"}]},
            "ledger": {"redis": [{"op": "set", "key": "balance:3", "value": "0", "guard": {"expect": "not-the-value"}}]}}),
            // A SET is not a move; the store comparison catches it should it commit.
            &[(3, -1)],
            &[],
        ),
        (
            "redis reserved key",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 3"}]},
            "ledger": {"redis": [{"op": "set", "key": "twopc:prepared", "value": "x"}]}}),
            &[(3, -1)],
            &[],
        ),
        (
            "redis below min",
            json!({"bank": {"sql": [
            {"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 4"}]},
            "ledger": {"redis": [{"op": "incrby", "key": "balance:4", "by": -1000000, "min": 0}]}}),
            &[(4, -1)],
            &[(4, -1000000)],
        ),
    ];
    for (i, (what, parts, pg_moves, redis_moves)) in cases.into_iter().enumerate() {
        let id = format!("bi{seed}-err-{i}");
        let body = json!({"id": id, "participants": parts});
        let r = rig.http.post(&url).json(&body).send().await.unwrap();
        let s = r.status().as_u16();
        let resp: Value = r.json().await.unwrap_or(Value::Null);
        let told = if s == 200 && resp["outcome"] == "aborted" {
            Told::Aborted
        } else if s == 200 && resp["outcome"] == "committed" {
            Told::Committed
        } else {
            Told::Unknown
        };
        if s == 200 {
            let mut tx = TxRecord::other(id.clone(), told);
            tx.pg_moves = pg_moves.to_vec();
            tx.redis_moves = redis_moves.to_vec();
            rig.txs.push(tx);
        }
        let reason = resp["reason"]
            .as_str()
            .or(resp["message"].as_str())
            .unwrap_or("")
            .to_string();
        if told != Told::Aborted && !(400..500).contains(&s) {
            v += 1;
            notes.push(format!("{what}: {s} {resp}"));
        } else if told == Told::Aborted && reason.is_empty() {
            v += 1;
            notes.push(format!("{what}: aborted without a reason"));
        } else {
            notes.push(format!(
                "{what}: {}",
                reason.chars().take(60).collect::<String>()
            ));
        }
    }
    rows.push(Row {
        name: "erroring SQL / Redis type errors / guards".into(),
        faults: 0,
        txs: 8,
        violations: v,
        ms: t0.elapsed().as_millis(),
        note: notes.join(" | "),
    });

    // 4. Wrong tokens and oversized frames at the participants themselves.
    let t0 = Instant::now();
    let mut v = 0;
    let mut notes = Vec::new();
    for (name, addr, token) in [
        (
            "bank",
            rig.stack.bank_addr.clone(),
            rig.stack.tokens.0.clone(),
        ),
        (
            "ledger",
            rig.stack.ledger_addr.clone(),
            rig.stack.tokens.1.clone(),
        ),
    ] {
        let addr = addr.parse().unwrap();
        for wrong in [
            Some("wrong-token"),
            None,
            Some(token.as_str()).map(|t| &t[..t.len() - 1]),
        ] {
            let r = WireClient::refused(addr, wrong).await;
            if r.status != 401 {
                v += 1;
                notes.push(format!("{name} token {wrong:?}: {}", r.status));
            }
        }
        let mut c = WireClient::connect(addr, Some(&token)).await.unwrap();
        let big = format!(
            r#"{{"v":1,"id":77,"type":"commit","txid":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES + 1)
        );
        let _ = c
            .send_ws(tokio_tungstenite::tungstenite::Message::text(big))
            .await;
        let mut clear = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match c.next_incoming(Duration::from_secs(5)).await {
                Some(Incoming::Frame(Frame {
                    msg: Message::Error { code, .. },
                    ..
                })) => {
                    clear = format!("{code:?}").to_lowercase().contains("large");
                    break;
                }
                Some(Incoming::Frame(_)) => continue, // its in-doubt report
                Some(Incoming::Closed(Some(cf))) => {
                    clear = u16::from(cf.code) == 1009;
                    break;
                }
                _ => break,
            }
        }
        if !clear {
            v += 1;
            notes.push(format!(
                "{name}: no too_large error or 1009 close for an oversized frame"
            ));
        }
    }
    // The participants still serve the coordinator.
    rig.wait_connected().await;
    let live = rig.transfer(1, 2, 1).await;
    if live != Told::Committed {
        v += 1;
        notes.push(format!("transfer after the bad frames: {live:?}"));
    }
    rows.push(Row {
        name: "wrong tokens (401), frames over the size limit".into(),
        faults: 0,
        txs: 1,
        violations: v,
        ms: t0.elapsed().as_millis(),
        note: if notes.is_empty() {
            "all refused clearly; participants still serve".into()
        } else {
            notes.join("; ")
        },
    });

    // 5. Nothing lost.
    let report = rig.check().await;
    rows.push(Row {
        name: "invariants after all bad input".into(),
        faults: 0,
        txs: report.transactions,
        violations: report.violations.len(),
        ms: 0,
        note: report.to_string().replace('\n', " "),
    });
    let total = print_summary(&format!("bad input (seed {seed})"), &rows);
    eprintln!("bad input: {} s", t_all.elapsed().as_secs());
    assert_eq!(
        total, 0,
        "bad-input failures (seed {seed}); see the table above"
    );
}

/// RFC 3986 unreserved characters stay, everything else is percent-encoded.
fn urlencode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The invariant checker itself: tampering with the stores behind twopc's back must show up
/// as the right violations (a checker that never fails proves nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_checker_catches_tampering() {
    use twopc_tests::invariants::{check, CheckOptions, Violation};
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: 3,
            initial_balance: 100,
            ..StackOptions::default()
        },
        "tamper",
    )
    .await;
    assert_eq!(rig.transfer(1, 2, 5).await, Told::Committed);
    let opts = CheckOptions {
        initial_balance: 100,
        settle_within: Duration::from_secs(1),
        ..CheckOptions::default()
    };
    let clean = tokio::task::block_in_place(|| check(&rig.stack, &rig.txs, &opts));
    assert!(clean.ok(), "{clean}");

    // A committed transfer the client is said to have been told "aborted".
    assert_eq!(rig.transfer(2, 3, 4).await, Told::Committed);
    let mut txs = rig.txs.clone();
    let lied_to = txs.last().unwrap().txid.clone();
    txs.last_mut().unwrap().told = Told::Aborted;
    // A committed tx the stores never saw, one Redis committed alone, and an answer no client
    // may get.
    txs.push(TxRecord::transfer("never-ran", Told::Committed, 1, 2, 1));
    txs.push(TxRecord::transfer("redis-only", Told::Unknown, 1, 2, 1));
    txs.push(TxRecord::transfer(
        "got-a-500",
        Told::BadAnswer(500),
        1,
        2,
        1,
    ));
    let psql = |sql: &str| rig.stack.pg.psql_ok("bank", sql).unwrap();
    // Committed in Postgres only: a real prepared and committed transfer Redis never saw.
    psql(
        "BEGIN; UPDATE accounts SET balance = balance - 3 WHERE id = 1;
         UPDATE accounts SET balance = balance + 3 WHERE id = 2;
         SELECT twopc.prepare('twopc:c1:pg-only');",
    );
    psql("SELECT twopc.commit_prepared('twopc:c1:pg-only')");
    txs.push(TxRecord::transfer("pg-only", Told::Unknown, 1, 2, 3));
    // Marked committed in both stores, applied in neither: only the replay of the effects
    // can tell (the totals are conserved and the stores still agree on account 3).
    psql("BEGIN; SELECT twopc.prepare('twopc:c1:marked-only');");
    psql("SELECT twopc.commit_prepared('twopc:c1:marked-only')");
    txs.push(TxRecord::transfer("marked-only", Told::Committed, 3, 1, 2));
    let mut con = redis::Client::open(rig.stack.redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for (txid, outcome) in [("redis-only", "commit"), ("marked-only", "commit")] {
        let _: () = redis::cmd("HSET")
            .arg("twopc:outcome")
            .arg(txid)
            .arg(outcome)
            .query(&mut con)
            .unwrap();
    }
    // Money appears in Redis; a stray prepared transaction stays in Postgres.
    let _: () = redis::cmd("INCRBY")
        .arg("balance:3")
        .arg(7)
        .query(&mut con)
        .unwrap();
    rig.stack
        .pg
        .psql_ok(
            "bank",
            "BEGIN; UPDATE accounts SET owner = owner WHERE id = 1; PREPARE TRANSACTION 'stray';",
        )
        .unwrap();
    let r = tokio::task::block_in_place(|| check(&rig.stack, &txs, &opts));
    println!("tampered: {r}");
    let has = |f: &dyn Fn(&Violation) -> bool| r.violations.iter().any(f);
    assert!(has(&|v| matches!(
        v,
        Violation::StillInDoubt {
            store: "postgres",
            ..
        }
    )));
    assert!(has(&|v| matches!(
        v,
        Violation::MoneyNotConserved { store: "redis", .. }
    )));
    assert!(has(&|v| matches!(
        v,
        Violation::BalanceMismatch { account: 3, .. }
    )));
    assert!(has(
        &|v| matches!(v, Violation::ToldWrong { txid, .. } if txid == "never-ran")
    ));
    assert!(has(
        &|v| matches!(v, Violation::NotAtomic { txid, .. } if txid == "redis-only")
    ));
    assert!(has(
        &|v| matches!(v, Violation::ToldWrong { txid, told: Told::Aborted, .. } if *txid == lied_to)
    ));
    assert!(has(
        &|v| matches!(v, Violation::NotAtomic { txid, .. } if txid == "pg-only")
    ));
    assert!(has(
        &|v| matches!(v, Violation::BadAnswer { txid, status: 500 } if txid == "got-a-500")
    ));
    // Account 3 in Postgres is touched by nothing but "marked-only".
    assert!(has(&|v| matches!(
        v,
        Violation::EffectsMissing {
            store: "postgres",
            account: 3,
            ..
        }
    )));
    rig.stack
        .pg
        .psql_ok("bank", "ROLLBACK PREPARED 'stray'")
        .unwrap();
}
