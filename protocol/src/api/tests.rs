//! The API bodies' tests: each pins its exact JSON against the `json!` body it replaced.

use super::*;

#[test]
fn request_decodes() {
    let r: TransactionRequest = serde_json::from_str(
        r#"{"id":"t1","participants":{"bank":{"sql":[{"query":"select 1"}]},"ledger":{"redis":[]}}}"#,
    )
    .unwrap();
    assert_eq!(r.participants.len(), 2);
    let bad =
        serde_json::from_str::<TransactionRequest>(r#"{"participants":{"bad name":{"sql":[]}}}"#)
            .unwrap_err();
    assert!(bad.to_string().contains("participant name"), "{bad}");
}

fn name(s: &str) -> ParticipantName {
    ParticipantName::new(s).unwrap()
}

/// `value` serializes to exactly `json` (and to what `old`, the `json!` body it replaced,
/// serialized to), and `json` parses back to `value`.
fn pin<T>(value: &T, json: &str, old: serde_json::Value)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(serde_json::to_string(value).unwrap(), json);
    assert_eq!(old.to_string(), json, "the replaced json! body");
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), value);
}

#[test]
fn request_id_errors_are_typed() {
    let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let ok =
        TransactionRequest::from_value(v(r#"{"id":"t1","participants":{"ledger":{"redis":[]}}}"#))
            .unwrap();
    assert_eq!(ok.id.unwrap().as_str(), "t1");
    assert!(TransactionRequest::from_value(v(r#"{"participants":{}}"#))
        .unwrap()
        .id
        .is_none());
    for bad in [r#""""#, r#""a\u0001b""#] {
        let body = format!(r#"{{"id":{bad},"participants":{{"ledger":{{"redis":[]}}}}}}"#);
        let err = TransactionRequest::from_value(v(&body)).unwrap_err();
        assert!(matches!(err, RequestError::BadId(_)), "{body}: {err:?}");
        assert_eq!(err.code(), ApiErrorCode::BadId);
    }
    // The message is the id's own (what the schema error used to say).
    let err = TransactionRequest::from_value(v(r#"{"id":"","participants":{}}"#)).unwrap_err();
    assert_eq!(err.to_string(), "transaction id must not be empty");
    // An id of the wrong type, a bad name, an unknown field: the schema's.
    for body in [
        r#"{"id":5,"participants":{}}"#,
        r#"{"participants":{"bad name":{"sql":[]}}}"#,
        r#"{"participants":{},"extra":1}"#,
        r#"[]"#,
    ] {
        let err = TransactionRequest::from_value(v(body)).unwrap_err();
        assert!(matches!(err, RequestError::Invalid(_)), "{body}: {err:?}");
        assert_eq!(err.code(), ApiErrorCode::InvalidRequest);
    }
}

#[test]
fn outcome_names_are_the_wire_names() {
    for o in [
        Outcome::Committed,
        Outcome::Aborted,
        Outcome::InProgress,
        Outcome::HeuristicMixed,
        Outcome::HeuristicHazard,
    ] {
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            format!("\"{}\"", o.as_str())
        );
    }
}

#[test]
fn api_error_pins_its_json() {
    pin(
        &ApiError {
            error: ApiErrorCode::TooManySubscribers,
            message: "later".into(),
        },
        r#"{"error":"too_many_subscribers","message":"later"}"#,
        serde_json::json!({"error": "too_many_subscribers", "message": "later"}),
    );
    for code in [
        ApiErrorCode::MalformedJson,
        ApiErrorCode::DuplicateKey,
        ApiErrorCode::InvalidRequest,
        ApiErrorCode::BadId,
        ApiErrorCode::ReservedId,
        ApiErrorCode::EmptyTransaction,
        ApiErrorCode::TooManyParticipants,
        ApiErrorCode::UnknownParticipant,
        ApiErrorCode::WrongOperations,
        ApiErrorCode::ShardKey,
        ApiErrorCode::PayloadTooLarge,
        ApiErrorCode::FrameTooLarge,
        ApiErrorCode::IdConflict,
        ApiErrorCode::NotFound,
        ApiErrorCode::MethodNotAllowed,
        ApiErrorCode::WebsocketRequired,
        ApiErrorCode::TooManySubscribers,
        ApiErrorCode::FaultsDisabled,
        ApiErrorCode::ShuttingDown,
    ] {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<ApiErrorCode>(&json).unwrap(), code);
    }
}

#[test]
fn public_config_pins_its_json() {
    let cfg = PublicConfig {
        coordinator_id: CoordinatorId::new("c1").unwrap(),
        fault_injection: true,
        participants: vec![
            ParticipantConfig {
                kind: ParticipantKind::Postgres,
                name: name("bank"),
                url: "ws://127.0.0.1:7701".into(),
            },
            ParticipantConfig {
                kind: ParticipantKind::Redis,
                name: name("ledger"),
                url: "ws://127.0.0.1:7702".into(),
            },
        ],
        prepare_timeout_ms: 5000,
    };
    pin(
        &cfg,
        r#"{"coordinator_id":"c1","fault_injection":true,"participants":[{"kind":"postgres","name":"bank","url":"ws://127.0.0.1:7701"},{"kind":"redis","name":"ledger","url":"ws://127.0.0.1:7702"}],"prepare_timeout_ms":5000}"#,
        serde_json::json!({
            "coordinator_id": "c1",
            "fault_injection": true,
            "prepare_timeout_ms": 5000,
            "participants": [
                {"name": "bank", "kind": "postgres", "url": "ws://127.0.0.1:7701"},
                {"name": "ledger", "kind": "redis", "url": "ws://127.0.0.1:7702"},
            ],
        }),
    );
    assert_eq!(cfg.sql_participant().unwrap().name.as_str(), "bank");
    assert_eq!(cfg.redis_participant().unwrap().name.as_str(), "ledger");
}

#[test]
fn participant_status_pins_its_json() {
    let st = ParticipantStatus {
        awaiting_ack: 1,
        connected: true,
        foreign_prepared: 2,
        kind: ParticipantKind::Redis,
        name: name("ledger"),
        reported_prepared: 3,
        url: "ws://h:1".into(),
        last_error: None,
    };
    // The old body: the core's status patched with the configured kind and url.
    let mut old = serde_json::json!({"name": "ledger", "connected": true,
        "reported_prepared": 3, "foreign_prepared": 2, "awaiting_ack": 1});
    old["kind"] = "redis".into();
    old["url"] = "ws://h:1".into();
    pin(
        &st,
        r#"{"awaiting_ack":1,"connected":true,"foreign_prepared":2,"kind":"redis","name":"ledger","reported_prepared":3,"url":"ws://h:1"}"#,
        old,
    );
    let down = ParticipantStatus {
        connected: false,
        last_error: Some("connect failed: HTTP 401".into()),
        ..st
    };
    let json = serde_json::to_value(&down).unwrap();
    assert_eq!(json["last_error"], "connect failed: HTTP 401");
}

#[test]
fn fault_requests_pin_their_json() {
    let cases = [
        (
            FaultRequest::DropNext {
                participant: name("bank"),
                msg_type: None,
            },
            r#"{"fault":"drop_next","participant":"bank"}"#,
        ),
        (
            FaultRequest::DropNext {
                participant: name("bank"),
                msg_type: Some(MessageType::Commit),
            },
            r#"{"fault":"drop_next","participant":"bank","msg_type":"commit"}"#,
        ),
        (
            FaultRequest::DelayNext {
                participant: name("ledger"),
                ms: 1500,
                msg_type: Some(MessageType::CommitOnePhase),
            },
            r#"{"fault":"delay_next","participant":"ledger","ms":1500,"msg_type":"commit_one_phase"}"#,
        ),
        (
            FaultRequest::Partition {
                participant: name("bank"),
            },
            r#"{"fault":"partition","participant":"bank"}"#,
        ),
        (
            FaultRequest::Heal {
                participant: name("bank"),
            },
            r#"{"fault":"heal","participant":"bank"}"#,
        ),
        (FaultRequest::Crash, r#"{"fault":"crash"}"#),
    ];
    for (req, json) in cases {
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
        assert_eq!(serde_json::from_str::<FaultRequest>(json).unwrap(), req);
    }
    // What clients send: key order does not matter, and an unknown key is refused.
    let r: FaultRequest = serde_json::from_str(
        r#"{"ms": 4000, "msg_type": "prepare", "participant": "bank", "fault": "delay_next"}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        FaultRequest::DelayNext {
            participant: name("bank"),
            ms: 4000,
            msg_type: Some(MessageType::Prepare)
        }
    );
    assert_eq!(r.participant().unwrap().as_str(), "bank");
    assert_eq!(FaultRequest::Crash.participant(), None);
    assert!(
        serde_json::from_str::<FaultRequest>(r#"{"fault":"heal","participant":"bank","x":1}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<FaultRequest>(r#"{"fault":"launch"}"#).is_err());
}

#[test]
fn fault_response_pins_its_json() {
    pin(
        &FaultResponse {
            fault: "partitioned bank".into(),
            ok: true,
        },
        r#"{"fault":"partitioned bank","ok":true}"#,
        serde_json::json!({"ok": true, "fault": "partitioned bank"}),
    );
}
