//! The event log and the derived view: badges, outcomes, in-doubt, caps.

use super::*;

#[test]
fn log_caps_and_keeps_absolute_indices() {
    let mut log = EventLog::with_cap(3);
    for i in 0..5 {
        assert_eq!(
            log.push(ev(
                i,
                None,
                EventKind::LogFsync {
                    records: 1,
                    micros: 1
                }
            )),
            i
        );
    }
    assert_eq!(log.len(), 3);
    assert_eq!(log.base(), 2);
    assert_eq!(log.end(), 5);
    assert_eq!(log.evicted(), 2);
    assert!(log.get(1).is_none());
    assert_eq!(log.get(4).unwrap().seq, 4);
    let idx: Vec<u64> = log.range(0, 10).map(|(i, _)| i).collect();
    assert_eq!(idx, vec![2, 3, 4]);
    let idx: Vec<u64> = log.range(3, 4).map(|(i, _)| i).collect();
    assert_eq!(idx, vec![3]);
}

#[test]
fn happy_path_badges() {
    let evs = happy("t1");
    let mut d = Derived::starting_at(0);
    // After both votes: both participants prepared (uncertain), coordinator working.
    for (i, e) in evs.iter().enumerate().take(7) {
        d.apply(i as u64, e);
    }
    let t = d.tx("t1").unwrap();
    assert_eq!(t.parts["bank"].badge.badge, Badge::Prepared);
    assert_eq!(t.parts["ledger"].badge.badge, Badge::Prepared);
    assert_eq!(t.parts["bank"].prepared_at_ms, Some(1_004));
    assert_eq!(t.coordinator.badge, Badge::Working);
    assert_eq!(t.outcome(), TxOutcome::InProgress);
    // Log write then fsync.
    d.apply(7, &evs[7]);
    assert_eq!(d.tx("t1").unwrap().log.badge, Badge::Working);
    d.apply(8, &evs[8]);
    assert_eq!(d.tx("t1").unwrap().log.badge, Badge::Committed);
    assert_eq!(d.tx("t1").unwrap().log.text, "COMMIT durable");
    d.apply(9, &evs[9]);
    assert_eq!(
        d.tx("t1").unwrap().outcome(),
        TxOutcome::Decided(Decision::Commit)
    );
    for (i, e) in evs.iter().enumerate().skip(10) {
        d.apply(i as u64, e);
    }
    let t = d.tx("t1").unwrap();
    assert_eq!(t.outcome(), TxOutcome::Done(Decision::Commit));
    assert_eq!(t.client.badge, Badge::Committed);
    assert_eq!(t.parts["ledger"].badge.badge, Badge::Committed);
    assert_eq!(t.parts["ledger"].prepared_at_ms, None);
    assert_eq!(t.timings.unwrap().prepare_ms, 1.5);
    assert_eq!(d.counts.committed, 1);
    assert_eq!(d.counts.messages, 8);
    assert_eq!(
        t.participants,
        vec!["bank".to_string(), "ledger".to_string()]
    );
}

/// A `heuristic` event makes the transaction's outcome heuristic, its participant's
/// badge HEURISTIC, and it stays so after tx_end (never shown as plain "committed").
#[test]
fn a_heuristic_ack_is_shown_as_a_heuristic_outcome() {
    let mut d = Derived::starting_at(0);
    let mut evs = happy("t1");
    let end = evs.len() - 1; // tx_end
    evs.insert(
        end,
        ev(
            end as u64,
            Some("t1"),
            EventKind::Heuristic {
                participant: "ledger".into(),
                decision: Decision::Commit,
                result: HeuristicKind::Conflict,
            },
        ),
    );
    for (i, e) in evs.iter().enumerate() {
        d.apply(i as u64, e);
    }
    let t = d.tx("t1").unwrap();
    assert_eq!(t.outcome(), TxOutcome::Heuristic(Outcome::HeuristicMixed));
    assert_eq!(t.outcome().label(), "HEURISTIC MIXED");
    assert_eq!(t.outcome().badge(), Badge::Heuristic);
    assert_eq!(t.parts["ledger"].badge.badge, Badge::Heuristic);
    assert_eq!(t.parts["bank"].badge.badge, Badge::Committed);
    assert_eq!(t.client.badge, Badge::Heuristic);
    assert_eq!(t.coordinator.badge, Badge::Heuristic);
    assert_eq!((d.counts.committed, d.counts.heuristic), (0, 1));
    // The coordinator's answer carries them too (a page that missed the event).
    let mut d = Derived::starting_at(0);
    let evs = happy("t2");
    for (i, e) in evs[..10].iter().enumerate() {
        d.apply(i as u64, e);
    }
    let resp = TransactionResponse {
        submitted_by: None,
        id: TxId::new("t2").unwrap(),
        outcome: Outcome::HeuristicHazard,
        reason: None,
        attempts: 1,
        timings: PhaseTimings::default(),
        decision: Some(Decision::Commit),
        heuristics: vec![HeuristicReport {
            participant: "bank".parse().unwrap(),
            result: HeuristicKind::NotPrepared,
        }],
        abort_class: None,
        coordinator: None,
    };
    assert!(d.resolve(&resp, &[]));
    let t = d.tx("t2").unwrap();
    assert_eq!(t.outcome(), TxOutcome::Heuristic(Outcome::HeuristicHazard));
    assert_eq!(t.outcome().label(), "HEURISTIC HAZARD");
    assert_eq!(t.parts["bank"].badge.badge, Badge::Heuristic);
}

#[test]
fn no_vote_aborts() {
    let mut d = Derived::starting_at(0);
    let t = Some("t2");
    let evs = [
        ev(
            0,
            t,
            EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["bank".into(), "ledger".into()],
                attempt: 1,
                client: None,
            },
        ),
        ev(1, t, sent("bank", "prepare")),
        ev(2, t, sent("ledger", "prepare")),
        ev(
            3,
            t,
            EventKind::Vote {
                participant: "ledger".into(),
                vote: Vote::No,
                reason: Some("guard".into()),
                class: None,
            },
        ),
        ev(
            4,
            t,
            EventKind::Decision {
                decision: Decision::Abort,
                reason: Some("participant ledger voted no: guard".into()),
            },
        ),
        ev(
            5,
            t,
            EventKind::Vote {
                participant: "bank".into(),
                vote: Vote::Yes,
                reason: None,
                class: None,
            },
        ),
    ];
    for (i, e) in evs.iter().enumerate() {
        d.apply(i as u64, e);
    }
    let tx = d.tx("t2").unwrap();
    assert_eq!(tx.parts["ledger"].badge.badge, Badge::Aborted);
    assert_eq!(tx.coordinator.badge, Badge::Aborted);
    assert_eq!(tx.parts["bank"].badge.badge, Badge::Prepared);
    assert!(tx.reason.as_deref().unwrap().contains("voted no"));
    assert_eq!(tx.outcome(), TxOutcome::Decided(Decision::Abort));
}

#[test]
fn disconnect_timeouts_and_restart_make_prepared_in_doubt() {
    let evs = happy("t1");
    let mut d = Derived::starting_at(0);
    for (i, e) in evs.iter().enumerate().take(7) {
        d.apply(i as u64, e);
    }
    d.apply(
        7,
        &ev(
            7,
            None,
            EventKind::ParticipantDisconnected {
                participant: "ledger".into(),
                reason: "partition".into(),
            },
        ),
    );
    let t = d.tx("t1").unwrap();
    assert_eq!(t.parts["ledger"].badge.badge, Badge::InDoubt);
    assert_eq!(t.parts["bank"].badge.badge, Badge::Prepared);
    assert_eq!(d.nodes["ledger"].connected, Some(false));
    assert_eq!(t.outcome(), TxOutcome::InDoubt);
    // A new coordinator run: the rest of the prepared participants are in doubt too.
    let mut e = ev(
        0,
        None,
        EventKind::CoordinatorStarted {
            coordinator: "c1".into(),
            recovering: 1,
        },
    );
    e.run = "c1-2".into();
    d.apply(8, &e);
    let t = d.tx("t1").unwrap();
    assert_eq!(t.parts["bank"].badge.badge, Badge::InDoubt);
    assert_eq!(t.coordinator.text, "recovering");
    assert_eq!(d.counts.coordinator_starts, 1);
    // Timeout on a prepared participant, decision request.
    let mut d = Derived::starting_at(0);
    for (i, e) in evs.iter().enumerate().take(7) {
        d.apply(i as u64, e);
    }
    d.apply(
        7,
        &ev(
            7,
            Some("t1"),
            EventKind::Timeout {
                participant: "bank".into(),
                phase: Phase::Commit,
            },
        ),
    );
    d.apply(
        8,
        &ev(
            8,
            Some("t1"),
            EventKind::DecisionRequested {
                participant: "ledger".into(),
            },
        ),
    );
    let t = d.tx("t1").unwrap();
    assert_eq!(t.parts["bank"].badge.badge, Badge::InDoubt);
    assert_eq!(t.parts["ledger"].badge.badge, Badge::InDoubt);
    let held = held_prepared(&d, 2_000);
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].held_ms, Some(2_000 - 1_004));
    // The ack resolves it.
    d.apply(
        9,
        &ev(
            9,
            Some("t1"),
            EventKind::Ack {
                participant: "bank".into(),
                decision: Decision::Commit,
            },
        ),
    );
    assert_eq!(held_prepared(&d, 2_000).len(), 1);
}

#[test]
fn lookups_resolve_transactions_whose_events_were_missed() {
    use twopc_protocol::api::{Outcome, PhaseTimings};
    let evs = happy("t1");
    let mut m = Model::default();
    ingest_all(&mut m, evs[..10].to_vec());
    assert_eq!(
        m.live.stale_unfinished(1_009 + 500, 1_000, 10),
        Vec::<String>::new()
    );
    assert_eq!(
        m.live.stale_unfinished(1_009 + 1_000, 1_000, 10),
        vec!["t1".to_string()]
    );
    let resp = |outcome| TransactionResponse {
        submitted_by: None,
        id: TxId::new("t1").unwrap(),
        outcome,
        reason: None,
        attempts: 1,
        timings: PhaseTimings {
            prepare_ms: 1.0,
            decide_ms: 1.0,
            commit_ms: 1.0,
            total_ms: 3.0,
        },
        decision: None,
        heuristics: Vec::new(),
        abort_class: None,
        coordinator: None,
    };
    let st = |name: &str, connected, awaiting_ack| ParticipantStatus {
        name: name.parse().unwrap(),
        connected,
        reported_prepared: 0,
        foreign_prepared: 0,
        awaiting_ack,
        kind: twopc_protocol::ParticipantKind::Redis,
        url: String::new(),
        last_error: None,
    };
    // Still running: nothing changes.
    assert!(!m.live.clone().resolve(&resp(Outcome::InProgress), &[]));
    // Committed, but ledger still owes its ack: only bank is resolved.
    m.statuses = vec![st("bank", true, 0), st("ledger", true, 1)];
    m.reduce(Action::TxLookedUp(resp(Outcome::Committed)));
    let t = m.live.tx("t1").unwrap();
    assert_eq!(t.parts["bank"].badge.badge, Badge::Committed);
    assert_eq!(t.parts["ledger"].badge.badge, Badge::Prepared);
    assert!(!t.ended);
    // Later every participant is settled: finished.
    m.statuses = vec![st("bank", true, 0), st("ledger", true, 0)];
    m.reduce(Action::TxLookedUp(resp(Outcome::Committed)));
    let t = m.live.tx("t1").unwrap();
    assert!(t.ended);
    assert_eq!(t.outcome(), TxOutcome::Done(Decision::Commit));
    assert_eq!(t.timings.unwrap().total_ms, Some(3.0));
    assert_eq!(m.live.counts.committed, 1);
    assert!(m
        .notices
        .back()
        .unwrap()
        .text
        .contains("while the page was disconnected"));
    // Unknown ones are not asked about again.
    ingest_all(&mut m, happy("t2")[..3].to_vec());
    assert_eq!(
        m.live.stale_unfinished(10_000, 1_000, 10),
        vec!["t2".to_string()]
    );
    m.reduce(Action::TxUnknown("t2".into()));
    assert!(m.live.stale_unfinished(10_000, 1_000, 10).is_empty());
    // Finished transactions are left alone.
    assert!(!m.live.resolve(&resp(Outcome::Aborted), &m.statuses.clone()));
}

#[test]
fn derived_caps_transactions() {
    let mut d = Derived::starting_at(0);
    d.max_txs = 3;
    for i in 0..5u64 {
        let id = format!("t{i}");
        d.apply(
            i,
            &ev(
                i,
                Some(&id),
                EventKind::TxBegin {
                    submitted_by: None,
                    participants: vec!["bank".into()],
                    attempt: 1,
                    client: None,
                },
            ),
        );
    }
    assert_eq!(d.tx_count(), 3);
    assert_eq!(d.evicted_txs, 2);
    assert!(d.tx("t0").is_none());
    assert_eq!(d.txs().next().unwrap().id, "t2");
    assert_eq!(d.counts.txs, 5);
}

/// A transaction the coordinator retried is one view with its attempts: attempt 1 aborted
/// by a conflict and retried, attempt 2 (its own wire txid) committed; attempt 1's late end
/// changes neither the outcome nor the badges.
#[test]
fn a_retried_transaction_is_one_view_with_its_attempts() {
    let a2 = "~2.0000000000000001.t1";
    let mut d = Derived::default();
    let mut kinds: Vec<(Option<&str>, EventKind)> = vec![
        (
            Some("t1"),
            EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["bank".into(), "ledger".into()],
                attempt: 1,
                client: None,
            },
        ),
        (
            Some("t1"),
            EventKind::Vote {
                participant: "ledger".into(),
                vote: Vote::No,
                reason: Some("lock wait".into()),
                class: Some(twopc_protocol::NoClass::Conflict),
            },
        ),
        (
            Some("t1"),
            EventKind::Decision {
                decision: Decision::Abort,
                reason: Some("participant ledger voted no: lock wait".into()),
            },
        ),
        (
            Some("t1"),
            EventKind::RetryScheduled {
                client: TxId::new("t1").unwrap(),
                next_attempt: 2,
                backoff_ms: 3,
                reason: "participant ledger voted no: lock wait".into(),
            },
        ),
        (
            Some(a2),
            EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["bank".into(), "ledger".into()],
                attempt: 2,
                client: Some(TxId::new("t1").unwrap()),
            },
        ),
    ];
    // Attempt 2 runs the happy path under its own txid.
    for e in happy(a2).into_iter().skip(1) {
        kinds.push((e.txid.as_ref().map(|_| a2), e.kind));
    }
    // Attempt 1's abort is acknowledged late.
    kinds.push((
        Some("t1"),
        EventKind::TxEnd {
            decision: Decision::Abort,
            prepare_ms: 0.0,
            decide_ms: 0.0,
            commit_ms: 4.0,
            heuristic: false,
            attempt: 1,
            retried: true,
        },
    ));
    for (i, (t, k)) in kinds.into_iter().enumerate() {
        d.apply(i as u64, &ev(i as u64, t, k));
    }
    assert_eq!(d.tx_count(), 1, "one transaction, not one per attempt");
    let t = d.tx("t1").unwrap();
    assert_eq!(t.attempt_count(), 2);
    assert!(t.owns(a2) && t.owns("t1"));
    assert_eq!(t.outcome(), TxOutcome::Done(Decision::Commit));
    assert_eq!(
        t.attempts_summary(),
        "attempt 1: aborted, retried; attempt 2: committed"
    );
    assert_eq!(t.badge_of("bank").badge, Badge::Committed);
    assert_eq!(d.counts.committed, 1);
    assert_eq!(d.counts.aborted, 0);
}
