//! Unit tests of the core's own invariants (protocol behaviour is pinned by the golden
//! scenarios in `coordinator/tests/scenarios.rs` and explored by the model checker).

use super::*;
use twopc_protocol::message::PreparedTx;
use twopc_protocol::Priority;

fn name(s: &str) -> ParticipantName {
    ParticipantName::new(s).unwrap()
}

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn submit(core: &mut Core, now: u64, req: RequestId, id: &str) {
    let participants = [name("bank"), name("ledger")]
        .into_iter()
        .map(|p| (p, Operations::Sql(Vec::new())))
        .collect();
    core.step(
        now,
        Input::Submit {
            submitted_by: None,
            req,
            txid: tx(id),
            body_hash: 7,
            participants,
            priority: Priority(req),
        },
    );
}

fn connected_core() -> Core {
    connected_core_with(CoreConfig::new(CoordinatorId::new("c1").unwrap()))
}

/// A core with `cfg` and both participants connected, with empty in-doubt reports.
fn connected_core_with(cfg: CoreConfig) -> Core {
    let mut core = Core::new(cfg);
    for p in ["bank", "ledger"] {
        core.step(
            0,
            Input::Connected {
                participant: name(p),
            },
        );
        core.step(
            0,
            Input::Received {
                from: name(p),
                msg: Message::InDoubtReport {
                    participant: name(p),
                    kind: twopc_protocol::message::ParticipantKind::Postgres,
                    prepared: Vec::<PreparedTx>::new(),
                },
            },
        );
    }
    core
}

/// The model checker fingerprints a core by its `Debug` text: the same transactions reached
/// in a different order must print the same, or equal states count as different ones.
#[test]
fn equal_states_print_alike_whatever_the_history() {
    // Every transaction prepared in order (stated, not left to the default): with
    // `parallel_when_idle` the first one submitted (a different one in each history) would be
    // asked everywhere at once.
    let ordered = || {
        let mut cfg = CoreConfig::new(CoordinatorId::new("c1").unwrap());
        cfg.parallel_when_idle = false;
        connected_core_with(cfg)
    };
    let mut a = ordered();
    let mut b = ordered();
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    for (i, id) in ids.iter().enumerate() {
        submit(&mut a, 0, i as u64, id);
    }
    for (i, id) in ids.iter().enumerate().rev() {
        submit(&mut b, 0, i as u64, id);
    }
    assert_eq!(format!("{:?}", a.txs), format!("{:?}", b.txs));
}

/// Several transactions waiting on one participant are aborted in txid order when it drops,
/// so the outputs do not depend on a hash seed.
#[test]
fn disconnect_aborts_in_txid_order() {
    let mut core = connected_core();
    for (i, id) in ["t3", "t1", "t2"].iter().enumerate() {
        submit(&mut core, 0, i as u64, id);
    }
    let out = core.step(
        1,
        Input::Disconnected {
            participant: name("bank"),
            reason: "test".into(),
        },
    );
    let aborted: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::ForceAbort { txid, .. } => Some(txid.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(aborted, ["t1", "t2", "t3"]);
}

/// A participant's NO reason reaches the client, the events and the log bounded to 1 KiB,
/// however long the participant made it.
#[test]
fn a_long_no_reason_is_bounded_everywhere() {
    let mut core = connected_core();
    submit(&mut core, 0, 1, "t1");
    let long = "e".repeat(20_000);
    let mut out = core.step(
        1,
        Input::Received {
            from: name("bank"),
            msg: Message::Vote {
                txid: tx("t1"),
                vote: twopc_protocol::Vote::No,
                reason: Some(long),
                class: None,
            },
        },
    );
    // The client hears once the ABORT record is durable.
    out.extend(core.step(1, Input::AbortDurable { txid: tx("t1") }));
    let mut reasons = Vec::new();
    for o in &out {
        match o {
            Output::Reply {
                result: Ok(resp), ..
            } => reasons.extend(resp.reason.clone()),
            Output::ForceAbort { reason, .. } => reasons.extend(reason.clone()),
            Output::Event { kind, .. } => {
                let text = serde_json::to_string(kind).unwrap();
                assert!(
                    text.len() < 2 * twopc_protocol::reason::MAX_REASON_BYTES,
                    "{text}"
                );
            }
            _ => {}
        }
    }
    assert!(reasons.len() >= 2, "a reply and an abort record: {out:?}");
    for r in reasons {
        assert!(
            r.len() <= twopc_protocol::reason::MAX_REASON_BYTES,
            "{} bytes",
            r.len()
        );
        assert!(r.starts_with("participant bank voted no: eee"), "{r}");
        assert!(r.ends_with(" more bytes]"), "{r}");
    }
}

/// With the PostgreSQL log the core holds its id at an epoch, and every message that acts on
/// a transaction carries it (and the coordinator id), so a participant can refuse those of a
/// replaced holder.
#[test]
fn every_message_that_acts_names_the_coordinator_and_its_epoch() {
    let mut cfg = CoreConfig::new(CoordinatorId::new("c1").unwrap());
    cfg.epoch = Some(4);
    cfg.ordered_prepare = false;
    let mut core = connected_core_with(cfg);
    let sent = |outs: &[Output]| -> Vec<Message> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Send { msg, .. } => Some(msg.clone()),
                _ => None,
            })
            .collect()
    };
    let participants = [name("bank"), name("ledger")]
        .into_iter()
        .map(|p| (p, Operations::Sql(Vec::new())))
        .collect();
    let outs = core.step(
        0,
        Input::Submit {
            submitted_by: None,
            req: 1,
            txid: tx("t1"),
            body_hash: 7,
            participants,
            priority: Priority(1),
        },
    );
    let prepares = sent(&outs);
    assert_eq!(prepares.len(), 2);
    assert!(prepares
        .iter()
        .all(|m| matches!(m, Message::Prepare { epoch: Some(4), .. })));
    for p in ["bank", "ledger"] {
        core.step(
            1,
            Input::Received {
                from: name(p),
                msg: Message::Vote {
                    txid: tx("t1"),
                    vote: twopc_protocol::Vote::Yes,
                    reason: None,
                    class: None,
                },
            },
        );
    }
    let outs = core.step(1, Input::CommitDurable { txid: tx("t1") });
    let commits = sent(&outs);
    assert_eq!(commits.len(), 2);
    for m in commits {
        let Message::Commit {
            coordinator, epoch, ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!((coordinator.unwrap().as_str(), epoch), ("c1", Some(4)));
    }
}

/// The phase timings keep the microseconds of the driver's clock (issue 16: a client sees
/// where sub-millisecond time went), in the answer and in the end event alike, while the
/// timers still run on whole milliseconds.
#[test]
fn phase_timings_keep_microseconds() {
    let mut cfg = CoreConfig::new(CoordinatorId::new("c1").unwrap());
    cfg.ordered_prepare = false;
    let mut core = connected_core_with(cfg);
    let participants = [name("bank"), name("ledger")]
        .into_iter()
        .map(|p| (p, Operations::Sql(Vec::new())))
        .collect();
    core.step_us(
        10_000_250,
        Input::Submit {
            submitted_by: None,
            req: 1,
            txid: tx("t1"),
            body_hash: 7,
            participants,
            priority: Priority(1),
        },
    );
    for (at, p) in [(10_000_980, "bank"), (10_001_480, "ledger")] {
        core.step_us(
            at,
            Input::Received {
                from: name(p),
                msg: Message::Vote {
                    txid: tx("t1"),
                    vote: twopc_protocol::Vote::Yes,
                    reason: None,
                    class: None,
                },
            },
        );
    }
    core.step_us(10_001_790, Input::CommitDurable { txid: tx("t1") });
    let mut outs = core.step_us(
        10_001_900,
        Input::Received {
            from: name("bank"),
            msg: Message::Ack {
                txid: tx("t1"),
                decision: twopc_protocol::message::Decision::Commit,
                result: twopc_protocol::message::AckResult::Applied,
                reason: None,
            },
        },
    );
    outs.extend(core.step_us(
        10_002_005,
        Input::Received {
            from: name("ledger"),
            msg: Message::Ack {
                txid: tx("t1"),
                decision: twopc_protocol::message::Decision::Commit,
                result: twopc_protocol::message::AckResult::Applied,
                reason: None,
            },
        },
    ));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let reply = outs
        .iter()
        .find_map(|o| match o {
            Output::Reply { result: Ok(r), .. } => Some(r.timings),
            _ => None,
        })
        .expect("the client is answered once both acks are in");
    assert!(close(reply.prepare_ms, 1.230), "{reply:?}");
    assert!(close(reply.decide_ms, 0.310), "{reply:?}");
    assert!(close(reply.commit_ms, 0.215), "{reply:?}");
    assert!(close(reply.total_ms, 1.755), "{reply:?}");
    let end = outs
        .iter()
        .find_map(|o| match o {
            Output::Event {
                kind:
                    EventKind::TxEnd {
                        prepare_ms,
                        decide_ms,
                        commit_ms,
                        ..
                    },
                ..
            } => Some((*prepare_ms, *decide_ms, *commit_ms)),
            _ => None,
        })
        .expect("an end event");
    assert!(
        close(end.0, 1.230) && close(end.1, 0.310) && close(end.2, 0.215),
        "{end:?}"
    );
    // The same transaction looked up later: its timings are final.
    let looked_up = core.lookup_us(20_000_000, &tx("t1")).expect("remembered");
    assert!(close(looked_up.timings.total_ms, 1.755), "{looked_up:?}");
}
