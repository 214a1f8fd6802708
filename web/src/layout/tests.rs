//! The layout's unit tests.

use super::*;
use crate::model::tests::{ev, happy, recv, sent};
use crate::model::{Badge, EventLog, ParticipantConfig};
use twopc_protocol::ParticipantKind;

fn config() -> PublicConfig {
    PublicConfig {
        coordinator_id: "c1".parse().unwrap(),
        fault_injection: true,
        prepare_timeout_ms: 5000,
        participants: vec![
            ParticipantConfig {
                name: "bank".parse().unwrap(),
                kind: ParticipantKind::Postgres,
                url: String::new(),
            },
            ParticipantConfig {
                name: "ledger".parse().unwrap(),
                kind: ParticipantKind::Redis,
                url: String::new(),
            },
        ],
    }
}

fn setup(evs: Vec<Event>) -> (EventLog, Derived) {
    let mut log = EventLog::default();
    for e in evs {
        log.push(e);
    }
    let d = Derived::fold(&log, log.end());
    (log, d)
}

fn input<'a>(
    log: &'a EventLog,
    d: &'a Derived,
    cfg: &'a PublicConfig,
    sel: Option<&'a str>,
) -> DiagramInput<'a> {
    DiagramInput {
        log,
        view: d,
        config: Some(cfg),
        position: log.end(),
        selected: sel,
        batch_start: None,
        coordinator_up: true,
        max_rows: MAX_ROWS,
    }
}

#[test]
fn lanes_are_ordered_and_spaced() {
    let cfg = config();
    let mut d = Derived::starting_at(0);
    d.apply(
        0,
        &ev(
            0,
            Some("t9"),
            EventKind::TxBegin {
                submitted_by: None,
                participants: vec!["zeta".into(), "bank".into()],
                attempt: 1,
                client: None,
            },
        ),
    );
    let names: Vec<String> = lane_names(Some(&cfg), &d)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        vec!["client", "log", "coordinator", "bank", "ledger", "zeta"]
    );
    assert_eq!(lane_x(0), MARGIN_X);
    assert_eq!(lane_x(3) - lane_x(2), LANE_GAP);
    assert_eq!(diagram_width(6), 2.0 * MARGIN_X + 5.0 * LANE_GAP);
    assert_eq!(row_y(2) - row_y(1), ROW_H);
    assert!(diagram_height() > row_y(MAX_ROWS - 1) + SLANT);
}

#[test]
fn arrow_heads_point_along_the_arrow() {
    let [tip, a, b] = arrow_head(0.0, 0.0, 100.0, 0.0);
    assert_eq!(tip, (100.0, 0.0));
    assert!((a.0 - (100.0 - HEAD_LEN)).abs() < 1e-9 && (a.1 - HEAD_HALF).abs() < 1e-9);
    assert!((b.1 + HEAD_HALF).abs() < 1e-9);
    // Right-to-left arrows have their base to the right of the tip.
    let [tip, a, _] = arrow_head(300.0, 0.0, 100.0, SLANT);
    assert_eq!(tip, (100.0, SLANT));
    assert!(a.0 > 100.0 && a.1 < SLANT);
    assert_eq!(arrow_head(1.0, 1.0, 1.0, 1.0), [(1.0, 1.0); 3]);
}

#[test]
fn events_become_arrows_and_marks() {
    let cfg = config();
    let (log, d) = setup(happy("t1"));
    let dg = diagram(input(&log, &d, &cfg, None));
    // 17 events; 4 votes/acks are not drawn separately.
    assert_eq!(dg.items.len(), 13);
    let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "BEGIN",
            "PREPARE",
            "PREPARE",
            "VOTE YES",
            "VOTE YES",
            "append COMMIT",
            "fsync ×1 (130 µs)",
            "DECIDE COMMIT",
            "COMMIT",
            "COMMIT",
            "ACK COMMIT",
            "ACK COMMIT",
            "COMMITTED"
        ]
    );
    // PREPARE to ledger: coordinator lane (2) → ledger lane (4), dropping by SLANT.
    match &dg.items[2].shape {
        Shape::Arrow {
            from,
            to,
            x1,
            x2,
            y2,
            head,
        } => {
            assert_eq!((*from, *to), (2, 4));
            assert_eq!(*x1, lane_x(2));
            assert_eq!(*x2, lane_x(4));
            assert_eq!(*y2, SLANT);
            assert_eq!(head[0], (lane_x(4), SLANT));
        }
        other => panic!("{other:?}"),
    }
    // VOTE from bank: bank (3) → coordinator (2).
    assert!(matches!(
        dg.items[3].shape,
        Shape::Arrow { from: 3, to: 2, .. }
    ));
    assert_eq!(dg.items[3].class, "msg-vote-yes");
    assert!(dg.items[3]
        .tooltip
        .contains("bank → coordinator: VOTE YES t1"));
    // Fsync is a mark on the log lane; the write an arrow to it.
    assert!(matches!(
        dg.items[5].shape,
        Shape::Arrow { from: 2, to: 1, .. }
    ));
    assert!(matches!(dg.items[6].shape, Shape::Mark { lane: 1, .. }));
    assert_eq!(dg.items[4].y, row_y(4));
    assert_eq!(dg.items[12].rel_ms, 16);
    // Badges of the latest transaction.
    assert_eq!(dg.focus.as_deref(), Some("t1"));
    let badge = |n: &str| dg.lanes.iter().find(|l| l.name == n).unwrap().badge.badge;
    assert_eq!(badge("bank"), Badge::Committed);
    assert_eq!(badge("log"), Badge::Committed);
    assert_eq!(badge("client"), Badge::Committed);
}

#[test]
fn message_styles() {
    assert_eq!(
        message_style(MessageType::Vote, "VOTE NO t1: guard").1,
        "msg-vote-no"
    );
    assert_eq!(
        message_style(MessageType::Ack, "ACK Abort t1 (Applied)").0,
        "ACK ABORT"
    );
    assert_eq!(
        message_style(MessageType::DecisionRequest, "DECISION? t1").0,
        "DECISION?"
    );
    assert_eq!(
        message_style(MessageType::DecisionAnswer, "DECISION Commit t1").0,
        "DECISION COMMIT"
    );
    assert_eq!(
        message_style(MessageType::ListPrepared, "LIST PREPARED").0,
        "LIST PREPARED"
    );
    assert!(!drawable(&ev(0, None, recv("bank", "pong", "PONG"))));
}

#[test]
fn rows_are_capped_and_focus_filters() {
    let cfg = config();
    let mut evs = happy("t1");
    let mut t2 = happy("t2");
    for (i, e) in t2.iter_mut().enumerate() {
        e.seq = 100 + i as u64;
    }
    // Interleave a fault and t2 after t1.
    evs.push(ev(
        50,
        None,
        EventKind::FaultInjected {
            fault: "partitioned ledger".into(),
        },
    ));
    evs.extend(t2);
    let (log, d) = setup(evs);
    let dg = diagram(input(&log, &d, &cfg, None));
    assert_eq!(dg.items.len(), MAX_ROWS);
    assert_eq!(
        dg.hidden_before, 6,
        "t1 up to its second vote (index 5) is scrolled out"
    );
    assert_eq!(dg.items.last().unwrap().label, "COMMITTED");
    assert_eq!(dg.focus.as_deref(), Some("t2"));
    // Focus on t1: only its 13 items (the fault came after it ended).
    let dg = diagram(input(&log, &d, &cfg, Some("t1")));
    assert_eq!(dg.items.len(), 13);
    assert!(dg
        .items
        .iter()
        .all(|i| i.txid.as_deref() == Some("t1") || i.class == "mark-fsync"));
    assert_eq!(dg.focus.as_deref(), Some("t1"));
    // Unknown selection: nothing drawn.
    let dg = diagram(input(&log, &d, &cfg, Some("nope")));
    assert!(dg.items.is_empty());
}

#[test]
fn focus_includes_faults_during_an_unfinished_tx() {
    let cfg = config();
    let mut evs: Vec<Event> = happy("t1").into_iter().take(7).collect();
    evs.push(ev(
        7,
        None,
        EventKind::FaultInjected {
            fault: "partitioned ledger".into(),
        },
    ));
    evs.push(ev(
        8,
        None,
        EventKind::ParticipantDisconnected {
            participant: "ledger".into(),
            reason: "partition".into(),
        },
    ));
    evs.push(ev(9, Some("other"), sent("bank", "prepare")));
    let (log, d) = setup(evs);
    let dg = diagram(input(&log, &d, &cfg, Some("t1")));
    let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(
        labels[labels.len() - 2..],
        ["⚡ partitioned ledger", "disconnected"]
    );
    let ledger = dg.lanes.iter().find(|l| l.name == "ledger").unwrap();
    assert!(!ledger.up);
    assert_eq!(ledger.badge.badge, Badge::InDoubt);
}

#[test]
fn new_items_are_ranked_for_staggering() {
    let cfg = config();
    let (log, d) = setup(happy("t1"));
    let mut inp = input(&log, &d, &cfg, None);
    inp.batch_start = Some(10);
    let dg = diagram(inp);
    let ranks: Vec<Option<usize>> = dg.items.iter().map(|i| i.new_rank).collect();
    // Events 10.. are COMMIT, COMMIT, ACK, (ack), ACK, (ack), END.
    assert_eq!(ranks[..8], [None; 8]);
    assert_eq!(ranks[8..], [Some(0), Some(1), Some(2), Some(3), Some(4)]);
    inp.batch_start = Some(0);
    inp.max_rows = 100;
    let mut evs = vec![];
    for k in 0..3 {
        evs.extend(happy(&format!("t{k}")));
    }
    let (log, d) = setup(evs);
    inp.log = &log;
    inp.view = &d;
    inp.position = log.end();
    let dg = diagram(inp);
    assert!(
        dg.items.iter().all(|i| i.new_rank == Some(0)),
        "too many to stagger"
    );
}

#[test]
fn replay_position_limits_what_is_drawn() {
    let cfg = config();
    let (log, _) = setup(happy("t1"));
    let d = Derived::fold(&log, 4);
    let mut inp = input(&log, &d, &cfg, None);
    inp.position = 4;
    let dg = diagram(inp);
    assert_eq!(dg.items.len(), 4);
    let bank = dg.lanes.iter().find(|l| l.name == "bank").unwrap();
    assert_eq!(bank.badge.badge, Badge::Working);
}

#[test]
fn recent_and_human() {
    let (_, d) = setup([happy("a"), happy("b")].concat());
    let r = recent_txs(&d, 1);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, "b");
    assert_eq!(human_ms(850), "850 ms");
    assert_eq!(human_ms(12_345), "12.3 s");
    assert_eq!(human_ms(600_000), "10 min");
}

#[test]
fn stagger_queues_new_items_in_order() {
    let mut st = Stagger::default();
    // Three items arrive at once: 0, 100, 200 ms.
    assert_eq!(
        st.assign(&[1, 2, 3], 1000.0, 100.0),
        vec![0.0, 100.0, 200.0]
    );
    // 50 ms later two more arrive: they queue behind (300 and 400 ms after t=1000).
    let d = st.assign(&[1, 2, 3, 4, 5], 1050.0, 100.0);
    assert_eq!(d[3..], [250.0, 350.0]);
    // Already-started items keep their remaining delay, never growing.
    assert_eq!(d[0], 0.0);
    assert_eq!(d[2], 150.0);
    // A jump (many new items at once) animates everything immediately.
    let many: Vec<u64> = (100..100 + MAX_STAGGER as u64 + 1).collect();
    assert!(st.assign(&many, 2000.0, 100.0).iter().all(|d| *d == 0.0));
    // Many at once are squeezed into the backlog limit, in order.
    let mut st = Stagger::default();
    let ids: Vec<u64> = (0..20).collect();
    let d = st.assign(&ids, 0.0, 200.0);
    assert_eq!(d[1], 100.0);
    assert_eq!(d[19], 1900.0);
    // A queue already at its limit is not extended.
    let mut more = ids.clone();
    more.push(999);
    assert_eq!(*st.assign(&more, 0.0, 200.0).last().unwrap(), 2000.0);
    more.push(1000);
    assert_eq!(*st.assign(&more, 0.0, 200.0).last().unwrap(), 0.0);
}

#[test]
fn log_events_are_drawn_before_the_commit_decision() {
    // As the coordinator streams them: decision first, then the log's write and fsync.
    let mut evs = happy("t1");
    let write = evs.remove(7);
    let fsync = evs.remove(7);
    // evs[7] is now the decision; put write + fsync after the two COMMIT sends.
    evs.insert(10, write);
    evs.insert(11, fsync);
    let cfg = config();
    let (log, d) = setup(evs);
    let dg = diagram(input(&log, &d, &cfg, None));
    let labels: Vec<&str> = dg.items.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(
        labels[5..10],
        [
            "append COMMIT",
            "fsync ×1 (130 µs)",
            "DECIDE COMMIT",
            "COMMIT",
            "COMMIT"
        ]
    );
    // Already causal: unchanged.
    let (log, _) = setup(happy("t1"));
    let all: Vec<u64> = (0..log.end()).collect();
    assert_eq!(causal_order(&log, all.clone()), all);
}

#[test]
fn a_takeover_and_its_end_are_banners_and_counted() {
    let cfg = config();
    let mut evs = happy("t1");
    let n = evs.len() as u64;
    evs.push(ev(
        n,
        None,
        EventKind::Takeover {
            coordinator: "c1".into(),
            epoch: 3,
            recovering: 2,
        },
    ));
    evs.push(ev(
        n + 1,
        None,
        EventKind::TakeoverEnded {
            coordinator: "c1".into(),
            epoch: 3,
        },
    ));
    let (log, d) = setup(evs);
    assert_eq!(d.counts.takeovers, 1);
    let dg = diagram(input(&log, &d, &cfg, None));
    let banners: Vec<(&str, &str)> = dg
        .items
        .iter()
        .filter(|i| i.class == "banner-takeover")
        .map(|i| (i.label.as_str(), i.tooltip.as_str()))
        .collect();
    assert_eq!(banners.len(), 2, "{banners:?}");
    assert_eq!(banners[0].0, "⇄ took over c1 (epoch 3), finishing 2");
    assert!(
        banners[0].1.contains("holds its id now"),
        "{}",
        banners[0].1
    );
    assert_eq!(banners[1].0, "⇄ c1 handed back (epoch 3)");
}

/// A takeover instance's events, forwarded with the id it holds, make a transaction of their
/// own (even with a txid this coordinator also used), marked with that id, drawn and
/// selectable under its own key.
#[test]
fn a_taken_over_ids_transactions_are_their_own_rows() {
    let cfg = config();
    let mut evs = happy("t1");
    let mut n = evs.len() as u64;
    evs.push(ev(
        n,
        None,
        EventKind::Takeover {
            coordinator: "c2".into(),
            epoch: 2,
            recovering: 1,
        },
    ));
    // c2's t1, logged COMMIT without END: the instance delivers the Commit and ends it.
    for kind in [
        sent("ledger", "commit"),
        recv("ledger", "ack", "ACK Commit t1 (Applied)"),
        EventKind::Ack {
            participant: "ledger".into(),
            decision: Decision::Commit,
        },
        EventKind::TxEnd {
            decision: Decision::Commit,
            prepare_ms: 0.0,
            decide_ms: 0.0,
            commit_ms: 3.0,
            heuristic: false,
            attempt: 1,
            retried: false,
        },
    ] {
        n += 1;
        let mut e = ev(n, Some("t1"), kind);
        e.on_behalf_of = Some("c2".parse().unwrap());
        evs.push(e);
    }
    let (log, d) = setup(evs);
    assert_eq!(d.tx_count(), 2);
    let own = d.tx("t1").expect("this coordinator's t1");
    assert_eq!(own.taken_over_from, None);
    let key = "t1 \u{b7} c2";
    let theirs = d.tx(key).expect("c2's t1");
    assert_eq!(theirs.taken_over_from.as_deref(), Some("c2"));
    assert_eq!(theirs.decision, Some(Decision::Commit));
    assert!(theirs.ended);
    // Its client was c2's: nobody here was told anything.
    assert_eq!(theirs.client.text, "c2's client, not told here");
    assert_eq!(theirs.coordinator.text, "done for c2");
    // This coordinator's t1 is untouched by c2's events.
    assert_eq!(own.last_index, happy("t1").len() as u64 - 1);
    // Selected, only c2's t1 is drawn (and the takeover banner around it).
    let dg = diagram(input(&log, &d, &cfg, Some(key)));
    let arrows: Vec<&str> = dg
        .items
        .iter()
        .filter(|i| matches!(i.shape, Shape::Arrow { .. }))
        .map(|i| i.label.as_str())
        .collect();
    assert_eq!(arrows, ["COMMIT", "ACK COMMIT"]);
    // Its end is a mark where this coordinator finished it: its client was c2's.
    assert!(dg
        .items
        .iter()
        .any(|i| i.label == "COMMITTED (for c2)" && i.class == "mark-end-commit"));
    assert!(dg
        .items
        .iter()
        .filter(|i| matches!(i.shape, Shape::Arrow { .. }))
        .all(|i| i.txid.as_deref() == Some(key)));
}

#[test]
fn the_shards_of_a_participant_are_boxed_together() {
    let mut cfg = config();
    cfg.participants = [
        "bank/pg1",
        "bank/pg2",
        "cache",
        "ledger/r1",
        "ledger/r2",
        "ledger/r3",
    ]
    .iter()
    .map(|n| ParticipantConfig {
        name: n.parse().unwrap(),
        kind: ParticipantKind::Redis,
        url: String::new(),
    })
    .collect();
    let (log, d) = setup(vec![]);
    let dg = diagram(input(&log, &d, &cfg, None));
    let x = |name: &str| dg.lanes.iter().find(|l| l.name == name).unwrap().x;
    assert_eq!(
        dg.groups,
        vec![
            LaneGroup {
                name: "bank".into(),
                x_from: x("bank/pg1"),
                x_to: x("bank/pg2"),
                shards: 2,
            },
            LaneGroup {
                name: "ledger".into(),
                x_from: x("ledger/r1"),
                x_to: x("ledger/r3"),
                shards: 3,
            },
        ]
    );
    // Without shards, no boxes.
    let (log, d) = setup(vec![]);
    let plain = config();
    assert!(diagram(input(&log, &d, &plain, None)).groups.is_empty());
}
