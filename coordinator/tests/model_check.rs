//! Model checking the protocol core: an exhaustive, bounded breadth-first exploration of the
//! pure coordinator [`Core`] together with two small participant state machines (pure, below)
//! and an adversarial network.
//!
//! Why a hand-written explorer and not `stateright`: the core is already a deterministic
//! `step(now, input) -> outputs` function, so the only machinery needed is a state (core +
//! participants + network + decision log + client), a successor function and a fingerprint for
//! de-duplication. That is ~400 lines here, with no extra dependency to keep building.
//!
//! **The world.** One coordinator, participants `bank` and `ledger`, one transaction `t1`
//! touching both. Events, each possible at any time within its budget:
//!
//! * deliver any in-flight message (any order: reordering), lose one, duplicate one;
//! * a participant votes YES or (budget) NO on Prepare; it asks for the decision while
//!   prepared; it crashes (its prepared/committed/aborted state is durable, its connection
//!   and in-flight messages are lost) and recovers; a connection drops; a connection comes up
//!   (the participant's first message is its InDoubtReport, as in the real server);
//! * the decision log writes a forced COMMIT record, and (a separate event, so a crash can
//!   fall in between) tells the core it is durable; or the write fails;
//! * time advances by a fixed step (`Tick`): prepare timeouts and phase-2 re-sends fire;
//! * the coordinator crashes: everything is lost except COMMIT records that reached the log
//!   (lazy ABORT/END records are treated as lost too, the pessimistic case), and a fresh core
//!   is started with [`Core::recover`]; the client's pending request is lost.
//!
//! **Properties**, checked in every reachable state:
//!
//! 1. atomicity: no participant committed while the other aborted;
//! 2. commit only after every YES and a durable COMMIT record;
//! 3. the client is told `committed` only if the COMMIT record is durable, and told `aborted`
//!    only if no participant committed;
//!
//! and, from every reachable state, after **healing** (everything recovers and reconnects,
//! messages are delivered in order, time advances): the system settles (nothing prepared,
//! nothing in flight, the core idle), both participants agree, and a transaction whose COMMIT
//! is logged or whose client was told `committed` is committed everywhere ("told committed ⇒
//! all participants eventually commit").
//!
//! Budgets bound the state space; each configuration reports its state count and time.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;
use twopc_coordinator::core::{Core, CoreConfig, Input, Output, RecoveredCommit};
use twopc_protocol::api::Outcome;
use twopc_protocol::message::{
    AckResult, Decision, DecisionStatus, Message, ParticipantKind, PreparedTx, Vote,
};
use twopc_protocol::{CoordinatorId, Operations, ParticipantName, RedisOp, SqlStatement, TxId};

const STEP_MS: u64 = 500;
const NAMES: [&str; 2] = ["bank", "ledger"];

fn pname(i: usize) -> ParticipantName {
    ParticipantName::new(NAMES[i]).unwrap()
}
fn pidx(p: &ParticipantName) -> usize {
    NAMES.iter().position(|n| *n == p.as_str()).unwrap()
}
fn txid() -> TxId {
    TxId::new("t1").unwrap()
}
fn coord() -> CoordinatorId {
    CoordinatorId::new("c1").unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PState {
    Idle,
    Prepared,
    Committed,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Part {
    st: PState,
    up: bool,
    conn: bool,
    voted_yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Budget {
    loss: u8,
    dup: u8,
    noes: u8,
    pcrash: u8,
    ccrash: u8,
    disc: u8,
    logfail: u8,
    asks: u8,
    ticks: u8,
}

#[derive(Debug, Clone)]
enum Net {
    ToP(usize, Message),
    ToC(usize, Message),
}

impl Net {
    fn peer(&self) -> usize {
        match self {
            Net::ToP(p, _) | Net::ToC(p, _) => *p,
        }
    }
}

#[derive(Clone)]
struct World {
    core: Core,
    now: u64,
    parts: [Part; 2],
    net: Vec<Net>,
    /// The durable COMMIT record: participants and body hash.
    log_commit: Option<(Vec<ParticipantName>, u64)>,
    pending_force: Option<(Vec<ParticipantName>, u64)>,
    written_unnotified: bool,
    told: Option<Outcome>,
    budget: Budget,
    /// A planted participant bug (for the checker's self-test): a participant that recovers
    /// with a prepared transaction commits it on its own (a "heuristic commit").
    buggy: bool,
}

fn core_config() -> CoreConfig {
    let mut cfg = CoreConfig::new(coord());
    cfg.prepare_timeout_ms = 1000;
    cfg.retry_base_ms = 500;
    cfg.retry_max_ms = 1000;
    cfg.ack_wait_ms = 500;
    cfg
}

fn ops(i: usize) -> Operations {
    if i == 0 {
        Operations::Sql(vec![SqlStatement {
            query: "UPDATE accounts SET balance = balance - 1 WHERE id = 1".into(),
            params: vec![],
        }])
    } else {
        Operations::Redis(vec![RedisOp::Incrby {
            key: "balance:1".into(),
            by: -1,
            min: Some(0),
            max: None,
            guard: Default::default(),
        }])
    }
}

impl World {
    fn fingerprint(&self) -> u64 {
        let core = format!("{:?}", self.core);
        let mut net: Vec<String> = self.net.iter().map(|n| format!("{n:?}")).collect();
        net.sort();
        let mut h = DefaultHasher::new();
        core.hash(&mut h);
        self.now.hash(&mut h);
        self.parts.hash(&mut h);
        net.hash(&mut h);
        format!("{:?}", self.log_commit).hash(&mut h);
        format!("{:?}", self.pending_force).hash(&mut h);
        self.written_unnotified.hash(&mut h);
        format!("{:?}", self.told).hash(&mut h);
        self.budget.hash(&mut h);
        h.finish()
    }

    fn step_core(&mut self, input: Input) {
        let outs = self.core.step(self.now, input);
        // The model does not read metrics; resetting them keeps fingerprints small and
        // retries from making new states.
        self.core.metrics = Default::default();
        self.apply(outs);
    }

    fn apply(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send { to, msg } => {
                    let i = pidx(&to);
                    if self.parts[i].conn {
                        self.net.push(Net::ToP(i, msg));
                    }
                }
                Output::ForceCommit {
                    participants,
                    body_hash,
                    ..
                } => self.pending_force = Some((participants, body_hash)),
                Output::Reply { result: Ok(r), .. } if r.outcome != Outcome::InProgress => {
                    self.told = Some(r.outcome);
                }
                _ => {}
            }
        }
    }

    fn connect(&mut self, i: usize) {
        self.parts[i].conn = true;
        self.step_core(Input::Connected {
            participant: pname(i),
        });
        let prepared = if self.parts[i].st == PState::Prepared {
            vec![PreparedTx {
                txid: txid(),
                coordinator: coord(),
                prepared_at_ms: 0,
            }]
        } else {
            vec![]
        };
        self.net.push(Net::ToC(
            i,
            Message::InDoubtReport {
                participant: pname(i),
                kind: if i == 0 {
                    ParticipantKind::Postgres
                } else {
                    ParticipantKind::Redis
                },
                prepared,
            },
        ));
    }

    fn disconnect(&mut self, i: usize) {
        if !self.parts[i].conn {
            return;
        }
        self.parts[i].conn = false;
        self.net.retain(|n| n.peer() != i);
        self.step_core(Input::Disconnected {
            participant: pname(i),
            reason: "model".into(),
        });
    }

    /// The participant's handling of one message; `vote_no` chooses a NO vote on a fresh
    /// Prepare.
    fn participant_receives(&mut self, i: usize, msg: Message, vote_no: bool) {
        let p = &mut self.parts[i];
        let reply = match msg {
            Message::Prepare { txid, .. } => {
                let vote = match p.st {
                    PState::Idle if vote_no => {
                        p.st = PState::Aborted;
                        Vote::No
                    }
                    PState::Idle => {
                        p.st = PState::Prepared;
                        p.voted_yes = true;
                        Vote::Yes
                    }
                    PState::Prepared | PState::Committed => Vote::Yes,
                    PState::Aborted => Vote::No,
                };
                Some(Message::Vote {
                    txid,
                    vote,
                    reason: None,
                })
            }
            Message::Commit { txid } => {
                let result = match p.st {
                    PState::Prepared => {
                        p.st = PState::Committed;
                        AckResult::Applied
                    }
                    PState::Committed => AckResult::AlreadyApplied,
                    PState::Aborted => AckResult::Conflict,
                    PState::Idle => AckResult::NotPrepared,
                };
                Some(Message::Ack {
                    txid,
                    decision: Decision::Commit,
                    result,
                    reason: None,
                })
            }
            Message::Abort { txid, .. } => {
                let result = match p.st {
                    PState::Prepared => {
                        p.st = PState::Aborted;
                        AckResult::Applied
                    }
                    PState::Idle => {
                        // A tombstone: a late duplicated Prepare votes NO.
                        p.st = PState::Aborted;
                        AckResult::NotPrepared
                    }
                    PState::Aborted => AckResult::AlreadyApplied,
                    PState::Committed => AckResult::Conflict,
                };
                Some(Message::Ack {
                    txid,
                    decision: Decision::Abort,
                    result,
                    reason: None,
                })
            }
            Message::DecisionAnswer { status, .. } => {
                if p.st == PState::Prepared {
                    match status {
                        DecisionStatus::Commit => p.st = PState::Committed,
                        DecisionStatus::Abort => p.st = PState::Aborted,
                        DecisionStatus::Pending => {}
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(r) = reply {
            if self.parts[i].conn {
                self.net.push(Net::ToC(i, r));
            }
        }
    }

    fn deliver(&mut self, k: usize, vote_no: bool) {
        let n = self.net.remove(k);
        match n {
            Net::ToP(i, msg) => self.participant_receives(i, msg, vote_no),
            Net::ToC(i, msg) => self.step_core(Input::Received {
                from: pname(i),
                msg,
            }),
        }
    }

    fn crash_coordinator(&mut self, template: &Core) {
        self.core = template.clone();
        let unfinished = self
            .log_commit
            .clone()
            .map(|(participants, body_hash)| RecoveredCommit {
                txid: txid(),
                participants,
                body_hash,
            })
            .into_iter()
            .collect();
        let outs = self.core.recover(self.now, unfinished, vec![]);
        self.core.metrics = Default::default();
        self.pending_force = None;
        self.written_unnotified = false;
        for p in &mut self.parts {
            p.conn = false;
        }
        self.net.clear();
        self.apply(outs);
    }

    fn successors(&self, template: &Core) -> Vec<(String, World)> {
        let mut out = Vec::new();
        let b = self.budget;
        for k in 0..self.net.len() {
            let is_fresh_prepare = matches!(&self.net[k], Net::ToP(i, Message::Prepare { .. })
                if self.parts[*i].st == PState::Idle);
            let mut w = self.clone();
            w.deliver(k, false);
            out.push((format!("deliver {:?}", self.net[k]), w));
            if is_fresh_prepare && b.noes > 0 {
                let mut w = self.clone();
                w.budget.noes -= 1;
                w.deliver(k, true);
                out.push((format!("deliver {:?} (votes NO)", self.net[k]), w));
            }
            if b.loss > 0 {
                let mut w = self.clone();
                w.budget.loss -= 1;
                w.net.remove(k);
                out.push((format!("lose {:?}", self.net[k]), w));
            }
            if b.dup > 0 {
                let mut w = self.clone();
                w.budget.dup -= 1;
                w.net.push(self.net[k].clone());
                out.push((format!("duplicate {:?}", self.net[k]), w));
            }
        }
        if b.ticks > 0 {
            let mut w = self.clone();
            w.budget.ticks -= 1;
            w.now += STEP_MS;
            w.step_core(Input::Tick);
            out.push(("tick".into(), w));
        }
        if self.pending_force.is_some() {
            let mut w = self.clone();
            w.log_commit = w.pending_force.take();
            w.written_unnotified = true;
            out.push(("log writes COMMIT".into(), w));
            if b.logfail > 0 {
                let mut w = self.clone();
                w.budget.logfail -= 1;
                w.pending_force = None;
                w.step_core(Input::CommitFailed {
                    txid: txid(),
                    error: "model".into(),
                });
                out.push(("log write fails".into(), w));
            }
        }
        if self.written_unnotified {
            let mut w = self.clone();
            w.written_unnotified = false;
            w.step_core(Input::CommitDurable { txid: txid() });
            out.push(("COMMIT durable".into(), w));
        }
        for (i, p) in self.parts.iter().enumerate() {
            if p.st == PState::Prepared && p.conn && b.asks > 0 {
                let mut w = self.clone();
                w.budget.asks -= 1;
                w.net
                    .push(Net::ToC(i, Message::DecisionRequest { txid: txid() }));
                out.push((format!("{} asks for the decision", NAMES[i]), w));
            }
            if p.up && b.pcrash > 0 {
                let mut w = self.clone();
                w.budget.pcrash -= 1;
                w.disconnect(i);
                w.parts[i].up = false;
                out.push((format!("{} crashes", NAMES[i]), w));
            }
            if !p.up {
                let mut w = self.clone();
                w.parts[i].up = true;
                if w.buggy && w.parts[i].st == PState::Prepared {
                    w.parts[i].st = PState::Committed;
                }
                w.connect(i);
                out.push((format!("{} recovers and reconnects", NAMES[i]), w));
            }
            if p.up && !p.conn {
                let mut w = self.clone();
                w.connect(i);
                out.push((format!("{} connects", NAMES[i]), w));
            }
            if p.conn && b.disc > 0 {
                let mut w = self.clone();
                w.budget.disc -= 1;
                w.disconnect(i);
                out.push((format!("{} connection drops", NAMES[i]), w));
            }
        }
        if b.ccrash > 0 {
            let mut w = self.clone();
            w.budget.ccrash -= 1;
            w.crash_coordinator(template);
            out.push(("coordinator crashes and recovers".into(), w));
        }
        out
    }

    /// Safety properties of this state.
    fn safety(&self) -> Option<String> {
        let sts: Vec<PState> = self.parts.iter().map(|p| p.st).collect();
        let any_commit = sts.contains(&PState::Committed);
        if any_commit && sts.contains(&PState::Aborted) {
            return Some(format!("atomicity: participants {sts:?}"));
        }
        if any_commit && !(self.parts.iter().all(|p| p.voted_yes) && self.log_commit.is_some()) {
            return Some("a participant committed without every YES and a durable COMMIT".into());
        }
        match self.told {
            Some(Outcome::Committed) if self.log_commit.is_none() => {
                Some("client told committed before the COMMIT record was durable".into())
            }
            Some(Outcome::Aborted) if any_commit => {
                Some("client told aborted but a participant committed".into())
            }
            _ => None,
        }
    }

    /// Heals everything and runs to quiescence; returns a liveness/eventual-consistency
    /// violation if any.
    fn heal_and_check(&self) -> Option<String> {
        let mut w = self.clone();
        for _round in 0..60 {
            for i in 0..2 {
                w.parts[i].up = true;
                if !w.parts[i].conn {
                    w.connect(i);
                }
            }
            let mut guard = 0;
            while !w.net.is_empty() && guard < 200 {
                w.deliver(0, false);
                guard += 1;
            }
            if w.pending_force.is_some() {
                w.log_commit = w.pending_force.take();
                w.written_unnotified = true;
            }
            if w.written_unnotified {
                w.written_unnotified = false;
                w.step_core(Input::CommitDurable { txid: txid() });
            }
            let settled = w.net.is_empty()
                && w.core.active() == 0
                && w.parts.iter().all(|p| p.st != PState::Prepared);
            if settled {
                let sts: Vec<PState> = w.parts.iter().map(|p| p.st).collect();
                let all_commit = sts.iter().all(|s| *s == PState::Committed);
                let any_commit = sts.contains(&PState::Committed);
                if any_commit && !all_commit {
                    return Some(format!("after healing participants disagree: {sts:?}"));
                }
                if (self.told == Some(Outcome::Committed) || self.log_commit.is_some())
                    && !all_commit
                {
                    return Some(format!(
                        "COMMIT logged / client told committed, but after healing {sts:?}"
                    ));
                }
                if let Some(v) = w.safety() {
                    return Some(format!("after healing: {v}"));
                }
                return None;
            }
            // Participants still prepared ask, as their timers would.
            for i in 0..2 {
                if w.parts[i].st == PState::Prepared {
                    w.net
                        .push(Net::ToC(i, Message::DecisionRequest { txid: txid() }));
                }
            }
            w.now += STEP_MS;
            w.step_core(Input::Tick);
        }
        Some(format!(
            "does not settle after healing: participants {:?}, core active {}, net {}",
            w.parts.iter().map(|p| p.st).collect::<Vec<_>>(),
            w.core.active(),
            w.net.len()
        ))
    }
}

struct Stats {
    states: usize,
    transitions: usize,
    max_depth: usize,
    committed_end_states: usize,
    aborted_end_states: usize,
}

fn initial(budget: Budget) -> (World, Core) {
    let template = Core::new(core_config());
    let mut w = World {
        core: template.clone(),
        now: 0,
        parts: [
            Part {
                st: PState::Idle,
                up: true,
                conn: false,
                voted_yes: false,
            },
            Part {
                st: PState::Idle,
                up: true,
                conn: false,
                voted_yes: false,
            },
        ],
        net: vec![],
        log_commit: None,
        pending_force: None,
        written_unnotified: false,
        told: None,
        budget,
        buggy: false,
    };
    let outs = w.core.recover(0, vec![], vec![]);
    w.apply(outs);
    for i in 0..2 {
        w.connect(i);
    }
    while !w.net.is_empty() {
        w.deliver(0, false);
    }
    let participants: BTreeMap<ParticipantName, Operations> =
        (0..2).map(|i| (pname(i), ops(i))).collect();
    w.step_core(Input::Submit {
        req: 1,
        txid: txid(),
        body_hash: 42,
        participants,
    });
    (w, template)
}

/// Explores every state reachable within `budget`; panics with a trace on a violation.
fn explore(name: &str, budget: Budget, max_states: usize) -> Stats {
    explore_with(name, budget, max_states, false)
}

fn explore_with(name: &str, budget: Budget, max_states: usize, buggy: bool) -> Stats {
    let t0 = Instant::now();
    let (mut init, template) = initial(budget);
    init.buggy = buggy;
    let mut seen: HashSet<u64> = HashSet::new();
    // Each queue entry keeps the trace (as an index into `trace`) for counterexamples.
    let mut trace: Vec<(usize, String)> = vec![(usize::MAX, "submit t1".into())];
    let mut queue: VecDeque<(World, usize, usize)> = VecDeque::new();
    seen.insert(init.fingerprint());
    queue.push_back((init, 0, 0));
    let mut stats = Stats {
        states: 1,
        transitions: 0,
        max_depth: 0,
        committed_end_states: 0,
        aborted_end_states: 0,
    };
    let render = |trace: &Vec<(usize, String)>, mut at: usize| {
        let mut steps = Vec::new();
        while at != usize::MAX {
            steps.push(trace[at].1.clone());
            at = trace[at].0;
        }
        steps.reverse();
        steps.join("\n  -> ")
    };
    while let Some((w, depth, tr)) = queue.pop_front() {
        stats.max_depth = stats.max_depth.max(depth);
        if let Some(v) = w.safety() {
            panic!(
                "[{name}] SAFETY VIOLATION: {v}\ntrace:\n  {}",
                render(&trace, tr)
            );
        }
        if let Some(v) = w.heal_and_check() {
            panic!("[{name}] VIOLATION: {v}\ntrace:\n  {}", render(&trace, tr));
        }
        let succ = w.successors(&template);
        if succ.is_empty() {
            if w.parts.iter().all(|p| p.st == PState::Committed) {
                stats.committed_end_states += 1;
            } else {
                stats.aborted_end_states += 1;
            }
        }
        for (label, s) in succ {
            stats.transitions += 1;
            if seen.insert(s.fingerprint()) {
                stats.states += 1;
                assert!(
                    stats.states <= max_states,
                    "[{name}] state space exceeds the bound of {max_states} states; tighten the budget"
                );
                trace.push((tr, label));
                queue.push_back((s, depth + 1, trace.len() - 1));
            }
        }
    }
    println!(
        "model check [{name}]: {} states, {} transitions, depth {}, {} quiescent committed / {} other end states, {:.1} s, 0 violations",
        stats.states,
        stats.transitions,
        stats.max_depth,
        stats.committed_end_states,
        stats.aborted_end_states,
        t0.elapsed().as_secs_f64()
    );
    stats
}

/// Runs one configuration. `TWOPC_MODEL_DEEP=1` adds one tick and one more unit of every
/// non-zero fault budget (minutes instead of seconds, millions of states).
fn check(name: &str, mut budget: Budget) {
    let mut bound = 250_000;
    if std::env::var_os("TWOPC_MODEL_DEEP").is_some() {
        let inc = |x: &mut u8| {
            if *x > 0 {
                *x += 1
            }
        };
        for x in [
            &mut budget.loss,
            &mut budget.dup,
            &mut budget.pcrash,
            &mut budget.ccrash,
            &mut budget.disc,
            &mut budget.asks,
        ] {
            inc(x);
        }
        budget.ticks += 1;
        bound = 50_000_000;
    }
    let s = explore(name, budget, bound);
    assert!(s.states > 100, "suspiciously small state space");
}

#[test]
fn message_loss_duplication_reordering_and_no_votes() {
    check(
        "loss 1, duplicate 1, NO vote 1, ticks 3",
        Budget {
            loss: 1,
            dup: 1,
            noes: 1,
            ticks: 3,
            ..Budget::default()
        },
    );
}

#[test]
fn message_loss_twice() {
    check(
        "loss 2, ticks 4",
        Budget {
            loss: 2,
            ticks: 4,
            ..Budget::default()
        },
    );
}

#[test]
fn connection_drops_and_decision_requests() {
    check(
        "connection drop 1, loss 1, ticks 3",
        Budget {
            disc: 1,
            loss: 1,
            ticks: 3,
            ..Budget::default()
        },
    );
}

#[test]
fn decision_requests() {
    check(
        "decision request 1, loss 1, ticks 3",
        Budget {
            asks: 1,
            loss: 1,
            ticks: 3,
            ..Budget::default()
        },
    );
}

#[test]
fn participant_crash() {
    check(
        "participant crash 1, NO vote 1, ticks 3",
        Budget {
            pcrash: 1,
            noes: 1,
            ticks: 3,
            ..Budget::default()
        },
    );
}

#[test]
fn coordinator_crash_and_log_failure() {
    check(
        "coordinator crash 1, log failure 1, ticks 3",
        Budget {
            ccrash: 1,
            logfail: 1,
            ticks: 3,
            ..Budget::default()
        },
    );
}

#[test]
fn coordinator_and_participant_crash() {
    check(
        "coordinator crash 1, participant crash 1, ticks 2",
        Budget {
            ccrash: 1,
            pcrash: 1,
            ticks: 2,
            ..Budget::default()
        },
    );
}

/// The checker itself must catch a broken protocol: a participant that commits on Prepare
/// (no vote round) violates atomicity when the other votes NO.
#[test]
fn the_checker_finds_a_planted_bug() {
    let (mut w, _t) = initial(Budget::default());
    w.parts[0].st = PState::Committed;
    w.parts[1].st = PState::Aborted;
    assert!(w.safety().unwrap().contains("atomicity"));
    let (mut w, _t) = initial(Budget::default());
    w.told = Some(Outcome::Committed);
    assert!(w.safety().is_some());
}

/// The explorer finds a planted protocol bug on its own: a participant that commits a
/// prepared transaction by itself when it recovers from a crash breaks atomicity as soon as
/// the other participant votes NO.
#[test]
#[should_panic(expected = "VIOLATION")]
fn the_explorer_finds_a_planted_participant_bug() {
    explore_with(
        "planted bug: heuristic commit on recovery",
        Budget {
            pcrash: 1,
            noes: 1,
            ticks: 2,
            ..Budget::default()
        },
        250_000,
        true,
    );
}
