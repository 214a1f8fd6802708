//! The crash matrix: every role × every protocol point, crash and restart, then check every
//! invariant (`twopc_tests::invariants`).
//!
//! Roles: the coordinator process, the Redis participant process (`ledger`), redis-server,
//! the Postgres server (`pg_ctl stop -m immediate`), and the Postgres participant worker
//! (kill -9 of the background worker; the postmaster then runs a crash cycle and restarts it).
//!
//! Points, and how each is reached exactly. The whole stack runs with a
//! [`FaultProxy`](twopc_tests::fault_proxy) in front of each participant, so a specific frame
//! can be held in flight ("delay the next `vote` from the bank by 2.5 s") while the role is
//! crashed; the coordinator's own failpoints (`TWOPC_FAILPOINTS`) stop it at its internal
//! steps. `X` is the link of the crashed participant role (ledger link for the ledger process
//! and redis-server, bank link for the Postgres server and worker), `Y` the other one.
//!
//! | point | participant roles | coordinator |
//! |---|---|---|
//! | before prepare | Prepare to X held in the proxy; crash X | Prepares to both held; kill -9 |
//! | after prepare, before the vote is sent | X's vote held (X prepared durably); crash X | both votes held; kill -9 |
//! | after the vote, before the decision | X's vote delivered, Y's vote held; crash X | failpoint `before_commit_log` |
//! | after the decision is logged, before any commit is sent | both Commits held; crash X | failpoint `after_commit_log` |
//! | midway through the commit fan-out | Y committed and acked, X's Commit held; crash X | failpoint `after_first_commit_send` |
//! | after commit, before the ack | X's Ack held (X committed); crash X | both Acks held; kill -9 |
//!
//! Honest approximations: for the participant roles, "after prepare, before the vote is sent"
//! is reached as "the vote has left the participant but is held in the network" — the
//! participant cannot be stopped between its prepare script / PREPARE TRANSACTION and its send
//! without a hook in its code; from every other party's view the two are the same state (X
//! holds a durable prepared transaction and the coordinator has no vote). For redis-server
//! the ledger process itself stays up, so held frames are still delivered after the crash;
//! Redis is kept down until then (the participant meets a dead Redis, must fail cleanly and
//! be retried): that is the interesting variant for that role. For the coordinator, "before prepare" is "Prepares sent but never
//! delivered", which the participants cannot tell apart from "never sent".
//!
//! Each row asserts, besides every invariant: the outcome the row is about where the protocol
//! fixes it ([`expected`]: a logged COMMIT is committed everywhere, no possible decision is
//! aborted everywhere), that a client of a live coordinator got a final answer, and that a
//! fresh transfer commits after the recovery (liveness). Each role is one test (its own stack,
//! rows run sequentially; the tests of this file are
//! serialised by a lock so two stacks never compete for the 2 cores), and each row is
//! reported on its own line of the summary table.

use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::{Action, Dir, FaultProxy, Rule};
use twopc_tests::invariants::{self, Told};
use twopc_tests::reliability::{print_summary, told_in_time, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};
use twopc_tests::util;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HOLD: Duration = Duration::from_millis(2500);
const WAIT: Duration = Duration::from_secs(15);

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

fn opts(log: Log) -> StackOptions {
    StackOptions {
        postgres_decision_log: match log {
            Log::File => None,
            // Short, so that a coordinator restarted after kill -9 soon claims its id again.
            Log::Postgres => Some(1200),
        },
        accounts: 6,
        initial_balance: 1000,
        prepare_timeout_ms: 3000,
        decision_timeout_ms: 1000,
        ..StackOptions::default()
    }
}

/// Which decision log the coordinator writes: every row runs with both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    File,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Coordinator,
    LedgerProcess,
    RedisServer,
    PgServer,
    PgWorker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::LedgerProcess => "ledger-process",
            Role::RedisServer => "redis-server",
            Role::PgServer => "postgres-server",
            Role::PgWorker => "postgres-worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    BeforePrepare,
    PreparedVoteUnsent,
    VotedUndecided,
    DecisionLogged,
    MidCommit,
    CommittedUnacked,
}

const POINTS: [Point; 6] = [
    Point::BeforePrepare,
    Point::PreparedVoteUnsent,
    Point::VotedUndecided,
    Point::DecisionLogged,
    Point::MidCommit,
    Point::CommittedUnacked,
];

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforePrepare => "before-prepare",
            Point::PreparedVoteUnsent => "after-prepare-before-vote",
            Point::VotedUndecided => "after-vote-before-decision",
            Point::DecisionLogged => "decision-logged-before-commit-sent",
            Point::MidCommit => "midway-commit-fanout",
            Point::CommittedUnacked => "after-commit-before-ack",
        }
    }
    fn failpoint(self) -> Option<&'static str> {
        match self {
            Point::VotedUndecided => Some("before_commit_log"),
            Point::DecisionLogged => Some("after_commit_log"),
            Point::MidCommit => Some("after_first_commit_send"),
            _ => None,
        }
    }
}

/// The outcome a row is about, when the protocol fixes it: `Some(true)` when the COMMIT is
/// logged (or both YES votes are bound to arrive before the prepare timeout) by the time of
/// the crash, `Some(false)` when no decision can have been taken (presumed abort); `None` when
/// the row races the crash against a held frame and either outcome is correct. Every row must
/// also end atomic and honest (the invariant checker) and commit new work afterwards.
fn expected(role: Role, point: Point) -> Option<bool> {
    use Point::*;
    match (role, point) {
        (Role::Coordinator, BeforePrepare | PreparedVoteUnsent | VotedUndecided) => Some(false),
        (Role::Coordinator, DecisionLogged | MidCommit | CommittedUnacked) => Some(true),
        (_, DecisionLogged | MidCommit | CommittedUnacked) => Some(true),
        // X's Prepare never reached it: X disconnected before voting, or (redis-server) X's
        // process met a dead Redis until past the prepare timeout.
        (_, BeforePrepare) => Some(false),
        // redis-server: the ledger process had prepared and sent its vote before Redis died;
        // the held vote arrives before the prepare timeout.
        (Role::RedisServer, PreparedVoteUnsent) => Some(true),
        // The vote is held while X's connection dies: the coordinator may see the
        // disconnect (abort) or the vote (commit) first.
        (_, PreparedVoteUnsent) => None,
        // X voted YES and died; Y's held YES arrives before the timeout: commit, which X must
        // apply after its restart.
        (_, VotedUndecided) => Some(true),
    }
}

/// (crashed link X, other link Y) for a participant role.
fn links(rig: &Rig, role: Role) -> (&FaultProxy, &FaultProxy) {
    match role {
        Role::LedgerProcess | Role::RedisServer => (&rig.ledger, &rig.bank),
        _ => (&rig.bank, &rig.ledger),
    }
}

async fn crash(rig: &mut Rig, role: Role) -> Result<(), String> {
    tokio::task::block_in_place(|| match role {
        Role::Coordinator => {
            rig.stack.coordinator.kill9();
            Ok(())
        }
        Role::LedgerProcess => {
            rig.stack.ledger.kill9();
            Ok(())
        }
        Role::RedisServer => {
            rig.stack.redis.kill9();
            Ok(())
        }
        Role::PgServer => rig.stack.pg.crash().map_err(|e| e.to_string()),
        Role::PgWorker => {
            let pids = rig.stack.pg.children_titled("twopc participant");
            if pids.is_empty() {
                return Err("no twopc participant worker found".into());
            }
            for p in pids {
                util::sigkill(p);
            }
            Ok(())
        }
    })
}

async fn restart(rig: &mut Rig, role: Role) -> Result<(), String> {
    match role {
        Role::Coordinator => {
            rig.restart_coordinator(&[]).await;
            Ok(())
        }
        Role::LedgerProcess => {
            tokio::task::block_in_place(|| rig.stack.ledger.start()).map_err(|e| e.to_string())
        }
        Role::RedisServer => {
            tokio::task::block_in_place(|| rig.stack.redis.start()).map_err(|e| e.to_string())
        }
        Role::PgServer => {
            tokio::task::block_in_place(|| rig.stack.pg.start_server()).map_err(|e| e.to_string())
        }
        // The postmaster's crash cycle restarts the worker by itself.
        Role::PgWorker => Ok(()),
    }
}

async fn seen(p: &FaultProxy, dir: Dir, ty: &str, n: u64, what: &str) -> Result<(), String> {
    if p.wait_seen(dir, ty, n, WAIT).await {
        Ok(())
    } else {
        Err(format!("timed out waiting for {what}"))
    }
}

/// Drives one row up to and including the crash and the restart; returns the row's txid and
/// what its client was told.
async fn run_row(
    rig: &mut Rig,
    role: Role,
    point: Point,
    n: u64,
) -> Result<(String, Told), String> {
    let (from, to) = if n.is_multiple_of(2) { (1, 2) } else { (2, 1) };
    let amount = 1 + (n % 5) as i64;
    if role == Role::Coordinator {
        if let Some(fp) = point.failpoint() {
            // Exact internal points: restart with the failpoint armed, let it abort itself.
            rig.restart_coordinator(&[fp]).await;
            let (tx, h) = rig.spawn_transfer(from, to, amount);
            let txid = tx.txid.clone();
            let exited = tokio::task::block_in_place(|| {
                rig.stack.coordinator.wait_exit(Duration::from_secs(20))
            });
            let told = told_in_time(h).await;
            rig.record(tx, told);
            if !exited {
                return Err(format!("failpoint {fp} was not hit"));
            }
            restart(rig, role).await?;
            return Ok((txid, told));
        }
        let (dir, ty) = match point {
            Point::BeforePrepare => (Dir::ToParticipant, "prepare"),
            Point::PreparedVoteUnsent => (Dir::ToCoordinator, "vote"),
            _ => (Dir::ToCoordinator, "ack"),
        };
        let (bn, ln) = (rig.bank.seen(dir, ty), rig.ledger.seen(dir, ty));
        rig.bank.add_rule(Rule::once(dir, ty, Action::Delay(HOLD)));
        rig.ledger
            .add_rule(Rule::once(dir, ty, Action::Delay(HOLD)));
        let (tx, h) = rig.spawn_transfer(from, to, amount);
        let txid = tx.txid.clone();
        let r = async {
            seen(
                &rig.bank,
                dir,
                ty,
                bn + 1,
                &format!("{ty} on the bank link"),
            )
            .await?;
            seen(
                &rig.ledger,
                dir,
                ty,
                ln + 1,
                &format!("{ty} on the ledger link"),
            )
            .await
        }
        .await;
        crash(rig, role).await?;
        let told = told_in_time(h).await;
        rig.record(tx, told);
        restart(rig, role).await?;
        r?;
        return Ok((txid, told));
    }

    // Participant roles.
    let (xd, xt, yd, yt): (Dir, &str, Option<Dir>, Option<&str>) = match point {
        Point::BeforePrepare => (Dir::ToParticipant, "prepare", None, None),
        Point::PreparedVoteUnsent => (Dir::ToCoordinator, "vote", None, None),
        // X's vote goes through; Y's vote is held: the coordinator cannot decide yet.
        Point::VotedUndecided => (
            Dir::ToCoordinator,
            "vote",
            Some(Dir::ToCoordinator),
            Some("vote"),
        ),
        Point::DecisionLogged => (
            Dir::ToParticipant,
            "commit",
            Some(Dir::ToParticipant),
            Some("commit"),
        ),
        // Y gets its Commit and acks; X's Commit is held.
        Point::MidCommit => (
            Dir::ToParticipant,
            "commit",
            Some(Dir::ToCoordinator),
            Some("ack"),
        ),
        Point::CommittedUnacked => (Dir::ToCoordinator, "ack", None, None),
    };
    let (x_before, y_before) = {
        let (x, y) = links(rig, role);
        (
            x.seen(xd, xt),
            yd.zip(yt).map(|(d, t)| y.seen(d, t)).unwrap_or(0),
        )
    };
    {
        let (x, y) = links(rig, role);
        match point {
            Point::VotedUndecided => {
                y.add_rule(Rule::once(Dir::ToCoordinator, "vote", Action::Delay(HOLD)))
            }
            Point::DecisionLogged => {
                x.add_rule(Rule::once(
                    Dir::ToParticipant,
                    "commit",
                    Action::Delay(HOLD),
                ));
                y.add_rule(Rule::once(
                    Dir::ToParticipant,
                    "commit",
                    Action::Delay(HOLD),
                ));
            }
            _ => x.add_rule(Rule::once(xd, xt, Action::Delay(HOLD))),
        }
    }
    let (tx, h) = rig.spawn_transfer(from, to, amount);
    let txid = tx.txid.clone();
    let r = async {
        let (x, y) = links(rig, role);
        seen(
            x,
            xd,
            xt,
            x_before + 1,
            &format!("{xt} on the crashed link"),
        )
        .await?;
        if let (Some(d), Some(t)) = (yd, yt) {
            seen(y, d, t, y_before + 1, &format!("{t} on the other link")).await?;
        }
        if point == Point::VotedUndecided {
            // Let X's vote reach the coordinator before X dies.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<(), String>(())
    }
    .await;
    crash(rig, role).await?;
    // redis-server stays down until the held frame has been delivered, so the (live) Redis
    // participant meets a dead Redis with it; the other roles come back at once.
    let down_for = if role == Role::RedisServer {
        HOLD + Duration::from_millis(500)
    } else {
        Duration::from_millis(200)
    };
    tokio::time::sleep(down_for).await;
    restart(rig, role).await?;
    let told = told_in_time(h).await;
    rig.record(tx, told);
    r?;
    Ok((txid, told))
}

async fn run_role(role: Role, log: Log) {
    let _serial = SERIAL.lock().await;
    let t_all = Instant::now();
    let mut rig = Rig::start(bins(), opts(log), &format!("cm-{}", role.name())).await;
    // A transfer before any fault: the stack works.
    let first = rig.transfer(3, 4, 1).await;
    assert_eq!(
        first,
        Told::Committed,
        "the stack does not commit without faults"
    );
    let mut rows = Vec::new();
    for (i, point) in POINTS.into_iter().enumerate() {
        let t0 = Instant::now();
        let name = format!("{}/{}", role.name(), point.name());
        eprintln!("--- crash matrix row {name}");
        let res = run_row(&mut rig, role, point, i as u64).await;
        rig.bank.clear();
        rig.ledger.clear();
        rig.wait_connected().await;
        let report = rig.check().await;
        // Liveness after recovery: a fresh transfer on other accounts commits.
        let live = rig.transfer(5, 6, 1).await;
        let mut violations = report.violations.len();
        let mut note = match &res {
            Ok((_, told)) => format!(
                "client told {told:?}; settled {} ms",
                report.settle.as_millis()
            ),
            Err(e) => {
                violations += 1;
                format!("ROW FAILED: {e}")
            }
        };
        if let Ok((txid, told)) = &res {
            let want = expected(role, point);
            let rec = rig.txs.iter().find(|t| &t.txid == txid).cloned();
            let got = rec
                .ok_or_else(|| "row transaction not recorded".to_string())
                .and_then(|rec| {
                    tokio::task::block_in_place(|| {
                        invariants::committed_everywhere(&rig.stack, &rig.check_opts, &rec)
                    })
                });
            match (&got, want) {
                (Ok(Some(c)), Some(w)) if *c != w => {
                    violations += 1;
                    note.push_str(&format!(
                        "; VIOLATION outcome committed={c}, the row requires committed={w}"
                    ));
                }
                (Ok(Some(_)), _) => {}
                (Ok(None), _) => {
                    violations += 1;
                    note.push_str("; VIOLATION the row's transaction is not atomic");
                }
                (Err(e), _) => {
                    violations += 1;
                    note.push_str(&format!("; VIOLATION cannot read the outcome: {e}"));
                }
            }
            // Only a crashed coordinator leaves its client without an answer.
            if role != Role::Coordinator && !matches!(told, Told::Committed | Told::Aborted) {
                violations += 1;
                note.push_str(&format!(
                    "; VIOLATION client got no final answer ({told:?}) from a live coordinator"
                ));
            }
        }
        if live != Told::Committed {
            violations += 1;
            note.push_str(&format!("; VIOLATION liveness transfer {live:?}"));
        }
        for v in &report.violations {
            note.push_str(&format!("; VIOLATION {v}"));
        }
        rows.push(Row {
            name,
            faults: 1,
            txs: report.transactions,
            violations,
            ms: t0.elapsed().as_millis(),
            note,
        });
    }
    let last = rig.check().await;
    rows.push(Row {
        name: format!("{}/final-check", role.name()),
        faults: 0,
        txs: last.transactions,
        violations: last.violations.len(),
        ms: 0,
        note: last.to_string().replace('\n', " "),
    });
    if let Some(log_pg) = &rig.stack.log_pg {
        // The rows really ran on the PostgreSQL log: it holds their decisions, and every
        // coordinator restart claimed the id again at a higher epoch.
        let out = log_pg
            .psql_ok(
                "twopc_log",
                "SELECT (SELECT count(*) FROM twopc_log.decision) || ' ' ||
                        (SELECT epoch FROM twopc_log.lease WHERE coordinator_id = 'c1')",
            )
            .unwrap();
        let mut it = out
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(0));
        let (decisions, epoch) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        assert!(decisions > 0, "no decision in the PostgreSQL log");
        if role == Role::Coordinator {
            assert!(
                epoch > POINTS.len() as u64,
                "epoch {epoch}: restarts did not re-claim"
            );
        }
        eprintln!("postgres log: {decisions} decisions, lease epoch {epoch}");
    }
    let total = print_summary(
        &format!("crash matrix: {} ({log:?} log)", role.name()),
        &rows,
    );
    eprintln!(
        "crash matrix {}: {} s",
        role.name(),
        t_all.elapsed().as_secs()
    );
    assert_eq!(
        total, 0,
        "invariant violations in the crash matrix (see the table above)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_coordinator() {
    run_role(Role::Coordinator, Log::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_coordinator_postgres_log() {
    run_role(Role::Coordinator, Log::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_ledger_process() {
    run_role(Role::LedgerProcess, Log::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_ledger_process_postgres_log() {
    run_role(Role::LedgerProcess, Log::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_redis_server() {
    run_role(Role::RedisServer, Log::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_redis_server_postgres_log() {
    run_role(Role::RedisServer, Log::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_postgres_server() {
    run_role(Role::PgServer, Log::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_postgres_server_postgres_log() {
    run_role(Role::PgServer, Log::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_postgres_worker() {
    run_role(Role::PgWorker, Log::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_postgres_worker_postgres_log() {
    run_role(Role::PgWorker, Log::Postgres).await;
}
