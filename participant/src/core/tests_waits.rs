//! The lock-wait rules (the `waits` module), scripted.

use super::tests::{calls, complete, connected, connected_with, now, receive, sent, t};
use super::*;
use crate::resource::{Blocked, OnePhaseOutcome, Wait};
use twopc_protocol::{AckResult, NoClass, Operations};

fn prepare_aged(txid: &str, age: u64) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: t(txid),
        coordinator: CoordinatorId::new("c1").unwrap(),
        ops: Operations::Redis(vec![]),
        timeout_ms: Some(5_000),
        priority: Some(Priority(age)),
        epoch: None,
    }
}

fn blocked_by(holder: &str) -> Answer {
    Answer::Voted(PrepareOutcome::Blocked(Blocked {
        holder: t(holder),
        what: "key \"balance:1\"".into(),
    }))
}

/// The vote in `out`, as (vote, reason, class).
fn vote(out: &[Output]) -> (Vote, Option<String>, Option<NoClass>) {
    sent(out)
        .into_iter()
        .find_map(|(_, f)| match f.msg {
            Message::Vote {
                vote,
                reason,
                class,
                ..
            } => Some((vote, reason, class)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no vote in {out:?}"))
}

/// `old` (priority 1) prepared and holds the lock; returns the core and `old`'s txid.
fn with_prepared_holder() -> Participant {
    let mut p = connected();
    let out = receive(&mut p, 0, 1, prepare_aged("old", 1));
    let call = calls(&out)[0].0;
    complete(&mut p, 1, call, Answer::Voted(PrepareOutcome::Yes));
    p
}

#[test]
fn a_waiter_runs_again_when_the_holder_settles() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, prepare_aged("young", 2));
    let call = calls(&out)[0].0;
    let out = complete(&mut p, 11, call, blocked_by("old"));
    assert!(out.is_empty(), "waits, says nothing: {out:?}");
    assert_eq!(p.waiting(), 1);
    // Younger than the holder: it gives way at 11 + 50 unless the holder settles first.
    assert_eq!(p.next_wake_ms(), Some(61));
    let out = receive(
        &mut p,
        20,
        3,
        Message::Commit {
            txid: t("old"),
            coordinator: None,
            epoch: None,
        },
    );
    let settle = calls(&out)[0].0;
    let out = complete(&mut p, 21, settle, Answer::Settled(AckResult::Applied));
    // The waiter is handed to the resource again, under the same call id.
    assert!(
        matches!(&calls(&out)[..], [(c, Call::Prepare { txid, .. })] if *c == call && *txid == t("young")),
        "{out:?}"
    );
    let out = complete(&mut p, 22, call, Answer::Voted(PrepareOutcome::Yes));
    assert_eq!(vote(&out).0, Vote::Yes);
    assert_eq!(p.waiting(), 0);
    assert_eq!(p.next_wake_ms(), None);
}

#[test]
fn a_younger_waiter_gives_way_to_an_older_holder() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, prepare_aged("young", 2));
    complete(&mut p, 10, calls(&out)[0].0, blocked_by("old"));
    assert!(p.step(now(59), Input::Wake).is_empty());
    let out = p.step(now(60), Input::Wake);
    let (v, reason, class) = vote(&out);
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    let reason = reason.unwrap();
    assert!(
        reason.contains("older transaction old") && reason.contains("gave way"),
        "{reason}"
    );
}

#[test]
fn an_older_waiter_waits_for_a_younger_holder_up_to_the_bound() {
    let mut p = connected();
    let out = receive(&mut p, 0, 1, prepare_aged("young", 9));
    complete(
        &mut p,
        0,
        calls(&out)[0].0,
        Answer::Voted(PrepareOutcome::Yes),
    );
    let out = receive(&mut p, 100, 2, prepare_aged("old", 1));
    complete(&mut p, 100, calls(&out)[0].0, blocked_by("young"));
    // No giving way: only the bound (config: 1000 ms) ends the wait.
    assert_eq!(p.next_wake_ms(), Some(1100));
    assert!(p.step(now(1099), Input::Wake).is_empty());
    let (v, reason, class) = vote(&p.step(now(1100), Input::Wake));
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    assert!(reason.unwrap().contains("lock-wait bound"));
}

#[test]
fn an_unknown_holder_counts_as_older() {
    let mut p = connected();
    let out = receive(&mut p, 0, 1, prepare_aged("t", 1));
    complete(
        &mut p,
        0,
        calls(&out)[0].0,
        blocked_by("from-before-a-restart"),
    );
    assert_eq!(p.next_wake_ms(), Some(50));
}

#[test]
fn an_abort_ends_the_wait_at_once_and_runs() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, prepare_aged("young", 2));
    let call = calls(&out)[0].0;
    complete(&mut p, 10, call, blocked_by("old"));
    let abort = Message::Abort {
        txid: t("young"),
        reason: None,
        coordinator: None,
        epoch: None,
    };
    let out = receive(&mut p, 20, 3, abort);
    let (v, reason, _) = vote(&out);
    assert_eq!(v, Vote::No);
    assert!(reason
        .unwrap()
        .contains("aborted by the coordinator while waiting"));
    assert!(
        matches!(
            &calls(&out)[..],
            [(
                _,
                Call::Settle {
                    decision: Decision::Abort,
                    ..
                }
            )]
        ),
        "{out:?}"
    );
    assert_eq!(p.waiting(), 0);
}

#[test]
fn waits_end_when_their_connection_closes() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, prepare_aged("young", 2));
    complete(&mut p, 10, calls(&out)[0].0, blocked_by("old"));
    p.step(now(11), Input::Disconnected { conn: 1 });
    assert_eq!(p.waiting(), 0);
    assert!(!p.busy());
}

fn inner_waits_config() -> CoreConfig {
    CoreConfig {
        wait_check_ms: Some(25),
        ..super::tests::config()
    }
}

#[test]
fn waits_inside_the_resource_are_checked_and_the_younger_is_cancelled() {
    let mut p = Participant::new(inner_waits_config());
    let out = p.step(now(0), Input::Connected { conn: 1 });
    complete(&mut p, 0, calls(&out)[0].0, Answer::Listed(vec![]));
    let out = receive(&mut p, 0, 1, prepare_aged("old", 1));
    let old = calls(&out)[0].0;
    let out = receive(&mut p, 5, 2, prepare_aged("young", 2));
    let young = calls(&out)[0].0;
    // Nothing is listed before a prepare has run for the check interval.
    assert_eq!(p.next_wake_ms(), Some(25));
    let out = p.step(now(25), Input::Wake);
    let [(list, Call::ListWaits)] = calls(&out)[..] else {
        panic!("{out:?}")
    };
    // `young` waits inside PostgreSQL for `old`'s row, 30 ms so far: not yet giving way.
    let wait = |ms| Wait {
        waiter: t("young"),
        holder: t("old"),
        waited_ms: ms,
    };
    let out = complete(&mut p, 26, list, Answer::Waits(vec![wait(30)]));
    assert!(out.is_empty(), "{out:?}");
    let out = p.step(now(51), Input::Wake);
    let list = calls(&out)[0].0;
    let out = complete(&mut p, 52, list, Answer::Waits(vec![wait(55)]));
    assert_eq!(out, vec![Output::Cancel { txid: t("young") }]);
    // The older one is never cancelled for the younger.
    let out = p.step(now(80), Input::Wake);
    let list = calls(&out)[0].0;
    let reverse = Wait {
        waiter: t("old"),
        holder: t("young"),
        waited_ms: 500,
    };
    assert!(complete(&mut p, 81, list, Answer::Waits(vec![reverse])).is_empty());
    // The cancelled statement fails; the NO says why, and may be retried.
    let failed = Answer::Voted(PrepareOutcome::No {
        reason: "canceling statement due to user request".into(),
        class: NoClass::Final,
    });
    let (v, reason, class) = vote(&complete(&mut p, 53, young, failed));
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    assert!(reason.unwrap().contains("gave way"));
    complete(&mut p, 90, old, Answer::Voted(PrepareOutcome::Yes));
}

fn one_phase_aged(txid: &str, age: u64) -> Message {
    Message::CommitOnePhase {
        submitted_by: None,
        txid: t(txid),
        coordinator: CoordinatorId::new("c1").unwrap(),
        ops: Operations::Redis(vec![]),
        priority: Some(Priority(age)),
        epoch: None,
    }
}

fn one_phase_blocked_by(holder: &str) -> Answer {
    Answer::OnePhaseBlocked(Blocked {
        holder: t(holder),
        what: "key \"balance:1\"".into(),
    })
}

/// The Ack in `out`, as (decision, result, reason).
fn ack(out: &[Output]) -> (Decision, AckResult, Option<String>) {
    sent(out)
        .into_iter()
        .find_map(|(_, f)| match f.msg {
            Message::Ack {
                decision,
                result,
                reason,
                ..
            } => Some((decision, result, reason)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ack in {out:?}"))
}

#[test]
fn a_one_phase_commit_waits_for_the_holder_and_runs_again_when_it_settles() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, one_phase_aged("single", 2));
    let [(call, Call::CommitOnePhase { may_wait: true, .. })] = &calls(&out)[..] else {
        panic!("{out:?}")
    };
    let call = *call;
    let out = complete(&mut p, 11, call, one_phase_blocked_by("old"));
    assert!(out.is_empty(), "waits, says nothing: {out:?}");
    assert_eq!(p.waiting(), 1);
    // Younger than the holder, but a one-phase commit holds nothing while it waits: it never
    // gives way (at 11 + 50 for a prepare), only the bound (11 + 1000) ends its wait.
    assert_eq!(p.next_wake_ms(), Some(1011));
    let out = receive(
        &mut p,
        20,
        3,
        Message::Commit {
            txid: t("old"),
            coordinator: None,
            epoch: None,
        },
    );
    let settle = calls(&out)[0].0;
    let out = complete(&mut p, 21, settle, Answer::Settled(AckResult::Applied));
    assert!(
        matches!(&calls(&out)[..], [(c, Call::CommitOnePhase { may_wait: true, .. })] if *c == call),
        "{out:?}"
    );
    let committed = OnePhaseOutcome {
        decision: Decision::Commit,
        result: AckResult::Applied,
        reason: None,
    };
    let out = complete(&mut p, 22, call, Answer::OnePhase(committed));
    assert_eq!(ack(&out).0, Decision::Commit);
    assert_eq!(p.waiting(), 0);
}

#[test]
fn a_one_phase_commit_whose_wait_runs_out_gets_a_last_try_that_may_not_wait() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, one_phase_aged("single", 2));
    let call = calls(&out)[0].0;
    complete(&mut p, 10, call, one_phase_blocked_by("old"));
    assert!(p.step(now(1009), Input::Wake).is_empty());
    // At the bound no NO is made up here: the resource runs it once more, told not to wait,
    // and its answer (an abort it records, or a commit if the key is free by now) is the
    // outcome, so that a repeated CommitOnePhase can never commit after an abort was told.
    let out = p.step(now(1010), Input::Wake);
    assert!(
        matches!(&calls(&out)[..], [(c, Call::CommitOnePhase { may_wait: false, .. })] if *c == call),
        "{out:?}"
    );
    assert!(sent(&out).is_empty(), "{out:?}");
    let aborted = OnePhaseOutcome {
        decision: Decision::Abort,
        result: AckResult::Applied,
        reason: Some("key \"balance:1\" is locked by prepared transaction \"old\"".into()),
    };
    let out = complete(&mut p, 1011, call, Answer::OnePhase(aborted));
    let (decision, _, reason) = ack(&out);
    assert_eq!(decision, Decision::Abort);
    assert!(reason.unwrap().contains("locked"));
}

#[test]
fn a_waiting_one_phase_commit_is_dropped_with_its_connection() {
    let mut p = with_prepared_holder();
    let out = receive(&mut p, 10, 2, one_phase_aged("single", 2));
    complete(&mut p, 10, calls(&out)[0].0, one_phase_blocked_by("old"));
    assert_eq!(p.waiting(), 1);
    // Nothing was done or recorded: the coordinator sends it again on its next connection
    // (it never aborts a one-phase commit by itself), so no last try and no abort.
    let out = p.step(now(20), Input::Disconnected { conn: 1 });
    assert!(calls(&out).is_empty() && sent(&out).is_empty(), "{out:?}");
    assert_eq!(p.waiting(), 0);
    assert!(!p.busy());
}

/// Three prepares wait for one key: each hand-over runs only the first in line (one script,
/// not one per waiter), the others wait for it as the new holder, and a run that does not
/// take the key hands it on to the next.
#[test]
fn a_released_lock_goes_to_the_first_in_line_only() {
    let mut p = connected_with(CoreConfig {
        max_in_flight: 8,
        ..super::tests::config()
    });
    let out = receive(&mut p, 0, 1, prepare_aged("old", 1));
    complete(
        &mut p,
        1,
        calls(&out)[0].0,
        Answer::Voted(PrepareOutcome::Yes),
    );
    let mut waiter = Vec::new();
    for (k, name) in ["w1", "w2", "w3"].into_iter().enumerate() {
        let at = 10 + k as u64;
        let out = receive(&mut p, at, 2 + k as u64, prepare_aged(name, 2 + k as u64));
        let call = calls(&out)[0].0;
        assert!(complete(&mut p, at, call, blocked_by("old")).is_empty());
        waiter.push(call);
    }
    assert_eq!(p.waiting(), 3);
    let settle = |p: &mut Participant, at: u64, id: u64, txid: &str| {
        let commit = Message::Commit {
            txid: t(txid),
            coordinator: None,
            epoch: None,
        };
        let out = receive(p, at, id, commit);
        let call = calls(&out)[0].0;
        complete(p, at, call, Answer::Settled(AckResult::Applied))
    };
    let runs = |out: &[Output]| -> Vec<CallId> {
        calls(out)
            .into_iter()
            .filter(|(_, op)| matches!(op, Call::Prepare { .. }))
            .map(|(c, _)| c)
            .collect()
    };
    let out = settle(&mut p, 20, 10, "old");
    assert_eq!(
        runs(&out),
        vec![waiter[0]],
        "only the first in line runs: {out:?}"
    );
    // w1 takes the key: w2 and w3 now wait for it, nothing runs.
    let out = complete(&mut p, 21, waiter[0], Answer::Voted(PrepareOutcome::Yes));
    assert_eq!(vote(&out).0, Vote::Yes);
    assert!(runs(&out).is_empty(), "{out:?}");
    assert_eq!(p.waiting(), 2);
    let out = settle(&mut p, 30, 11, "w1");
    assert_eq!(runs(&out), vec![waiter[1]], "{out:?}");
    // w2's run ends without the key (its own guard fails): the key goes on to w3.
    let no = PrepareOutcome::No {
        reason: "guard".into(),
        class: NoClass::Final,
    };
    let out = complete(&mut p, 31, waiter[1], Answer::Voted(no));
    assert_eq!(vote(&out).0, Vote::No);
    assert_eq!(runs(&out), vec![waiter[2]], "{out:?}");
    let out = complete(&mut p, 32, waiter[2], Answer::Voted(PrepareOutcome::Yes));
    assert_eq!(vote(&out).0, Vote::Yes);
    assert_eq!(p.waiting(), 0);
}
