//! The core's rules, scripted: every input is a line, every expected output is spelled out.

use super::*;
use twopc_protocol::{AckResult, Operations, ParticipantKind};

pub(super) fn now(ms: u64) -> Now {
    Now {
        monotonic_ms: ms,
        unix_ms: 1_000_000 + ms,
    }
}

pub(super) fn t(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn c1() -> CoordinatorId {
    CoordinatorId::new("c1").unwrap()
}

pub(super) fn config() -> CoreConfig {
    CoreConfig {
        name: "mem".parse().unwrap(),
        kind: ParticipantKind::Redis,
        max_in_flight: 3,
        decision_timeout_ms: 1000,
        decision_retry_initial_ms: 100,
        decision_retry_max_ms: 1000,
        lock_wait_ms: 1000,
        give_way_ms: 50,
        wait_check_ms: None,
    }
}

fn prepare(txid: &str, timeout_ms: Option<u64>) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: t(txid),
        coordinator: c1(),
        ops: Operations::Redis(vec![]),
        timeout_ms,
        priority: None,
        epoch: None,
    }
}

pub(super) fn calls(out: &[Output]) -> Vec<(CallId, Call)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Call { call, op } => Some((*call, op.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn sent(out: &[Output]) -> Vec<(ConnId, Frame)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, frame, .. } => Some((*conn, frame.clone())),
            _ => None,
        })
        .collect()
}

/// A core with connection 1 open and its (empty) in-doubt report sent.
pub(super) fn connected() -> Participant {
    connected_with(config())
}

/// [`connected`] with its own configuration.
pub(super) fn connected_with(config: CoreConfig) -> Participant {
    let mut p = Participant::new(config);
    let out = p.step(now(0), Input::Connected { conn: 1 });
    let [(call, Call::ListPrepared)] = calls(&out)[..] else {
        panic!("{out:?}")
    };
    let out = p.step(
        now(0),
        Input::Completed {
            call,
            result: Ok(Answer::Listed(vec![])),
        },
    );
    assert!(matches!(
        &sent(&out)[..],
        [(1, Frame { id: 0, msg: Message::InDoubtReport { prepared, .. }, .. })] if prepared.is_empty()
    ));
    p
}

pub(super) fn receive(p: &mut Participant, at: u64, id: u64, msg: Message) -> Vec<Output> {
    p.step(
        now(at),
        Input::Received {
            conn: 1,
            frame: Frame::new(id, msg),
        },
    )
}

pub(super) fn complete(p: &mut Participant, at: u64, call: CallId, answer: Answer) -> Vec<Output> {
    p.step(
        now(at),
        Input::Completed {
            call,
            result: Ok(answer),
        },
    )
}

fn fail(p: &mut Participant, call: CallId, why: &str) -> Vec<Output> {
    p.step(
        now(0),
        Input::Completed {
            call,
            result: Err(ResourceFailed(why.into())),
        },
    )
}

#[test]
fn decision_requests_back_off_exponentially_up_to_the_cap() {
    let (i, m) = (100, 1000);
    let waits: Vec<u64> = (1..=6).map(|a| backoff_ms(i, m, a)).collect();
    assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff_ms(i, m, 1000), m);
}

#[test]
fn a_report_that_cannot_be_read_closes_the_connection() {
    let mut p = Participant::new(config());
    let out = p.step(now(0), Input::Connected { conn: 7 });
    let out = fail(&mut p, calls(&out)[0].0, "down");
    assert_eq!(
        out,
        vec![Output::Close {
            conn: 7,
            why: CloseWhy::CannotListPrepared
        }]
    );
    // Not reported: the termination timer has nobody to ask.
    assert!(p.step(now(5000), Input::Tick).is_empty());
}

#[test]
fn same_txid_is_serialized_and_entries_are_dropped() {
    let mut p = connected();
    let out = receive(&mut p, 10, 1, prepare("t", Some(500)));
    let [(first, Call::Prepare { timeout_ms, .. })] = &calls(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*timeout_ms, Some(500));
    // A second copy of the same Prepare waits; another txid is independent.
    let queued = receive(&mut p, 20, 2, prepare("t", Some(500)));
    assert!(queued.is_empty(), "{queued:?}");
    let other = receive(
        &mut p,
        20,
        3,
        Message::Commit {
            txid: t("u"),
            coordinator: None,
            epoch: None,
        },
    );
    assert_eq!(calls(&other).len(), 1);
    let out = complete(&mut p, 110, *first, Answer::Voted(PrepareOutcome::Yes));
    // The queued copy starts now, with the time it waited taken off its timeout.
    let [(second, Call::Prepare { timeout_ms, .. })] = &calls(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*timeout_ms, Some(410));
    assert_eq!(
        sent(&out),
        vec![(
            1,
            Frame::new(
                1,
                Message::Vote {
                    txid: t("t"),
                    vote: Vote::Yes,
                    reason: None,
                    class: None,
                }
            )
        )]
    );
    complete(&mut p, 120, *second, Answer::Voted(PrepareOutcome::Yes));
    complete(
        &mut p,
        120,
        calls(&other)[0].0,
        Answer::Settled(AckResult::NotPrepared),
    );
    assert!(!p.busy());
}

#[test]
fn requests_beyond_the_permits_are_busy_and_pings_need_none() {
    let mut p = connected();
    receive(&mut p, 0, 1, prepare("a", None));
    receive(&mut p, 0, 2, prepare("b", None));
    receive(&mut p, 0, 3, prepare("c", None));
    let error_code = |out: &[Output]| match &sent(out)[..] {
        [(
            1,
            Frame {
                id,
                msg: Message::Error { code, .. },
                ..
            },
        )] => Some((*id, *code)),
        _ => None,
    };
    let out = receive(&mut p, 0, 4, prepare("d", None));
    assert_eq!(error_code(&out), Some((4, ErrorCode::Busy)));
    let out = receive(&mut p, 0, 5, Message::Ping { nonce: 9 });
    assert_eq!(
        sent(&out),
        vec![(1, Frame::new(5, Message::Pong { nonce: 9 }))]
    );
    let out = receive(
        &mut p,
        0,
        6,
        Message::DecisionRequest {
            txid: t("a"),
            coordinator: None,
        },
    );
    assert_eq!(error_code(&out), Some((6, ErrorCode::Unexpected)));
}

#[test]
fn a_failed_call_is_an_internal_error_never_a_vote() {
    let mut p = connected();
    let out = receive(&mut p, 0, 1, prepare("a", None));
    let out = fail(&mut p, calls(&out)[0].0, "resource error: boom");
    assert_eq!(
        sent(&out),
        vec![(
            1,
            Frame::new(
                1,
                Message::Error {
                    code: ErrorCode::Internal,
                    message: "resource error: boom".into()
                }
            )
        )]
    );
}

#[test]
fn a_yes_whose_connection_closed_asks_at_once_on_a_live_one() {
    let mut p = connected();
    let out = receive(&mut p, 0, 1, prepare("orphan", None));
    let call = calls(&out)[0].0;
    p.step(now(0), Input::Disconnected { conn: 1 });
    // A second connection, reported.
    let out = p.step(now(0), Input::Connected { conn: 2 });
    let report = calls(&out)[0].0;
    complete(&mut p, 0, report, Answer::Listed(vec![]));
    let out = complete(&mut p, 10, call, Answer::Voted(PrepareOutcome::Yes));
    assert!(matches!(
        &sent(&out)[..],
        [(2, Frame { msg: Message::DecisionRequest { txid, .. }, .. })] if *txid == t("orphan")
    ));
}

#[test]
fn the_termination_timer_asks_after_the_timeout_with_backoff() {
    let mut p = connected();
    let held = vec![PreparedTx {
        txid: t("x"),
        coordinator: c1(),
        prepared_at_ms: now(0).unix_ms,
    }];
    let round = |p: &mut Participant, at: u64| {
        let out = p.step(now(at), Input::Tick);
        let call = calls(&out)[0].0;
        sent(&complete(p, at, call, Answer::Listed(held.clone()))).len()
    };
    assert_eq!(round(&mut p, 500), 0, "not yet due");
    assert_eq!(round(&mut p, 1000), 1);
    assert_eq!(round(&mut p, 1050), 0, "backing off");
    assert_eq!(round(&mut p, 1100), 1);
    assert_eq!(round(&mut p, 1250), 0);
    assert_eq!(round(&mut p, 1300), 1);
    // Pending changes nothing; Abort settles it and ends the asking.
    let out = receive(
        &mut p,
        1300,
        9,
        Message::DecisionAnswer {
            txid: t("x"),
            status: DecisionStatus::Pending,
        },
    );
    assert!(out.is_empty());
    let out = receive(
        &mut p,
        1300,
        10,
        Message::DecisionAnswer {
            txid: t("x"),
            status: DecisionStatus::Abort,
        },
    );
    let [(
        call,
        Call::Settle {
            decision: Decision::Abort,
            ..
        },
    )] = &calls(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert!(sent(&complete(
        &mut p,
        1300,
        *call,
        Answer::Settled(AckResult::Applied)
    ))
    .is_empty());
}

#[test]
fn asks_name_the_owner_and_take_the_connections_in_turn_when_it_never_spoke() {
    let mut p = connected();
    let out = p.step(now(0), Input::Connected { conn: 2 });
    let report = calls(&out)[0].0;
    complete(&mut p, 0, report, Answer::Listed(vec![]));
    // Prepared for c9 (taken over by some other process, say): c9 spoke on neither
    // connection, and the one that answers `pending` must not be the only one ever asked.
    let held = vec![PreparedTx {
        txid: t("x"),
        coordinator: CoordinatorId::new("c9").unwrap(),
        prepared_at_ms: now(0).unix_ms,
    }];
    let mut asked_on = Vec::new();
    for at in [1000, 1100, 1300, 1700] {
        let out = p.step(now(at), Input::Tick);
        let call = calls(&out)[0].0;
        for (conn, f) in sent(&complete(&mut p, at, call, Answer::Listed(held.clone()))) {
            let Message::DecisionRequest { coordinator, .. } = f.msg else {
                panic!("{f:?}")
            };
            assert_eq!(coordinator.unwrap().as_str(), "c9");
            asked_on.push(conn);
        }
    }
    assert_eq!(asked_on.len(), 4, "{asked_on:?}");
    assert!(
        asked_on.contains(&1) && asked_on.contains(&2),
        "{asked_on:?}"
    );
}

#[test]
fn nobody_connected_means_nothing_is_read_or_asked() {
    let mut p = Participant::new(config());
    assert!(p.step(now(10_000), Input::Tick).is_empty());
}

#[test]
fn messages_of_a_replaced_holder_of_the_coordinator_id_are_refused() {
    let mut p = connected();
    let at_epoch = |txid: &str, epoch: Option<u64>| Message::Prepare {
        submitted_by: None,
        txid: t(txid),
        coordinator: c1(),
        ops: Operations::Redis(vec![]),
        timeout_ms: None,
        priority: None,
        epoch,
    };
    let refused = |out: &[Output]| {
        sent(out).iter().any(|(_, f)| {
            matches!(
                &f.msg,
                Message::Error {
                    code: ErrorCode::StaleEpoch,
                    message
                } if message.contains("epoch 3") && message.contains("epoch 2")
            )
        })
    };
    // Epoch 3 is seen first (the id's new holder after a takeover) ...
    let out = receive(&mut p, 0, 1, at_epoch("a", Some(3)));
    assert_eq!(calls(&out).len(), 1, "{out:?}");
    // ... so the old holder's Commit, Abort and Prepare at epoch 2 are refused, untouched.
    for (id, msg) in [
        (
            2,
            Message::Commit {
                txid: t("a"),
                coordinator: Some(c1()),
                epoch: Some(2),
            },
        ),
        (
            3,
            Message::Abort {
                txid: t("a"),
                reason: None,
                coordinator: Some(c1()),
                epoch: Some(2),
            },
        ),
        (4, at_epoch("b", Some(2))),
    ] {
        let out = receive(&mut p, 0, id, msg);
        assert!(refused(&out), "{out:?}");
        assert!(calls(&out).is_empty(), "{out:?}");
    }
    // Another coordinator id has epochs of its own; a message without one (file log, older
    // coordinators) is never refused; a higher epoch raises the mark.
    let out = receive(
        &mut p,
        0,
        5,
        Message::Prepare {
            submitted_by: None,
            txid: t("c"),
            coordinator: CoordinatorId::new("c2").unwrap(),
            ops: Operations::Redis(vec![]),
            timeout_ms: None,
            priority: None,
            epoch: Some(1),
        },
    );
    assert!(!refused(&out));
    let out = receive(&mut p, 0, 6, at_epoch("d", None));
    assert!(!refused(&out));
    let out = receive(&mut p, 0, 7, at_epoch("e", Some(4)));
    assert!(!refused(&out));
    let stale = |out: &[Output]| {
        sent(out).iter().any(|(_, f)| {
            matches!(
                f.msg,
                Message::Error {
                    code: ErrorCode::StaleEpoch,
                    ..
                }
            )
        })
    };
    let out = receive(&mut p, 0, 8, at_epoch("f", Some(3)));
    assert!(stale(&out));
    // A new holder announces itself with ListPrepared (a takeover may have nothing to tell
    // this participant otherwise): from then on the holder before it is refused here too.
    receive(
        &mut p,
        0,
        9,
        Message::ListPrepared {
            coordinator: Some(c1()),
            epoch: Some(6),
        },
    );
    let out = receive(&mut p, 0, 10, at_epoch("g", Some(5)));
    assert!(stale(&out));
}
