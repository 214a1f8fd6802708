//! Round trips, the documented examples, and hostile input for the wire codec.

use std::collections::BTreeSet;
use std::path::Path;
use twopc_protocol::*;

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn every_message() -> Vec<Message> {
    let c1 = CoordinatorId::new("c1").unwrap();
    let sql = Operations::Sql(vec![SqlStatement {
        query: "UPDATE accounts SET balance = balance + $1 WHERE id = $2".into(),
        params: vec![
            serde_json::json!(5),
            serde_json::json!("7"),
            serde_json::Value::Null,
        ],
        shard_key: None,
    }]);
    let redis = Operations::Redis(vec![
        RedisOp::Incrby {
            key: "b:1".into(),
            by: -3,
            min: Some(0),
            max: None,
            guard: RedisGuard::default(),
        },
        RedisOp::Hset {
            key: "h".into(),
            field: "f".into(),
            value: "v".into(),
            guard: RedisGuard {
                expect: Some("old".into()),
                exists: None,
            },
        },
        RedisOp::Del {
            key: "gone".into(),
            guard: RedisGuard {
                expect: None,
                exists: Some(true),
            },
        },
        RedisOp::Set {
            key: "s".into(),
            value: "x".into(),
            guard: RedisGuard::default(),
        },
        RedisOp::Hdel {
            key: "h".into(),
            field: "f".into(),
            guard: RedisGuard::default(),
        },
    ]);
    vec![
        Message::Prepare {
            submitted_by: None,
            txid: tx("t1"),
            coordinator: c1.clone(),
            ops: sql,
            timeout_ms: Some(100),
            priority: None,
            epoch: None,
        },
        Message::CommitOnePhase {
            submitted_by: None,
            txid: tx("t 2"),
            coordinator: c1.clone(),
            ops: redis,
            priority: None,
            epoch: None,
        },
        Message::Vote {
            txid: tx("t1"),
            vote: Vote::Yes,
            reason: None,
            class: None,
        },
        Message::Vote {
            txid: tx("t1"),
            vote: Vote::No,
            reason: Some("duplicate key".into()),
            class: None,
        },
        Message::Vote {
            txid: tx("t1"),
            vote: Vote::ReadOnly,
            reason: None,
            class: None,
        },
        Message::Commit {
            txid: tx("t1"),
            coordinator: None,
            epoch: None,
        },
        Message::Commit {
            txid: tx("t1"),
            coordinator: Some(CoordinatorId::new("c1").unwrap()),
            epoch: Some(7),
        },
        Message::Abort {
            txid: tx("t1"),
            reason: None,
            coordinator: None,
            epoch: None,
        },
        Message::Abort {
            txid: tx("t1"),
            reason: Some("r".into()),
            coordinator: Some(CoordinatorId::new("c1").unwrap()),
            epoch: None,
        },
        Message::Ack {
            txid: tx("t1"),
            decision: Decision::Commit,
            result: AckResult::AlreadyApplied,
            reason: None,
        },
        Message::Ack {
            txid: tx("t1"),
            decision: Decision::Abort,
            result: AckResult::NotPrepared,
            reason: Some("r".into()),
        },
        Message::DecisionRequest {
            txid: tx("t1"),
            coordinator: None,
        },
        Message::DecisionRequest {
            txid: tx("t1"),
            coordinator: Some(CoordinatorId::new("c1").unwrap()),
        },
        Message::DecisionAnswer {
            txid: tx("t1"),
            status: DecisionStatus::Pending,
        },
        Message::ListPrepared {
            coordinator: None,
            epoch: None,
        },
        Message::ListPrepared {
            coordinator: Some(CoordinatorId::new("c1").unwrap()),
            epoch: Some(3),
        },
        Message::InDoubtReport {
            participant: ParticipantName::new("bank").unwrap(),
            kind: ParticipantKind::Redis,
            prepared: vec![PreparedTx {
                txid: tx("t1"),
                coordinator: c1,
                prepared_at_ms: 1,
            }],
        },
        Message::Ping { nonce: u64::MAX },
        Message::Pong { nonce: 0 },
        Message::Error {
            code: ErrorCode::Busy,
            message: "too many in flight".into(),
        },
        Message::Error {
            code: ErrorCode::StaleEpoch,
            message: "too many in flight".into(),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, msg) in every_message().into_iter().enumerate() {
        let frame = Frame::new(i as u64, msg);
        let text = encode_frame(&frame);
        let back = decode_frame(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, frame, "{text}");
    }
}

#[test]
fn documented_examples_decode_and_cover_every_type() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("messages");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let frame = decode_frame(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert_eq!(frame.msg.type_name(), stem, "{}", path.display());
        let again = decode_frame(&encode_frame(&frame)).unwrap();
        assert_eq!(again, frame);
        seen.insert(stem);
    }
    let all: BTreeSet<String> = every_message()
        .iter()
        .map(|m| m.type_name().to_owned())
        .collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "message types without an example: {missing:?}"
    );
}

/// A tiny deterministic generator so the hostile-input test is reproducible without deps.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_frames_never_panic_and_errors_reply_cleanly() {
    let seeds: Vec<String> = every_message()
        .into_iter()
        .map(|m| encode_frame(&Frame::new(9, m)))
        .collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let alphabet = b"{}[]\":,0123456789-eE.ntrufalsv \\\x00\xff";
    let mut accepted = 0;
    let mut rejected = 0;
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone().into_bytes();
        for _ in 0..=(rng.next() % 4) {
            if bytes.is_empty() {
                break;
            }
            let at = (rng.next() as usize) % bytes.len();
            match rng.next() % 3 {
                0 => bytes[at] = alphabet[(rng.next() as usize) % alphabet.len()],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        // The WebSocket layer only hands over valid UTF-8 text; mimic that.
        let text = String::from_utf8_lossy(&bytes);
        match decode_frame(&text) {
            Ok(frame) => {
                accepted += 1;
                // Whatever decodes must re-encode to something that decodes the same.
                assert_eq!(decode_frame(&encode_frame(&frame)).unwrap(), frame);
            }
            Err(e) => {
                rejected += 1;
                let reply = e.reply();
                assert!(matches!(reply.msg, Message::Error { .. }));
                assert!(decode_frame(&encode_frame(&reply)).is_ok());
            }
        }
    }
    assert!(
        accepted > 0 && rejected > 0,
        "accepted {accepted}, rejected {rejected}"
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        decode_frame(&deep),
        Err(DecodeError::Malformed { .. })
    ));
    let deep_params = format!(
        r#"{{"v":1,"id":1,"type":"prepare","txid":"t","coordinator":"c","ops":{{"sql":[{{"query":"q","params":[{}{}]}}]}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(decode_frame(&deep_params).is_err());
}

#[test]
fn gid_is_derived_the_same_way_everywhere() {
    let c = CoordinatorId::new("c1").unwrap();
    let t = tx("it's a 'hostile' id");
    let g = gid::format_gid(&c, &t);
    assert!(g.len() <= gid::PG_MAX_GID_LEN);
    assert!(!g.contains('\''));
    assert_eq!(gid::parse_gid(&g), Some((c, t)));
}
