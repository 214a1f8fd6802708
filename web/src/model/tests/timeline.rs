//! The reducer: replay cursor, paced live mode, speeds, notices.

use super::*;

#[test]
fn replay_cursor_steps_seeks_and_goes_live() {
    let mut m = Model::default();
    ingest_all(&mut m, happy("t1"));
    assert!(m.is_live());
    assert_eq!(m.position(), 17);
    // Pause freezes at the tail.
    m.reduce(Action::TogglePlay);
    assert_eq!(m.cursor, Some(17));
    assert!(!m.playing);
    // New events do not move a paused cursor.
    ingest_all(&mut m, happy("t2"));
    assert_eq!(m.position(), 17);
    assert_eq!(m.view().tx("t2"), None);
    assert!(m.live.tx("t2").is_some());
    // Step back into t1: before the fsync (index 8), the log record is only written.
    m.reduce(Action::Seek(8));
    assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Working);
    m.reduce(Action::Step(1));
    assert_eq!(m.position(), 9);
    assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Committed);
    m.reduce(Action::Step(-5));
    assert_eq!(m.position(), 4);
    assert_eq!(
        m.view().tx("t1").unwrap().parts["bank"].badge.badge,
        Badge::Working
    );
    // Clamps at both ends.
    m.reduce(Action::Step(-100));
    assert_eq!(m.position(), 0);
    assert!(m.view().tx("t1").is_none());
    m.reduce(Action::Step(1000));
    assert_eq!(m.position(), 34);
    // Play from near the end: ticks advance, then live again.
    m.reduce(Action::Seek(32));
    m.reduce(Action::TogglePlay);
    assert!(m.playing);
    m.reduce(Action::Tick);
    assert_eq!(m.position(), 33);
    m.reduce(Action::Tick);
    assert!(m.is_live());
    // Space when paused at the tail goes live.
    m.reduce(Action::TogglePlay);
    m.reduce(Action::TogglePlay);
    assert!(m.is_live());
    // Step back from live.
    m.reduce(Action::Step(-1));
    assert_eq!(m.cursor, Some(33));
    m.reduce(Action::GoLive);
    assert!(m.is_live());
}

#[test]
fn ingest_records_log_events_before_the_decision() {
    let mut evs = happy("t1");
    let write = evs.remove(7);
    let fsync = evs.remove(7);
    evs.insert(10, write);
    evs.insert(11, fsync);
    let mut m = Model::default();
    ingest_all(&mut m, evs);
    let kinds: Vec<String> = m
        .log
        .range(6, 10)
        .map(|(_, e)| {
            serde_json::to_value(&e.kind).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["vote", "log_write", "log_fsync", "decision"]);
}

#[test]
fn paced_live_mode_walks_to_the_tail() {
    let mut m = Model {
        paced: true,
        ..Model::default()
    };
    ingest_all(&mut m, happy("t1"));
    assert!(m.is_live());
    assert!(m.catching_up());
    assert_eq!(m.position(), 0);
    assert_eq!(m.ticker(), Some(160));
    assert!(m.view().tx("t1").is_none());
    assert_eq!(
        m.live.counts.committed, 1,
        "the live fold is complete at once"
    );
    m.reduce(Action::Tick);
    assert_eq!(m.position(), 1);
    assert_eq!(m.view().tx("t1").unwrap().client.badge, Badge::Working);
    for _ in 0..7 {
        m.reduce(Action::Tick);
    }
    assert_eq!(m.view().tx("t1").unwrap().log.badge, Badge::Working);
    // Pausing freezes where the view is, not at the tail.
    m.reduce(Action::TogglePlay);
    assert_eq!(m.cursor, Some(8));
    assert_eq!(m.ticker(), None);
    m.reduce(Action::GoLive);
    assert!(!m.catching_up());
    assert_eq!(m.position(), 17);
    // A second transaction walks again; ticks past the end stop.
    ingest_all(&mut m, happy("t2"));
    assert_eq!(m.position(), 17);
    for _ in 0..40 {
        m.reduce(Action::Tick);
    }
    assert_eq!(m.position(), 34);
    assert!(!m.catching_up());
    assert_eq!(
        m.view().tx("t2").unwrap().outcome(),
        TxOutcome::Done(Decision::Commit)
    );
    // Too far behind: jump to the tail.
    let mut burst = Vec::new();
    for k in 0..3 {
        burst.extend(happy(&format!("b{k}")));
    }
    ingest_all(&mut m, burst);
    assert!(!m.catching_up());
    assert_eq!(m.position(), m.log.end());
    assert_eq!(m.ticker(), None);
}

#[test]
fn replay_cursor_follows_eviction() {
    let mut m = Model::with_log(EventLog::with_cap(10));
    ingest_all(&mut m, happy("t1"));
    assert_eq!(m.log.base(), 7);
    m.reduce(Action::Seek(0));
    assert_eq!(m.cursor, Some(7));
    ingest_all(&mut m, happy("t2"));
    assert_eq!(m.cursor, Some(24));
    assert_eq!(m.log.evicted(), 24);
    // The live fold saw everything even though the log rolled.
    assert_eq!(m.live.counts.committed, 2);
}

#[test]
fn speed_and_ticks() {
    let mut m = Model::default();
    assert_eq!(m.speed_factor(), 1.0);
    assert_eq!(m.tick_ms(), 500);
    m.reduce(Action::SpeedUp);
    assert_eq!(m.tick_ms(), 250);
    for _ in 0..20 {
        m.reduce(Action::SpeedUp);
    }
    assert_eq!(m.speed_factor(), 16.0);
    for _ in 0..20 {
        m.reduce(Action::SpeedDown);
    }
    assert_eq!(m.speed_factor(), 0.25);
    assert_eq!(m.tick_ms(), 2000);
}

#[test]
fn lagged_notices_submissions_and_scenarios() {
    let mut m = Model::default();
    m.reduce(Action::Ingest(vec![
        Incoming::Lagged(7),
        Incoming::Lagged(3),
    ]));
    assert_eq!(m.lagged, 10);
    m.reduce(Action::Submitted {
        id: "web-1".into(),
        label: "transfer".into(),
    });
    assert_eq!(m.selected.as_deref(), Some("web-1"));
    m.reduce(Action::FaultAnswered(Err("403 faults_disabled: no".into())));
    assert_eq!(m.fault_error.as_deref(), Some("403 faults_disabled: no"));
    for i in 0..10 {
        m.reduce(Action::Notify(Level::Info, format!("n{i}")));
    }
    assert_eq!(m.notices.len(), MAX_NOTICES);
    assert_eq!(m.notices.back().unwrap().text, "n9");
    m.reduce(Action::ScenarioStart {
        name: "happy".into(),
        title: "Happy".into(),
        total: 2,
        generation: 1,
    });
    m.reduce(Action::ScenarioStep {
        generation: 1,
        text: "one".into(),
    });
    m.reduce(Action::ScenarioStep {
        generation: 0,
        text: "stale".into(),
    });
    m.reduce(Action::ScenarioEnd { generation: 1 });
    let s = m.scenario.as_ref().unwrap();
    assert_eq!(s.narration, vec!["one".to_string()]);
    assert!(s.finished);
    m.reduce(Action::Socket(SocketState::Open));
    m.reduce(Action::Socket(SocketState::Retrying(500)));
    assert!(m.notices.back().unwrap().text.contains("dropped"));
}

/// A client without the events scope is told why the page stays empty; one with it is not.
#[test]
fn a_client_without_the_events_scope_is_told_why_nothing_is_drawn() {
    use twopc_protocol::api::{ClientIdentity, Scope};
    let who = |scopes: Vec<Scope>| ClientIdentity {
        authenticated: true,
        client: Some("teller".into()),
        scopes,
        participants: None,
    };
    let mut m = Model::default();
    m.reduce(Action::IdentityLoaded(who(vec![
        Scope::Submit,
        Scope::Events,
    ])));
    assert!(m.notices.is_empty());
    m.reduce(Action::IdentityLoaded(who(vec![
        Scope::Submit,
        Scope::Read,
    ])));
    let last = m.notices.back().expect("a notice");
    assert!(last.text.contains("no events scope"), "{last:?}");
    assert_eq!(
        m.identity.as_ref().unwrap().scopes,
        [Scope::Submit, Scope::Read]
    );
}
