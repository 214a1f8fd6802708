//! Sample transactions, fault requests and the preset scenarios that narrate themselves.
//!
//! A scenario is a list of [`Step`]s: narration, API calls (submit a transaction, inject a
//! fault) and waits. The app runs the steps in order; the coordinator's events draw what
//! actually happens. The narration says what each step does and what to look for; it never
//! claims more than the API call does (for example, the browser cannot kill a participant
//! process, so "participant crash" is played by cutting its connection).

use crate::model::{Badge, Derived, PublicConfig};
use std::collections::BTreeMap;
use twopc_protocol::api::{FaultRequest, TransactionRequest};
use twopc_protocol::transfer::{redis_transfer, sql_transfer};
use twopc_protocol::{
    MessageType, Operations, ParticipantKind, ParticipantName, SqlStatement, TxId,
};

/// Which sample transaction to submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitKind {
    /// Move 10 from account 1 to account 2 on every participant.
    Transfer,
    /// A transfer the Redis guard refuses (NO vote).
    Failing,
}

impl SubmitKind {
    /// Text for notices.
    pub fn label(self) -> &'static str {
        match self {
            SubmitKind::Transfer => "transfer",
            SubmitKind::Failing => "failing transfer",
        }
    }
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Narration shown in the scenario panel.
    Say(String),
    /// Submit a sample transaction (without waiting for its answer).
    Submit(SubmitKind),
    /// `POST /v1/faults` with this body.
    Fault(FaultRequest),
    /// Wait this many milliseconds.
    Wait(u32),
    /// Wait until the condition holds (checked against the live event fold), at most this
    /// many milliseconds.
    WaitFor(Cond, u32),
}

/// What a scenario can wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The scenario's transaction has a decision.
    Decided,
    /// This participant's vote on the scenario's transaction arrived.
    Voted(String),
    /// The coordinator came back: the event stream is open and carries a new run.
    Restarted,
}

impl Cond {
    /// What is being waited for, for the narration of a timeout.
    pub fn describe(&self) -> String {
        match self {
            Cond::Decided => "the decision".into(),
            Cond::Voted(p) => format!("{p}'s vote"),
            Cond::Restarted => "the coordinator to come back".into(),
        }
    }
}

/// Whether `cond` holds: `live` is the fold of every event received, `txid` the scenario's
/// transaction, `run_at_start` the coordinator run when the scenario started.
pub fn cond_met(
    cond: &Cond,
    live: &Derived,
    txid: Option<&str>,
    run_at_start: Option<&str>,
    socket_open: bool,
) -> bool {
    let tx = txid.and_then(|t| live.tx(t));
    match cond {
        Cond::Decided => tx.is_some_and(|t| t.decision.is_some()),
        Cond::Voted(p) => tx
            .and_then(|t| t.parts.get(p))
            .is_some_and(|p| !matches!(p.badge.badge, Badge::Idle | Badge::Working)),
        Cond::Restarted => socket_open && live.run.is_some() && live.run.as_deref() != run_at_start,
    }
}

/// A preset scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Slug (`data-testid="scenario-<slug>"`).
    pub slug: &'static str,
    /// Title.
    pub title: &'static str,
    /// One line on what it shows.
    pub blurb: String,
    /// Whether it calls the fault API.
    pub needs_faults: bool,
    /// The steps.
    pub steps: Vec<Step>,
}

/// A transaction id for this page: `web-<ms>-<n>`.
pub fn tx_id(now_ms: u64, n: u64) -> String {
    format!("web-{now_ms}-{n}")
}

/// The body of `POST /v1/transactions` for a sample transaction, or why there is none.
pub fn transaction_body(
    cfg: &PublicConfig,
    kind: SubmitKind,
    id: &str,
) -> Result<TransactionRequest, String> {
    if cfg.participants.is_empty() {
        return Err("the coordinator has no participants configured".into());
    }
    let has_redis = cfg.redis_participant().is_some();
    let mut parts = BTreeMap::new();
    for p in &cfg.participants {
        let ops = match (p.kind, kind) {
            (ParticipantKind::Redis, SubmitKind::Transfer) => redis_transfer(1, 2, 10),
            // The guard (min 0) on balance:1 refuses this: the participant votes NO.
            (ParticipantKind::Redis, SubmitKind::Failing) => redis_transfer(1, 2, 1_000_000),
            (_, SubmitKind::Failing) if !has_redis => {
                // No Redis guard to trip: a statement that fails makes Postgres vote NO.
                Operations::Sql(vec![SqlStatement {
                    query: "SELECT 1 / 0".into(),
                    params: Vec::new(),
                    shard_key: None,
                }])
            }
            _ => sql_transfer(1, 2, 10),
        };
        // A shard (`bank/pg1`) is addressed through its participant, which routes the
        // operations to the shards their accounts live on.
        let name = match p.name.split_shard() {
            Some((logical, _)) => ParticipantName::new(logical).map_err(|e| e.to_string())?,
            None => p.name.clone(),
        };
        parts.entry(name).or_insert(ops);
    }
    Ok(TransactionRequest {
        id: Some(TxId::new(id).map_err(|e| e.to_string())?),
        participants: parts,
    })
}

/// Cut `p`'s connection.
pub fn partition(p: &ParticipantName) -> FaultRequest {
    FaultRequest::Partition {
        participant: p.clone(),
    }
}

/// Restore `p`'s connection.
pub fn heal(p: &ParticipantName) -> FaultRequest {
    FaultRequest::Heal {
        participant: p.clone(),
    }
}

/// Lose the next message (of type `msg_type`) to `p`.
pub fn drop_next(p: &ParticipantName, msg_type: Option<MessageType>) -> FaultRequest {
    FaultRequest::DropNext {
        participant: p.clone(),
        msg_type,
    }
}

/// Delay the next message (of type `msg_type`) to `p` by `ms`.
pub fn delay_next(p: &ParticipantName, ms: u64, msg_type: Option<MessageType>) -> FaultRequest {
    FaultRequest::DelayNext {
        participant: p.clone(),
        ms,
        msg_type,
    }
}

/// Crash the coordinator.
pub fn crash() -> FaultRequest {
    FaultRequest::Crash
}

fn say(s: impl Into<String>) -> Step {
    Step::Say(s.into())
}

/// The preset scenarios for a configuration.
pub fn scenarios(cfg: &PublicConfig) -> Vec<Scenario> {
    // The "ledger" is the Redis participant (its guard makes the NO vote), else the last one;
    // the "bank" is the Postgres participant, else any other participant.
    let ledger = cfg
        .redis_participant()
        .or(cfg.participants.last())
        .map(|p| p.name.clone())
        .unwrap_or_else(|| ParticipantName::new("ledger").expect("a valid participant name"));
    let bank = cfg
        .sql_participant()
        .filter(|p| p.name != ledger)
        .or_else(|| cfg.participants.iter().find(|p| p.name != ledger))
        .map(|p| p.name.to_string())
        .unwrap_or_else(|| "the other participants".into());
    let others: Vec<&ParticipantName> = cfg.participants.iter().map(|p| &p.name).collect();
    let (b, l) = (bank.as_str(), &ledger);
    let mut crash_steps = vec![say(
        "Arm a 3 s delay on the next COMMIT to every participant, so the decision is durable \
         before any COMMIT leaves the coordinator.",
    )];
    for p in &others {
        crash_steps.push(Step::Fault(delay_next(p, 3000, Some(MessageType::Commit))));
    }
    crash_steps.extend([
        Step::Submit(SubmitKind::Transfer),
        say("Submitted a transfer. Phase 1 runs normally: PREPARE, every participant votes YES."),
        Step::WaitFor(Cond::Decided, 10_000),
        Step::Fault(crash()),
        say(
            "The COMMIT record was fsynced and the decision is COMMIT; the COMMIT arrows are drawn \
             when the coordinator queued them, but the messages are held back. Right then we \
             crash the coordinator (it exits with code 137). Every participant is PREPARED and \
             cannot decide on its own: the event stream drops and they are in doubt.",
        ),
        Step::WaitFor(Cond::Restarted, 20_000),
        say(
            "The supervisor restarted the coordinator (a new run). It finds COMMIT without END in \
             its log, the participants reconnect and report what they hold prepared, and COMMIT \
             is re-sent; the ACKs resolve the doubt.",
        ),
        Step::Wait(3000),
        say("Check the in-doubt panel: nothing should be held prepared any more."),
    ]);
    vec![
        Scenario {
            slug: "happy",
            title: "Happy path",
            blurb: "Both participants vote YES; COMMIT is forced to the log, then delivered.".into(),
            needs_faults: false,
            steps: vec![
                say(format!(
                    "Submit a transfer: {b} moves 10 from account 1 to account 2 and {l} mirrors it \
                     on balance:1 / balance:2."
                )),
                Step::Submit(SubmitKind::Transfer),
                Step::Wait(1200),
                say(
                    "Phase 1: the coordinator sends PREPARE to every participant. Each does the work, \
                     makes it durable and votes YES. From its vote on, a participant is PREPARED: \
                     it may not decide alone.",
                ),
                Step::Wait(2000),
                say(
                    "All YES: the coordinator appends a COMMIT record to its decision log and fsyncs \
                     it before telling anyone. That fsync is the commit point.",
                ),
                Step::Wait(2000),
                say(
                    "Phase 2: COMMIT goes to every participant, each commits and ACKs; with every ACK \
                     in, the transaction ends and the client hears COMMITTED. Step back with ← to \
                     watch it again.",
                ),
            ],
        },
        Scenario {
            slug: "no-vote",
            title: "NO vote",
            blurb: format!("{l}'s guard refuses the transfer; one NO aborts everyone."),
            needs_faults: false,
            steps: vec![
                say(format!(
                    "Submit a transfer of 1,000,000 that {l} cannot honour: balance:1 has the guard \
                     min 0."
                )),
                Step::Submit(SubmitKind::Failing),
                Step::Wait(1200),
                say(format!(
                    "{l} votes NO with its reason. {b} may already have voted YES and holds its part \
                     prepared."
                )),
                Step::Wait(2000),
                say(
                    "One NO decides ABORT. Nothing has to be forced to the log for an abort (presumed \
                     abort); ABORT goes to everyone who may hold the transaction prepared, and they \
                     roll back and ACK.",
                ),
            ],
        },
        Scenario {
            slug: "coordinator-crash",
            title: "Coordinator crash after the decision",
            blurb: "COMMIT is durable, the coordinator dies before delivering it, recovery finishes the job."
                .into(),
            needs_faults: true,
            steps: crash_steps,
        },
        Scenario {
            slug: "participant-crash",
            title: "Participant crash after prepare",
            blurb: format!("{l} is cut off right after its YES vote and comes back later."),
            needs_faults: true,
            steps: vec![
                say(format!(
                    "The browser cannot kill a participant process. To the coordinator, a participant \
                     that crashes right after voting YES is a lost message and a dropped connection, \
                     so that is what we inject: the next COMMIT to {l} is dropped."
                )),
                Step::Fault(drop_next(l, Some(MessageType::Commit))),
                Step::Submit(SubmitKind::Transfer),
                Step::WaitFor(Cond::Voted(l.to_string()), 10_000),
                Step::Fault(partition(l)),
                say(format!(
                    "{l} voted YES and is now cut off: its part is durable, but it does not know the \
                     outcome (IN DOUBT). The coordinator has decided COMMIT, {b} has committed, and \
                     the coordinator keeps re-sending COMMIT to {l} with backoff."
                )),
                Step::Wait(5000),
                Step::Fault(heal(l)),
                say(format!(
                    "{l} is back: it reconnects, reports the transaction it holds prepared, and the \
                     coordinator re-sends COMMIT; {l} commits and ACKs."
                )),
                Step::Wait(3000),
                say("The in-doubt panel is empty again."),
            ],
        },
        Scenario {
            slug: "partition-phase2",
            title: "Partition during phase 2",
            blurb: format!("The COMMIT to {l} is delayed, then {l} is partitioned and healed."),
            needs_faults: true,
            steps: vec![
                say(format!("Arm a 3 s delay on the next COMMIT to {l}.")),
                Step::Fault(delay_next(l, 3000, Some(MessageType::Commit))),
                Step::Submit(SubmitKind::Transfer),
                Step::WaitFor(Cond::Decided, 10_000),
                Step::Fault(partition(l)),
                say(format!(
                    "The decision is COMMIT and durable; {b} gets its COMMIT, the COMMIT to {l} is \
                     held back, and right then we partition {l}: its connection is cut with the \
                     COMMIT undelivered. {l} stays PREPARED (in doubt), the coordinator's retries \
                     cannot reach it, and the transaction stays decided COMMIT."
                )),
                Step::Wait(4000),
                Step::Fault(heal(l)),
                say(format!(
                    "Heal: the coordinator reconnects, {l} reports what it holds prepared, COMMIT is \
                     re-sent and ACKed. Nobody aborted what another committed."
                )),
                Step::Wait(2500),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParticipantConfig;
    use serde_json::{json, Value};

    /// A request body as the coordinator receives it.
    fn body(v: impl serde::Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    fn n(name: &str) -> ParticipantName {
        name.parse().unwrap()
    }

    fn t(msg_type: &str) -> Option<MessageType> {
        MessageType::from_wire(msg_type)
    }

    fn cfg(kinds: &[(&str, &str)]) -> PublicConfig {
        PublicConfig {
            coordinator_id: "c1".parse().unwrap(),
            fault_injection: true,
            prepare_timeout_ms: 5000,
            participants: kinds
                .iter()
                .map(|(name, k)| ParticipantConfig {
                    name: (*name).parse().unwrap(),
                    kind: serde_json::from_value(json!(k)).unwrap(),
                    url: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn sample_bodies_address_a_sharded_participant_not_its_shards() {
        let c = cfg(&[
            ("bank/pg1", "postgres"),
            ("bank/pg2", "postgres"),
            ("ledger/r1", "redis"),
            ("ledger/r2", "redis"),
        ]);
        let req = transaction_body(&c, SubmitKind::Transfer, "web-1-2").unwrap();
        let names: Vec<&str> = req.participants.keys().map(|p| p.as_str()).collect();
        assert_eq!(names, ["bank", "ledger"]);
        let ok = body(req);
        assert_eq!(ok["participants"]["bank"]["sql"][0]["shard_key"], 1);
    }

    #[test]
    fn sample_bodies_are_valid_requests() {
        let c = cfg(&[("bank", "postgres"), ("ledger", "redis")]);
        for kind in [SubmitKind::Transfer, SubmitKind::Failing] {
            let body = body(transaction_body(&c, kind, "web-1-1").unwrap());
            let req: TransactionRequest = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(req.participants.len(), 2);
            assert_eq!(req.id.unwrap().as_str(), "web-1-1");
        }
        let ok = body(transaction_body(&c, SubmitKind::Transfer, "x").unwrap());
        assert_eq!(ok["participants"]["ledger"]["redis"][0]["by"], -10);
        assert_eq!(ok["participants"]["ledger"]["redis"][0]["min"], 0);
        assert_eq!(ok["participants"]["bank"]["sql"][1]["params"][0], 10);
        let bad = body(transaction_body(&c, SubmitKind::Failing, "x").unwrap());
        assert_eq!(bad["participants"]["ledger"]["redis"][0]["by"], -1_000_000);
        // Postgres only: the failing one fails a statement instead.
        let pg = cfg(&[("bank", "postgres")]);
        let bad = body(transaction_body(&pg, SubmitKind::Failing, "x").unwrap());
        assert_eq!(
            bad["participants"]["bank"]["sql"][0]["query"],
            "SELECT 1 / 0"
        );
        assert!(transaction_body(&cfg(&[]), SubmitKind::Transfer, "x").is_err());
        assert_eq!(tx_id(17, 3), "web-17-3");
    }

    #[test]
    fn wait_conditions() {
        use crate::model::tests::happy;
        let evs = happy("t1");
        let mut d = Derived::starting_at(0);
        assert!(!cond_met(&Cond::Decided, &d, Some("t1"), None, true));
        for (i, e) in evs.iter().enumerate().take(4) {
            d.apply(i as u64, e);
        }
        let voted = Cond::Voted("bank".into());
        assert!(
            !cond_met(&voted, &d, Some("t1"), None, true),
            "vote message, no vote event yet"
        );
        d.apply(4, &evs[4]);
        assert!(cond_met(&voted, &d, Some("t1"), None, true));
        assert!(!cond_met(
            &Cond::Voted("ledger".into()),
            &d,
            Some("t1"),
            None,
            true
        ));
        assert!(!cond_met(&Cond::Decided, &d, Some("t1"), None, true));
        for (i, e) in evs.iter().enumerate().skip(5).take(5) {
            d.apply(i as u64, e);
        }
        assert!(cond_met(&Cond::Decided, &d, Some("t1"), None, true));
        assert!(!cond_met(&Cond::Decided, &d, None, None, true));
        assert!(!cond_met(&Cond::Restarted, &d, None, Some("c1-1"), true));
        assert!(cond_met(&Cond::Restarted, &d, None, Some("c1-0"), true));
        assert!(!cond_met(&Cond::Restarted, &d, None, Some("c1-0"), false));
        assert_eq!(Cond::Voted("x".into()).describe(), "x's vote");
    }

    #[test]
    fn fault_bodies() {
        assert_eq!(
            body(partition(&n("ledger"))),
            json!({"fault":"partition","participant":"ledger"})
        );
        assert_eq!(body(heal(&n("ledger")))["fault"], "heal");
        assert_eq!(
            body(drop_next(&n("bank"), None)),
            json!({"fault":"drop_next","participant":"bank"})
        );
        assert_eq!(
            body(drop_next(&n("bank"), t("commit")))["msg_type"],
            "commit"
        );
        assert_eq!(body(delay_next(&n("bank"), 5, t("prepare")))["ms"], 5);
        assert_eq!(body(crash()), json!({"fault":"crash"}));
    }

    #[test]
    fn scenarios_use_configured_names() {
        let c = cfg(&[("bank", "postgres"), ("ledger", "redis")]);
        let all = scenarios(&c);
        let slugs: Vec<&str> = all.iter().map(|s| s.slug).collect();
        assert_eq!(
            slugs,
            [
                "happy",
                "no-vote",
                "coordinator-crash",
                "participant-crash",
                "partition-phase2"
            ]
        );
        for s in &all {
            assert!(
                matches!(s.steps.first(), Some(Step::Say(_))),
                "{} narrates first",
                s.slug
            );
            assert_eq!(
                s.needs_faults,
                s.steps.iter().any(|st| matches!(st, Step::Fault(_))),
                "{}",
                s.slug
            );
            assert_eq!(
                s.steps
                    .iter()
                    .filter(|st| matches!(st, Step::Submit(_)))
                    .count(),
                1
            );
        }
        let p2 = &all[4];
        assert!(p2
            .steps
            .contains(&Step::Fault(delay_next(&n("ledger"), 3000, t("commit")))));
        assert!(p2.steps.contains(&Step::Fault(partition(&n("ledger")))));
        assert!(p2.steps.contains(&Step::Fault(heal(&n("ledger")))));
        let crash_s = &all[2];
        let delays = crash_s
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Fault(v) if body(v)["fault"] == "delay_next"))
            .count();
        assert_eq!(delays, 2);
        assert!(crash_s.steps.contains(&Step::Fault(crash())));
        // Other names flow through.
        let c = cfg(&[("pg1", "postgres"), ("kv", "redis")]);
        let all = scenarios(&c);
        assert!(all[4].steps.contains(&Step::Fault(partition(&n("kv")))));
        // Two Redis participants: the ledger is the first, the bank the other one.
        let c = cfg(&[("ledger", "redis"), ("audit", "redis")]);
        let all = scenarios(&c);
        assert!(all[4].steps.contains(&Step::Fault(partition(&n("ledger")))));
        let says: String = all[3]
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Say(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(says.contains("audit has committed"), "{says}");
    }
}
