//! Parsing event frames and API errors.

use super::*;

#[test]
fn parses_events_and_lagged_notes() {
    let e = r#"{"run":"c1-1","seq":3,"at_ms":5,"txid":"t1","kind":"vote","participant":"bank","vote":"no","reason":"guard"}"#;
    match parse_incoming(e).unwrap() {
        Incoming::Event(ev) => {
            assert_eq!(ev.seq, 3);
            assert!(matches!(ev.kind, EventKind::Vote { vote: Vote::No, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_incoming(r#"{"lagged": 42}"#).unwrap(),
        Incoming::Lagged(42)
    );
    assert!(parse_incoming("not json").is_err());
    assert_eq!(batch_interval_ms(1), 0);
    assert!(batch_interval_ms(1000) > batch_interval_ms(50));
    assert!(parse_incoming(r#"{"kind":"nope"}"#).is_err());
}

#[test]
fn api_errors_are_shown_verbatim() {
    let body = r#"{"error":"faults_disabled","message":"fault injection is disabled; start the coordinator with fault_injection = true"}"#;
    assert_eq!(
        error_text(403, body),
        "403 faults_disabled: fault injection is disabled; start the coordinator with fault_injection = true"
    );
    assert_eq!(error_text(502, ""), "HTTP 502");
    assert_eq!(error_text(500, "oops"), "HTTP 500: oops");
}
