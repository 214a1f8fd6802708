//! Golden scenario tests of the protocol core (toydb style).
//!
//! Each file in `tests/scenarios/*.txt` is a script of inputs; the runner feeds them to a
//! fresh [`Core`] and writes every output under the input that caused it. The result must
//! equal `tests/scenarios/<name>.out`; run with `UPDATE_GOLDEN=1` to regenerate after an
//! intended change, and review the diff.
//!
//! Script commands (time starts at 0; `#` starts a comment):
//!
//! ```text
//! config prepare_timeout=N retry_base=N retry_max=N ack_wait=N
//!        attempts=N backoff=N backoff_max=N deadline=N   (retries after conflict NO votes)
//!        ordered=0|1 idle_parallel=0|1 hold=N   (prepare order; all at once when nothing
//!        else runs, and how long an attempt is held behind such a lone one)
//! connect P | disconnect P
//! submit TXID P[,P...] [hash=N]           (ops: one SQL statement or one Redis op per P)
//! vote P TXID yes|no|conflict|read_only [reason]   (conflict: a NO of class conflict)
//! ack P TXID commit|abort applied|already_applied|not_prepared|conflict [reason]
//! ask P TXID[@COORD]                       (DecisionRequest, for coordinator COORD)
//! report P [TXID@COORD ...]               (InDoubtReport)
//! durable TXID | logfail TXID               (the record last forced for TXID: COMMIT or ABORT)
//! unsendable P TXID                       (the connection could not send P's message)
//! tick MS                                 (advance the clock by MS, then Tick)
//! recover [TXID:P,P[=CLIENT] ...]         (start-up with logged COMMITs without END; CLIENT:
//!                                          the client txid the record names)
//! lookup TXID
//! ```
//!
//! Wherever a TXID is expected, `TXID#N` names attempt N of the client transaction TXID (its
//! wire txid, [`twopc_protocol::attempt`], from the priority of TXID's first submission).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use twopc_coordinator::core::{Core, CoreConfig, Input, LazyRecord, Output, RecoveredCommit};
use twopc_protocol::event::EventKind;
use twopc_protocol::message::{
    AckResult, Decision, Message, NoClass, ParticipantKind, PreparedTx, Vote,
};
use twopc_protocol::Priority;
use twopc_protocol::{
    CoordinatorId, Operations, ParticipantName, RedisGuard, RedisOp, SqlStatement, TxId,
};

fn p(s: &str) -> ParticipantName {
    ParticipantName::new(s).unwrap()
}
fn t(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn ops_for(name: &str) -> Operations {
    if name.starts_with("pg") || name == "bank" {
        Operations::Sql(vec![SqlStatement {
            query: "UPDATE accounts SET balance = balance - 1".into(),
            params: vec![],
            shard_key: None,
        }])
    } else {
        Operations::Redis(vec![RedisOp::Incrby {
            key: "b".into(),
            by: 1,
            min: None,
            max: None,
            guard: RedisGuard::default(),
        }])
    }
}

fn render(o: &Output) -> Option<String> {
    Some(match o {
        Output::Halt { reason } => format!("halt: {reason}"),
        Output::Send { to, msg } => format!("send {to}: {}", msg.summary()),
        Output::ForceCommit {
            txid,
            participants,
            body_hash,
            client,
        } => {
            let ps: Vec<String> = participants.iter().map(|p| p.to_string()).collect();
            let client = client
                .as_ref()
                .map(|c| format!(" client={c}"))
                .unwrap_or_default();
            format!(
                "force-commit {txid} [{}] hash={body_hash}{client}",
                ps.join(", ")
            )
        }
        Output::ForceAbort {
            txid,
            reason,
            client,
            ..
        } => {
            let client = client
                .as_ref()
                .map(|c| format!(" (client {c})"))
                .unwrap_or_default();
            format!(
                "force-abort {txid}{client}: {}",
                reason.clone().unwrap_or_default()
            )
        }
        Output::LogLazy(LazyRecord::End { txid, heuristics }) if heuristics.is_empty() => {
            format!("log-lazy end {txid}")
        }
        Output::LogLazy(LazyRecord::End { txid, heuristics }) => {
            let h: Vec<String> = heuristics
                .iter()
                .map(|h| format!("{} {:?}", h.participant, h.result))
                .collect();
            format!("log-lazy end {txid} heuristics=[{}]", h.join(", "))
        }
        Output::LogLazy(LazyRecord::OnePhaseCommitted {
            txid, participant, ..
        }) => {
            format!("log-lazy one-phase-committed {txid} by {participant}")
        }
        Output::Reply { req, result } => match result {
            Ok(r) => format!(
                "reply #{req}: {}{} {:?}{} (prepare {} decide {} commit {} total {} ms)",
                r.id,
                if r.attempts > 1 {
                    format!(" [{} attempts]", r.attempts)
                } else {
                    String::new()
                },
                r.outcome,
                r.reason
                    .as_ref()
                    .map(|x| format!(" \"{x}\""))
                    .unwrap_or_default(),
                r.timings.prepare_ms,
                r.timings.decide_ms,
                r.timings.commit_ms,
                r.timings.total_ms
            ),
            Err(e) => format!("reply #{req}: rejected {e:?}"),
        },
        Output::Event { kind, .. } => match kind {
            // Sends and receipts are already visible as `send` lines and script lines.
            EventKind::MessageSent { .. } | EventKind::MessageReceived { .. } => return None,
            other => {
                let mut v = serde_json::to_value(other).unwrap();
                let kind = v["kind"].as_str().unwrap().to_owned();
                v.as_object_mut().unwrap().remove("kind");
                format!("event {kind} {v}")
            }
        },
    })
}

fn run_script(script: &str) -> String {
    let mut cfg = CoreConfig::new(CoordinatorId::new("c1").unwrap());
    cfg.prepare_timeout_ms = 1000;
    cfg.retry_base_ms = 100;
    cfg.retry_max_ms = 800;
    cfg.ack_wait_ms = 500;
    // The scripts below were written for prepares sent all at once; `config ordered=1` turns
    // on the default, one participant at a time in name order, and `idle_parallel=1` its
    // optional exception for a transaction that starts alone.
    cfg.ordered_prepare = false;
    cfg.parallel_when_idle = false;
    let mut core: Option<Core> = None;
    let mut now = 0u64;
    let mut req = 0u64;
    let mut out = String::new();
    // The priority of each client txid's first submission, for `TXID#N`.
    let mut priorities: BTreeMap<String, Priority> = BTreeMap::new();
    // The decision of the record last forced per wire txid, for `durable` and `logfail`.
    let mut forced: BTreeMap<TxId, Decision> = BTreeMap::new();
    let tx = |s: &str, priorities: &BTreeMap<String, Priority>| -> TxId {
        match s.split_once('#') {
            Some((client, n)) => twopc_protocol::attempt::attempt_txid(
                &t(client),
                n.parse().unwrap(),
                priorities[client],
            ),
            None => t(s),
        }
    };
    for line in script.lines() {
        let line_trim = line.trim();
        if line_trim.is_empty() || line_trim.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let _ = writeln!(out, "> {line_trim}");
        let (cmd, rest) = line_trim.split_once(' ').unwrap_or((line_trim, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        let tail_from = |i: usize| -> Option<String> {
            let s = args.get(i..).map(|a| a.join(" ")).unwrap_or_default();
            (!s.is_empty()).then_some(s)
        };
        if cmd == "config" {
            for kv in &args {
                let (k, v) = kv.split_once('=').unwrap();
                let v: u64 = v.parse().unwrap();
                match k {
                    "prepare_timeout" => cfg.prepare_timeout_ms = v,
                    "retry_base" => cfg.retry_base_ms = v,
                    "retry_max" => cfg.retry_max_ms = v,
                    "ack_wait" => cfg.ack_wait_ms = v,
                    "attempts" => cfg.conflict_retry.max_attempts = v as u32,
                    "backoff" => cfg.conflict_retry.backoff_ms = v,
                    "backoff_max" => cfg.conflict_retry.backoff_max_ms = v,
                    "deadline" => cfg.conflict_retry.deadline_ms = v,
                    "ordered" => cfg.ordered_prepare = v == 1,
                    "idle_parallel" => cfg.parallel_when_idle = v == 1,
                    "hold" => cfg.parallel_hold_ms = v,
                    _ => panic!("unknown config {k}"),
                }
            }
            continue;
        }
        let c = core.get_or_insert_with(|| Core::new(cfg.clone()));
        let outputs = match cmd {
            "recover" => {
                let rcs = args
                    .iter()
                    .map(|a| {
                        let (tx, ps) = a.split_once(':').unwrap();
                        let (ps, client) = match ps.split_once('=') {
                            Some((ps, client)) => (ps, Some(t(client))),
                            None => (ps, None),
                        };
                        RecoveredCommit {
                            txid: t(tx),
                            participants: ps.split(',').map(p).collect(),
                            body_hash: 7,
                            client,
                        }
                    })
                    .collect();
                c.recover(now, rcs, Vec::new())
            }
            "connect" => c.step(
                now,
                Input::Connected {
                    participant: p(args[0]),
                },
            ),
            "disconnect" => c.step(
                now,
                Input::Disconnected {
                    participant: p(args[0]),
                    reason: "closed".into(),
                },
            ),
            "submit" => {
                req += 1;
                let participants: BTreeMap<_, _> =
                    args[1].split(',').map(|n| (p(n), ops_for(n))).collect();
                let body_hash = args
                    .get(2)
                    .and_then(|h| h.strip_prefix("hash="))
                    .map(|h| h.parse().unwrap())
                    .unwrap_or(7);
                let _ = writeln!(out, "  (request #{req})");
                let priority = *priorities
                    .entry(args[0].to_string())
                    .or_insert(Priority(req));
                c.step(
                    now,
                    Input::Submit {
                        submitted_by: None,
                        req,
                        txid: t(args[0]),
                        body_hash,
                        participants,
                        priority,
                    },
                )
            }
            "vote" => {
                let (vote, class) = match args[2] {
                    "yes" => (Vote::Yes, None),
                    "no" => (Vote::No, None),
                    "conflict" => (Vote::No, Some(NoClass::Conflict)),
                    "read_only" => (Vote::ReadOnly, None),
                    v => panic!("bad vote {v}"),
                };
                let msg = Message::Vote {
                    txid: tx(args[1], &priorities),
                    vote,
                    reason: tail_from(3),
                    class,
                };
                c.step(
                    now,
                    Input::Received {
                        from: p(args[0]),
                        msg,
                    },
                )
            }
            "ack" => {
                let decision = if args[2] == "commit" {
                    Decision::Commit
                } else {
                    Decision::Abort
                };
                let result = match args[3] {
                    "applied" => AckResult::Applied,
                    "already_applied" => AckResult::AlreadyApplied,
                    "not_prepared" => AckResult::NotPrepared,
                    "conflict" => AckResult::Conflict,
                    r => panic!("bad ack result {r}"),
                };
                let msg = Message::Ack {
                    txid: tx(args[1], &priorities),
                    decision,
                    result,
                    reason: tail_from(4),
                };
                c.step(
                    now,
                    Input::Received {
                        from: p(args[0]),
                        msg,
                    },
                )
            }
            "ask" => c.step(
                now,
                Input::Received {
                    from: p(args[0]),
                    // `ask P TXID@COORD`: asked as the transaction of coordinator COORD.
                    msg: match args[1].split_once('@') {
                        Some((t, co)) => Message::DecisionRequest {
                            txid: tx(t, &priorities),
                            coordinator: Some(CoordinatorId::new(co).unwrap()),
                        },
                        None => Message::DecisionRequest {
                            txid: tx(args[1], &priorities),
                            coordinator: None,
                        },
                    },
                },
            ),
            "report" => {
                let tx_of = |s: &str| tx(s, &priorities);
                let prepared = args[1..]
                    .iter()
                    .map(|a| {
                        let (tx, co) = a.split_once('@').unwrap();
                        PreparedTx {
                            txid: tx_of(tx),
                            coordinator: CoordinatorId::new(co).unwrap(),
                            prepared_at_ms: 0,
                        }
                    })
                    .collect();
                let msg = Message::InDoubtReport {
                    participant: p(args[0]),
                    kind: ParticipantKind::Redis,
                    prepared,
                };
                c.step(
                    now,
                    Input::Received {
                        from: p(args[0]),
                        msg,
                    },
                )
            }
            "durable" => {
                let txid = tx(args[0], &priorities);
                let input = match forced.get(&txid) {
                    Some(Decision::Abort) => Input::AbortDurable { txid },
                    _ => Input::CommitDurable { txid },
                };
                c.step(now, input)
            }
            "unsendable" => c.step(
                now,
                Input::Unsendable {
                    to: p(args[0]),
                    txid: t(args[1]),
                    reason: "frame over the limit".into(),
                },
            ),
            "logfail" => {
                let txid = tx(args[0], &priorities);
                let error = "disk full".to_string();
                let input = match forced.get(&txid) {
                    Some(Decision::Abort) => Input::AbortFailed { txid, error },
                    _ => Input::CommitFailed { txid, error },
                };
                c.step(now, input)
            }
            "tick" => {
                now += args[0].parse::<u64>().unwrap();
                let _ = writeln!(out, "  (t = {now} ms)");
                c.step(now, Input::Tick)
            }
            "lookup" => {
                let r = c.lookup(now, &tx(args[0], &priorities));
                let attempts = r.as_ref().map_or(1, |r| r.attempts);
                let shown = r.map(|r| (r.outcome, r.reason));
                if attempts > 1 {
                    let _ = writeln!(out, "  {shown:?} [{attempts} attempts]");
                } else {
                    let _ = writeln!(out, "  {shown:?}");
                }
                Vec::new()
            }
            other => panic!("unknown command {other:?} in line {line_trim:?}"),
        };
        for o in &outputs {
            match o {
                Output::ForceCommit { txid, .. } => {
                    forced.insert(txid.clone(), Decision::Commit);
                }
                Output::ForceAbort { txid, .. } => {
                    forced.insert(txid.clone(), Decision::Abort);
                }
                _ => {}
            }
            if let Some(s) = render(o) {
                let _ = writeln!(out, "  {s}");
            }
        }
    }
    out
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    // Only an explicit UPDATE_GOLDEN=1 rewrites (UPDATE_GOLDEN=0 or an empty value does not).
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        count += 1;
        let script = std::fs::read_to_string(&path).unwrap();
        let got = run_script(&script);
        let golden = path.with_extension("out");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            let mut diff = String::new();
            for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
                if w != g {
                    let _ = writeln!(diff, "line {}:\n  want: {w}\n  got:  {g}", i + 1);
                    break;
                }
            }
            if diff.is_empty() {
                diff = format!(
                    "length differs: want {} lines, got {}",
                    want.lines().count(),
                    got.lines().count()
                );
            }
            failures.push(format!("{}: {diff}", path.display()));
        }
    }
    assert!(count >= 10, "expected at least 10 scenarios, found {count}");
    assert!(
        failures.is_empty(),
        "scenario mismatches (UPDATE_GOLDEN=1 to regenerate):\n{}",
        failures.join("\n")
    );
}
