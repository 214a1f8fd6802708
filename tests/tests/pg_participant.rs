//! The Postgres participant endpoint hosted by pg_twopc_ext's background worker, against a
//! real PostgreSQL 15 cluster with `shared_preload_libraries = 'pg_twopc_ext'`, driven over a
//! real WebSocket the way the coordinator drives it.
//!
//! Needs the extension installed into the system PostgreSQL 15 (`scripts/test.sh` runs
//! `cargo pgrx install` first).

use std::net::SocketAddr;
use std::time::Duration;
use twopc_protocol::gid::format_gid;
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, Message, NoClass, Operations, ParticipantKind,
    SqlStatement, TxId, Vote,
};
use twopc_tests::wire_client::WireClient;
use twopc_tests::{util, PgCluster, PgOptions};

const TOKEN: &str = "pg-participant-token-42";

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn sql(q: &str, params: Vec<serde_json::Value>) -> SqlStatement {
    SqlStatement {
        query: q.into(),
        params,
        shard_key: None,
    }
}

struct Stack {
    pg: PgCluster,
    addr: SocketAddr,
}

fn start() -> Stack {
    start_with("CREATE EXTENSION pg_twopc_ext")
}

/// [`start`], creating the extension with `create_extension`.
fn start_with(create_extension: &str) -> Stack {
    twopc_tests::secrets::register(TOKEN);
    let ext = std::path::Path::new("/usr/share/postgresql/15/extension/pg_twopc_ext.control");
    assert!(
        ext.exists(),
        "pg_twopc_ext is not installed: run `cd pg_twopc_ext && cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config`"
    );
    let port = util::free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pg = PgCluster::start(PgOptions {
        shared_preload_libraries: Some("pg_twopc_ext".into()),
        settings: vec![
            ("twopc.listen_addr".into(), format!("'{addr}'")),
            ("twopc.database".into(), "'bank'".into()),
            ("twopc.role".into(), "'app'".into()),
            ("twopc.client_role".into(), "'app_client'".into()),
            ("twopc.auth_token".into(), format!("'{TOKEN}'")),
            ("twopc.participant_name".into(), "'bank'".into()),
            ("twopc.decision_timeout".into(), "'60s'".into()),
        ],
        databases: vec!["bank".into()],
        ..PgOptions::default()
    })
    .expect("start postgres with the extension preloaded");
    pg.psql_ok(
        "bank",
        &format!(
            "CREATE ROLE app LOGIN;
                 CREATE ROLE app_client NOLOGIN;
                 GRANT app_client TO app;
         {create_extension};
         GRANT USAGE ON SCHEMA twopc TO app;
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc TO app;
         GRANT SELECT ON ALL TABLES IN SCHEMA twopc TO app;
         GRANT SELECT ON twopc.in_doubt TO app;
         CREATE TABLE accounts(id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
         INSERT INTO accounts VALUES (1, 100), (2, 100);
         GRANT SELECT, UPDATE, INSERT ON accounts TO app_client;"
        ),
    )
    .expect("set up the bank database");
    Stack { pg, addr }
}

async fn connect(addr: SocketAddr) -> (WireClient, Vec<String>) {
    let mut last = None;
    for _ in 0..100 {
        match WireClient::connect(addr, Some(TOKEN)).await {
            Ok(mut c) => {
                let first = c.recv().await;
                let Message::InDoubtReport {
                    participant,
                    kind,
                    prepared,
                } = first.msg
                else {
                    panic!("first frame must be the in-doubt report, got {first:?}")
                };
                assert_eq!(participant.as_str(), "bank");
                assert_eq!(kind, ParticipantKind::Postgres);
                return (c, prepared.iter().map(|p| p.txid.to_string()).collect());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the participant endpoint never accepted a connection: {last:?}");
}

fn transfer(amount: i64) -> Operations {
    Operations::Sql(vec![
        sql(
            "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
            vec![amount.into(), 1.into()],
        ),
        sql(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            vec![amount.into(), "2".into()],
        ),
    ])
}

async fn vote(c: &mut WireClient, txid: &str, ops: Operations) -> (Vote, Option<String>) {
    let (vote, reason, _) = vote_with_class(c, txid, ops).await;
    (vote, reason)
}

/// [`vote`] with the NO's class.
async fn vote_with_class(
    c: &mut WireClient,
    txid: &str,
    ops: Operations,
) -> (Vote, Option<String>, Option<NoClass>) {
    c.vote_with_class(Message::Prepare {
        submitted_by: None,
        txid: tx(txid),
        coordinator: CoordinatorId::new("c1").unwrap(),
        ops,
        timeout_ms: None,
        priority: None,
        epoch: None,
    })
    .await
}

async fn finish(c: &mut WireClient, msg: Message) -> (Decision, AckResult) {
    c.ack(msg).await
}

fn balances(pg: &PgCluster) -> String {
    pg.psql_ok(
        "bank",
        "SELECT string_agg(balance::text, ',' ORDER BY id) FROM accounts",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_commit_and_idempotent_acks() {
    let s = start();
    let (mut c, prepared) = connect(s.addr).await;
    assert!(prepared.is_empty());
    assert_eq!(vote(&mut c, "t1", transfer(10)).await, (Vote::Yes, None));
    // Prepared under the derived gid, owned by the configured role, invisible until commit.
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT gid || ' ' || owner FROM pg_prepared_xacts")
            .unwrap(),
        "twopc:c1:t1 app"
    );
    assert_eq!(
        s.pg.psql_ok(
            "bank",
            "SELECT global_id || ' ' || coordinator FROM twopc.in_doubt"
        )
        .unwrap(),
        "t1 c1"
    );
    assert_eq!(balances(&s.pg), "100,100");
    // A duplicated Prepare does not run the statements twice.
    assert_eq!(vote(&mut c, "t1", transfer(10)).await.0, Vote::Yes);
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("t1"),
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(balances(&s.pg), "90,110");
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("t1"),
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::AlreadyApplied)
    );
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT twopc.outcome('twopc:c1:t1')")
            .unwrap(),
        "committed"
    );
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("never"),
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::NotPrepared)
    );
    // Abort.
    assert_eq!(vote(&mut c, "t2", transfer(5)).await.0, Vote::Yes);
    assert_eq!(
        finish(
            &mut c,
            Message::Abort {
                txid: tx("t2"),
                reason: None,
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Abort, AckResult::Applied)
    );
    assert_eq!(balances(&s.pg), "90,110");
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT count(*) FROM pg_prepared_xacts")
            .unwrap(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_vote_no_with_the_postgres_message_and_leave_nothing() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    let (v, reason, class) = vote_with_class(&mut c, "t-check", transfer(1000)).await;
    assert_eq!(v, Vote::No);
    let reason = reason.unwrap();
    assert!(
        reason.contains("23514") && reason.contains("check constraint"),
        "{reason}"
    );
    // A constraint fails the same way on every attempt.
    assert_eq!(class, Some(NoClass::Final));
    let (v, reason) = vote(
        &mut c,
        "t-syntax",
        Operations::Sql(vec![sql("UPDATE nope SET x = 1", vec![])]),
    )
    .await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("42P01"));
    let (v, reason) = vote(
        &mut c,
        "t-commit",
        Operations::Sql(vec![sql("COMMIT", vec![])]),
    )
    .await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("not allowed"));
    // Hostile parameters are bound, never spliced.
    let hostile = "1; DROP TABLE accounts; --";
    let (v, reason) = vote(
        &mut c,
        "t-hostile",
        Operations::Sql(vec![sql(
            "UPDATE accounts SET balance = balance WHERE id::text = $1",
            vec![hostile.into()],
        )]),
    )
    .await;
    assert_eq!(v, Vote::Yes, "{reason:?}");
    finish(
        &mut c,
        Message::Abort {
            txid: tx("t-hostile"),
            reason: None,
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    assert_eq!(balances(&s.pg), "100,100");
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT count(*) FROM pg_prepared_xacts")
            .unwrap(),
        "0"
    );
}

fn prepare_aged(txid: &str, ops: Operations, age: Option<u64>) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: tx(txid),
        coordinator: CoordinatorId::new("c1").unwrap(),
        ops,
        timeout_ms: None,
        priority: age.map(twopc_protocol::Priority),
        epoch: None,
    }
}

/// An older transaction waits inside PostgreSQL for a younger prepared holder's row up to the
/// lock-wait bound (PostgreSQL's lock timeout, 1 s), then votes NO, retryably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_prepare_waits_for_a_prepared_holder_until_the_lock_timeout() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    // Without a priority the holder counts as the youngest of all.
    assert_eq!(vote(&mut c, "holder", transfer(1)).await.0, Vote::Yes);
    let started = std::time::Instant::now();
    let (v, reason, class) = c
        .vote_with_class(prepare_aged("waiter", transfer(1), Some(1)))
        .await;
    assert_eq!(v, Vote::No);
    assert!(
        reason.as_deref().unwrap().contains("lock timeout"),
        "expected a lock timeout: {reason:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // SQLSTATE 55P03: another attempt can succeed once the holder is gone.
    assert_eq!(class, Some(NoClass::Conflict));
    finish(
        &mut c,
        Message::Commit {
            txid: tx("holder"),
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    assert_eq!(balances(&s.pg), "99,101");
}

/// A younger transaction waiting inside PostgreSQL for an older one's row gives way within
/// the give-way time (200 ms) plus a wait check (25 ms): the participant finds the wait in
/// `pg_locks` and cancels it; the NO says why and is retryable, and nothing stays prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_younger_prepare_gives_way_to_an_older_holder_inside_postgres() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    let holder = prepare_aged("old", transfer(1), Some(1));
    assert_eq!(c.vote(holder).await.0, Vote::Yes);
    let started = std::time::Instant::now();
    let (v, reason, class) = c
        .vote_with_class(prepare_aged("young", transfer(2), Some(2)))
        .await;
    let waited = started.elapsed();
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    let reason = reason.unwrap();
    assert!(
        reason.contains("older transaction old") && reason.contains("gave way"),
        "{reason}"
    );
    assert!(
        waited < Duration::from_millis(700),
        "gave way after {waited:?}"
    );
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT string_agg(gid, ',') FROM pg_prepared_xacts")
            .unwrap(),
        "twopc:c1:old"
    );
    finish(
        &mut c,
        Message::Commit {
            txid: tx("old"),
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    assert_eq!(balances(&s.pg), "99,101");
}

/// Prepares "young" (younger, holding account 1's row), then sends an older "old" that needs
/// the same row and so waits for it: the waiter's request id.
async fn old_waits_for_young(c: &mut WireClient) -> u64 {
    assert_eq!(
        c.vote(prepare_aged("young", transfer(1), Some(9))).await.0,
        Vote::Yes
    );
    c.send(prepare_aged("old", transfer(2), Some(1))).await
}

/// A prepare waiting for a prepared holder's row prepares as soon as the holder commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_prepare_prepares_when_the_holder_commits() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    let waiter = old_waits_for_young(&mut c).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    finish(
        &mut c,
        Message::Commit {
            txid: tx("young"),
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    match c.recv_matching(|f| f.id == waiter).await.msg {
        Message::Vote { vote, reason, .. } => assert_eq!(vote, Vote::Yes, "{reason:?}"),
        other => panic!("expected a vote, got {other:?}"),
    }
    finish(
        &mut c,
        Message::Commit {
            txid: tx("old"),
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    assert_eq!(balances(&s.pg), "97,103");
}

/// A prepare whose connection is ended under it (here by an administrator while it waits for
/// a row lock; a server restart or a dropped network connection look the same) is settled on
/// another connection: its statements were rolled back with the session, so the vote is a
/// retryable NO (the gid stays refused, as after any failed prepare), never an error reply or
/// a gid left prepared, and the next attempt prepares on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_whose_connection_is_ended_votes_a_retryable_no() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    let waiter = old_waits_for_young(&mut c).await;
    let lock_waiter = "SELECT pid FROM pg_stat_activity \
         WHERE usename = 'app' AND wait_event_type = 'Lock'";
    let mut pid = String::new();
    for _ in 0..100 {
        pid = s.pg.psql_ok("bank", lock_waiter).unwrap();
        if !pid.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !pid.is_empty(),
        "the older prepare never waited for the row"
    );
    assert_eq!(
        s.pg.psql_ok("bank", &format!("SELECT pg_terminate_backend({pid})"))
            .unwrap(),
        "t"
    );
    match c.recv_matching(|f| f.id == waiter).await.msg {
        Message::Vote {
            vote,
            reason,
            class,
            ..
        } => {
            assert_eq!(vote, Vote::No);
            assert_eq!(class, Some(NoClass::Conflict), "{reason:?}");
            let reason = reason.unwrap();
            assert!(
                reason.contains("connection to PostgreSQL was lost"),
                "{reason}"
            );
            assert!(!reason.contains(".rs:"), "{reason}");
        }
        other => panic!("expected a vote, got {other:?}"),
    }
    let prepared = "SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts";
    assert_eq!(
        s.pg.psql_ok("bank", prepared).unwrap(),
        format_gid(&CoordinatorId::new("c1").unwrap(), &tx("young"))
    );
    // The same Prepare again is refused: its gid was used by the rolled-back attempt.
    assert_eq!(
        c.vote(prepare_aged("old", transfer(2), Some(1))).await.0,
        Vote::No
    );
    for (txid, amount) in [("young", 0), ("old-2", 2)] {
        if amount > 0 {
            let (v, reason) = vote(&mut c, txid, transfer(amount)).await;
            assert_eq!(v, Vote::Yes, "{reason:?}");
        }
        let commit = Message::Commit {
            txid: tx(txid),
            coordinator: None,
            epoch: None,
        };
        assert_eq!(
            finish(&mut c, commit).await,
            (Decision::Commit, AckResult::Applied)
        );
    }
    assert_eq!(balances(&s.pg), "97,103");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_transactions_survive_an_immediate_stop_and_are_reported() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    assert_eq!(vote(&mut c, "t-crash", transfer(7)).await.0, Vote::Yes);
    drop(c);
    s.pg.crash().unwrap();
    s.pg.start_server().unwrap();
    let (mut c, prepared) = connect(s.addr).await;
    assert_eq!(prepared, vec!["t-crash".to_string()]);
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("t-crash"),
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(balances(&s.pg), "93,107");
}

/// A PREPARE that fails at the very end (a deferred constraint, checked by PREPARE itself)
/// leaves a dead tracking row behind. The participant forgets its in-memory tombstones when it
/// restarts; the dead row is what still tells `twopc.gid_state()` that this transaction was
/// rolled back, so a repeated Prepare is refused instead of running its statements again.
/// (After a crash the row may be gone with the unflushed WAL of the aborted transaction; then
/// the transaction is unknown here, and a late YES meets the coordinator's presumed abort.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_that_failed_at_prepare_time_stays_refused_after_a_restart() {
    let s = start();
    s.pg.psql_ok(
        "bank",
        "CREATE TABLE ledger(id int PRIMARY KEY,
                             account int REFERENCES accounts(id) DEFERRABLE INITIALLY DEFERRED);
         GRANT SELECT, INSERT ON ledger TO app_client;",
    )
    .unwrap();
    let insert = |account: i64| {
        Operations::Sql(vec![sql(
            "INSERT INTO ledger VALUES ($1, $2)",
            vec![1.into(), account.into()],
        )])
    };
    let (mut c, _) = connect(s.addr).await;
    // The statement succeeds; the foreign key is checked when the transaction prepares.
    let (v, reason) = vote(&mut c, "deferred", insert(99)).await;
    assert_eq!(v, Vote::No);
    assert!(
        reason.as_deref().unwrap_or("").contains("foreign key"),
        "the reason names the failed check: {reason:?}"
    );
    assert_eq!(
        s.pg.psql_ok(
            "bank",
            "SELECT status FROM twopc.tracking_tuples() WHERE gid = 'twopc:c1:deferred'"
        )
        .unwrap(),
        "aborted"
    );
    drop(c);
    // A clean restart of the server: the worker starts with no memory of the transaction.
    s.pg.stop().unwrap();
    s.pg.start_server().unwrap();
    let (mut c, prepared) = connect(s.addr).await;
    assert!(prepared.is_empty());
    // Now valid, but the transaction was already rolled back here: refused, nothing written.
    let (v, reason) = vote(&mut c, "deferred", insert(1)).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("already rolled back"));
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT count(*) FROM ledger").unwrap(),
        "0"
    );
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT count(*) FROM pg_prepared_xacts")
            .unwrap(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_is_restarted_after_it_is_killed_and_refuses_bad_tokens() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    assert_eq!(vote(&mut c, "t-kill", transfer(2)).await.0, Vote::Yes);
    drop(c);
    let pids = s.pg.children_titled("twopc participant");
    assert_eq!(pids.len(), 1, "exactly one worker runs");
    util::sigkill(pids[0]);
    // The postmaster restarts after a killed child (crash cycle); the worker comes back.
    let (mut c, prepared) = connect(s.addr).await;
    assert_eq!(prepared, vec!["t-kill".to_string()]);
    assert_eq!(
        finish(
            &mut c,
            Message::Abort {
                txid: tx("t-kill"),
                reason: None,
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Abort, AckResult::Applied)
    );

    let refused = WireClient::refused(s.addr, Some("wrong")).await;
    assert_eq!(refused.status, 401);
    let refused = WireClient::refused(s.addr, None).await;
    assert_eq!(refused.status, 401);
    // The token is not visible to ordinary roles.
    let shown =
        s.pg.psql_raw("bank", &["-At", "-U", "app"], "SHOW twopc.auth_token")
            .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout).to_string()
        + &String::from_utf8_lossy(&shown.stderr);
    assert!(
        !text.contains(TOKEN),
        "token leaked to a non-superuser: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_stops_the_worker_without_errors() {
    let s = start();
    let (c, _) = connect(s.addr).await;
    drop(c);
    s.pg.stop().unwrap();
    let log = std::fs::read_to_string(s.pg.log_path()).unwrap();
    assert!(log.contains("twopc participant listening"), "{log}");
    assert!(log.contains("twopc participant stopped"), "{log}");
    for bad in [
        "PANIC",
        "terminated by signal",
        "\"twopc participant\" (PID",
    ] {
        assert!(!log.contains(bad), "{bad} in the server log:\n{log}");
    }
    s.pg.start_server().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_run_in_the_order_given_also_when_pipelined() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    // Twice: the second time every statement is cached and the whole transaction is one
    // pipelined round trip. Reordering would make the UPDATE miss the row the INSERT creates.
    for (txid, id) in [("order-1", 3), ("order-2", 4)] {
        let ops = Operations::Sql(vec![
            sql("INSERT INTO accounts VALUES ($1, 0)", vec![id.into()]),
            sql(
                "UPDATE accounts SET balance = balance + 5 WHERE id = $1",
                vec![id.into()],
            ),
            sql(
                "UPDATE accounts SET balance = balance * 2 WHERE id = $1",
                vec![id.into()],
            ),
        ]);
        assert_eq!(vote(&mut c, txid, ops).await.0, Vote::Yes);
        assert_eq!(
            finish(
                &mut c,
                Message::Commit {
                    txid: tx(txid),
                    coordinator: None,
                    epoch: None,
                }
            )
            .await,
            (Decision::Commit, AckResult::Applied)
        );
    }
    assert_eq!(balances(&s.pg), "100,100,10,10");
    // A failure in the middle of a pipelined transaction reports that statement and leaves nothing.
    let ops = Operations::Sql(vec![
        sql(
            "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
            vec![1.into()],
        ),
        sql("INSERT INTO accounts VALUES ($1, 0)", vec![2.into()]),
        sql(
            "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
            vec![2.into()],
        ),
    ]);
    let (v, reason) = vote(&mut c, "order-3", ops).await;
    assert_eq!(v, Vote::No);
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("statement 2 failed") && reason.contains("23505"),
        "{reason}"
    );
    assert_eq!(balances(&s.pg), "100,100,10,10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_prepare_after_an_abort_or_a_no_vote_is_refused() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    // The Abort overtook its Prepare (a delayed frame): the Prepare must not prepare anything.
    assert_eq!(
        finish(
            &mut c,
            Message::Abort {
                txid: tx("overtaken"),
                reason: None,
                coordinator: None,
                epoch: None,
            }
        )
        .await,
        (Decision::Abort, AckResult::NotPrepared)
    );
    let (v, reason) = vote(&mut c, "overtaken", transfer(1)).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("already aborted"));
    // A repeated Prepare after a NO vote does not get a second chance either.
    assert_eq!(vote(&mut c, "no-twice", transfer(1000)).await.0, Vote::No);
    assert_eq!(vote(&mut c, "no-twice", transfer(1)).await.0, Vote::No);
    assert_eq!(
        s.pg.psql_ok("bank", "SELECT count(*) FROM pg_prepared_xacts")
            .unwrap(),
        "0"
    );
    assert_eq!(balances(&s.pg), "100,100");
}

/// Two coordinators ran a transaction each under the same client txid (their gids differ): a
/// Commit or Abort names its coordinator and settles exactly that one's gid; one that names
/// none, with both prepared, is refused rather than guessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_settle_the_named_coordinators_gid_only() {
    let s = start();
    let (mut c, _) = connect(s.addr).await;
    assert_eq!(vote(&mut c, "x", transfer(10)).await, (Vote::Yes, None));
    let c2 = CoordinatorId::new("c2").unwrap();
    let (v, reason) = c
        .vote(Message::Prepare {
            submitted_by: None,
            txid: tx("x"),
            coordinator: c2.clone(),
            // Touches no row c1's "x" holds.
            ops: Operations::Sql(vec![sql(
                "UPDATE accounts SET balance = balance WHERE id = $1",
                vec![(-1).into()],
            )]),
            timeout_ms: None,
            priority: None,
            epoch: None,
        })
        .await;
    assert_eq!(v, Vote::Yes, "{reason:?}");
    let prepared = || {
        s.pg.psql_ok(
            "bank",
            "SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts",
        )
        .unwrap()
    };
    assert_eq!(prepared(), "twopc:c1:x,twopc:c2:x");
    match c
        .request(Message::Commit {
            txid: tx("x"),
            coordinator: None,
            epoch: None,
        })
        .await
    {
        Message::Error { message, .. } => {
            assert!(message.contains("several coordinators"), "{message}")
        }
        other => panic!("an unnamed commit of an ambiguous txid was not refused: {other:?}"),
    }
    assert_eq!(
        finish(
            &mut c,
            Message::Abort {
                txid: tx("x"),
                reason: None,
                coordinator: Some(c2.clone()),
                epoch: None,
            }
        )
        .await,
        (Decision::Abort, AckResult::Applied)
    );
    assert_eq!(prepared(), "twopc:c1:x");
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("x"),
                coordinator: Some(c2),
                epoch: None,
            }
        )
        .await
        .1,
        AckResult::Conflict,
        "c2's x was aborted"
    );
    assert_eq!(prepared(), "twopc:c1:x");
    assert_eq!(
        finish(
            &mut c,
            Message::Commit {
                txid: tx("x"),
                coordinator: Some(CoordinatorId::new("c1").unwrap()),
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(balances(&s.pg), "90,110");
}

/// The library one version ahead of the schema (the package upgraded, `ALTER EXTENSION ...
/// UPDATE` not run yet): a transaction that names its client still prepares, commits and
/// rolls back, with one warning in the log and without the name; once the schema is updated,
/// a fresh connection records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_one_version_behind_still_takes_named_transactions() {
    let name = "pg_twopc_ext--0.2.0.sql";
    let frozen = twopc_tests::repo_root()
        .join("pg_twopc_ext/sql/frozen")
        .join(name);
    let target = std::path::Path::new("/usr/share/postgresql/15/extension").join(name);
    std::fs::copy(&frozen, &target).expect("install the frozen 0.2.0 script (run as root)");
    let s = start_with("CREATE EXTENSION pg_twopc_ext VERSION '0.2.0'");
    let (mut c, _) = connect(s.addr).await;
    let named = |txid: &str| Message::Prepare {
        submitted_by: Some("payments".into()),
        txid: tx(txid),
        coordinator: CoordinatorId::new("c1").unwrap(),
        ops: transfer(5),
        timeout_ms: None,
        priority: None,
        epoch: None,
    };
    for (txid, decision) in [("n1", Decision::Commit), ("n2", Decision::Abort)] {
        let (v, reason, _) = c.vote_with_class(named(txid)).await;
        assert_eq!((v, reason), (Vote::Yes, None), "{txid}");
        let msg = match decision {
            Decision::Commit => Message::Commit {
                txid: tx(txid),
                coordinator: None,
                epoch: None,
            },
            Decision::Abort => Message::Abort {
                txid: tx(txid),
                reason: None,
                coordinator: None,
                epoch: None,
            },
        };
        assert_eq!(finish(&mut c, msg).await, (decision, AckResult::Applied));
    }
    assert_eq!(balances(&s.pg), "95,105");
    let history = "SELECT string_agg(global_id || ' ' || decision, ', ' ORDER BY global_id) \
                   FROM twopc.history";
    assert_eq!(
        s.pg.psql_ok("bank", history).unwrap(),
        "n1 commit, n2 abort"
    );
    // The worker's main thread logs the endpoint's warnings (every 100 ms).
    let log = logged(
        &s,
        "twopc participant: WARN pg_twopc_ext's SQL is older than its library",
    )
    .await;
    assert!(
        !log.contains("ERROR"),
        "asking the schema raises no error:\n{log}"
    );

    // Updated: the role was granted EXECUTE on the functions there were, not on the new one,
    // so names are still not recorded (and the transactions still run); granted, they are.
    // The worker's connections are ended each time so that the next ones look afresh.
    let replace_connections = "SELECT count(pg_terminate_backend(pid, 5000)) >= 0 \
         FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'";
    s.pg.psql_ok(
        "bank",
        &format!("ALTER EXTENSION pg_twopc_ext UPDATE; {replace_connections}"),
    )
    .unwrap();
    assert_eq!(named_commit(&s, &mut c, "n3", &named).await, "-");
    logged(&s, "may not execute").await;
    s.pg.psql_ok(
        "bank",
        &format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc TO app; {replace_connections}"),
    )
    .unwrap();
    assert_eq!(named_commit(&s, &mut c, "n4", &named).await, "payments");
}

/// Waits until the server log contains `text`; returns the log.
async fn logged(s: &Stack, text: &str) -> String {
    for _ in 0..100 {
        let log = std::fs::read_to_string(s.pg.log_path()).unwrap();
        if log.contains(text) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(s.pg.log_path()).unwrap();
    panic!("the server log never said {text:?}:\n{log}");
}

/// Prepares and commits a transaction that names its client; returns its history's
/// `submitted_by` (`-` for none). The first attempt must prepare: the connections ended under
/// the participant just before are the pool's to replace, never the client's failure.
async fn named_commit(
    s: &Stack,
    c: &mut WireClient,
    txid: &str,
    named: &impl Fn(&str) -> Message,
) -> String {
    let (v, reason, _) = c.vote_with_class(named(txid)).await;
    assert_eq!(v, Vote::Yes, "{txid}: {reason:?}");
    let commit = Message::Commit {
        txid: tx(txid),
        coordinator: None,
        epoch: None,
    };
    assert_eq!(
        finish(c, commit).await,
        (Decision::Commit, AckResult::Applied)
    );
    s.pg.psql_ok(
        "bank",
        &format!(
            "SELECT coalesce(submitted_by, '-') FROM twopc.history WHERE global_id = '{txid}'"
        ),
    )
    .unwrap()
}
