//! The Redis participant against a real `redis-server` (AOF, appendfsync always), driven over
//! a real WebSocket by [`WireClient`], the way the coordinator drives it.
//!
//! Most tests run the participant server in-process (a tokio task over
//! [`RedisResource`]). The kill -9 test needs a real process: it spawns the binary
//! `twopc-redis-participant-under-test`, built by cargo from this crate's
//! `src/bin/` and located through `CARGO_BIN_EXE_*` (cargo builds a package's binaries before
//! its integration tests, so there is no separate build step and no guessing at target
//! paths). That binary's `main` is the same one line as the `twopc-redis-participant`
//! binary's: both call `twopc_redis_participant::cli::main()`.
//!
//! No test asserts how fast anything happens; waits are "until it happens, or fail after a
//! generous deadline".

use redis::AsyncCommands;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use twopc_participant::memory::MemoryResource;
use twopc_participant::{RunningServer, Server, ServerConfig};
use twopc_protocol::ops::{RedisGuard, RedisOp};
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, DecisionStatus, ErrorCode, Frame, Message, NoClass,
    Operations, ParticipantKind, TxId, Vote, MAX_FRAME_BYTES,
};
use twopc_redis_participant::{RedisResource, Retention};
use twopc_tests::wire_client::{Incoming, WireClient};
use twopc_tests::RedisServer;

const TOKEN: &str = "test-token-0123456789";

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn c1() -> CoordinatorId {
    CoordinatorId::new("c1").unwrap()
}

fn config() -> ServerConfig {
    twopc_tests::secrets::register(TOKEN);
    ServerConfig::new("cache".parse().unwrap(), TOKEN)
}

async fn start(redis: &RedisServer, tweak: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut cfg = config();
    tweak(&mut cfg);
    let resource = RedisResource::new(&redis.url(), None, Retention::default()).unwrap();
    Server::new(resource, cfg)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn redis_conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Connects and consumes the initial in-doubt report, returning its txids.
async fn connect(addr: SocketAddr) -> (WireClient, Vec<String>) {
    let mut c = WireClient::connect(addr, Some(TOKEN)).await.unwrap();
    let first = c.recv().await;
    assert_eq!(first.id, 0);
    let Message::InDoubtReport {
        participant,
        kind,
        prepared,
    } = first.msg
    else {
        panic!("first frame must be the in-doubt report, got {first:?}")
    };
    assert_eq!(participant.as_str(), "cache");
    assert_eq!(kind, ParticipantKind::Redis);
    let ids = prepared.iter().map(|p| p.txid.to_string()).collect();
    (c, ids)
}

fn set(key: &str, value: &str) -> RedisOp {
    RedisOp::Set {
        key: key.into(),
        value: value.into(),
        guard: RedisGuard::default(),
    }
}

fn incrby(key: &str, by: i64, min: Option<i64>) -> RedisOp {
    RedisOp::Incrby {
        key: key.into(),
        by,
        min,
        max: None,
        guard: RedisGuard::default(),
    }
}

fn prepare(txid: &str, ops: Vec<RedisOp>) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: tx(txid),
        coordinator: c1(),
        ops: Operations::Redis(ops),
        timeout_ms: None,
        priority: None,
        epoch: None,
    }
}

async fn vote(c: &mut WireClient, txid: &str, ops: Vec<RedisOp>) -> (Vote, Option<String>) {
    c.vote(prepare(txid, ops)).await
}

/// The class of the NO a prepare of `ops` under `txid` gets.
async fn no_class(c: &mut WireClient, txid: &str, ops: Vec<RedisOp>) -> Option<NoClass> {
    c.vote_with_class(prepare(txid, ops)).await.2
}

async fn ack(c: &mut WireClient, msg: Message) -> (Decision, AckResult) {
    c.ack(msg).await
}

fn commit(txid: &str) -> Message {
    Message::Commit {
        txid: tx(txid),
        coordinator: None,
        epoch: None,
    }
}

fn abort(txid: &str) -> Message {
    Message::Abort {
        txid: tx(txid),
        reason: None,
        coordinator: None,
        epoch: None,
    }
}

async fn get(r: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    r.get(key).await.unwrap()
}

async fn prepared_in_redis(r: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    r.zrange("twopc:prepared", 0, -1).await.unwrap()
}

/// Polls `f` until it returns true; fails the test after `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_commit_happy_path_is_visible_only_after_commit_and_idempotent() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let _: () = r.set("balance", "10").await.unwrap();
    let (mut c, report) = connect(server.local_addr()).await;
    assert!(report.is_empty());

    let ops = vec![
        set("greeting", "hello"),
        incrby("balance", -4, Some(0)),
        incrby("balance", 1, None),
        RedisOp::Hset {
            key: "user:1".into(),
            field: "name".into(),
            value: "ada".into(),
            guard: RedisGuard {
                expect: None,
                exists: Some(false),
            },
        },
    ];
    assert_eq!(vote(&mut c, "t1", ops.clone()).await, (Vote::Yes, None));
    // Prepared: staged, locked, recorded; nothing applied yet.
    assert_eq!(get(&mut r, "greeting").await, None);
    assert_eq!(get(&mut r, "balance").await.as_deref(), Some("10"));
    assert_eq!(
        get(&mut r, "twopc:lock:balance").await.as_deref(),
        Some("t1")
    );
    assert_eq!(prepared_in_redis(&mut r).await, vec!["t1"]);
    let ttl: i64 = r.ttl("twopc:lock:balance").await.unwrap();
    assert_eq!(
        ttl, -1,
        "a lock must never expire under a prepared transaction"
    );
    // A duplicated Prepare answers the same and changes nothing.
    assert_eq!(vote(&mut c, "t1", ops).await, (Vote::Yes, None));
    // ListPrepared reports it.
    match c
        .request(Message::ListPrepared {
            coordinator: None,
            epoch: None,
        })
        .await
    {
        Message::InDoubtReport { prepared, .. } => {
            assert_eq!(prepared.len(), 1);
            assert_eq!(prepared[0].txid.as_str(), "t1");
            assert_eq!(prepared[0].coordinator.as_str(), "c1");
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(
        ack(&mut c, commit("t1")).await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(get(&mut r, "greeting").await.as_deref(), Some("hello"));
    assert_eq!(get(&mut r, "balance").await.as_deref(), Some("7"));
    let name: Option<String> = r.hget("user:1", "name").await.unwrap();
    assert_eq!(name.as_deref(), Some("ada"));
    assert_eq!(get(&mut r, "twopc:lock:balance").await, None);
    assert!(prepared_in_redis(&mut r).await.is_empty());

    // Idempotent: a repeated Commit is AlreadyApplied and applies nothing twice.
    assert_eq!(
        ack(&mut c, commit("t1")).await,
        (Decision::Commit, AckResult::AlreadyApplied)
    );
    assert_eq!(get(&mut r, "balance").await.as_deref(), Some("7"));
    // Aborting a committed transaction is a conflict, not a rollback.
    assert_eq!(
        ack(&mut c, abort("t1")).await,
        (Decision::Abort, AckResult::Conflict)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_guards_bounds_and_type_errors_vote_no_with_reasons() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let _: () = r.set("k", "actual").await.unwrap();
    let _: () = r.set("balance", "10").await.unwrap();
    let _: () = r.set("text", "abc").await.unwrap();
    let _: () = r.hset("h", "f", "v").await.unwrap();
    let (mut c, _) = connect(server.local_addr()).await;

    let guarded = RedisOp::Set {
        key: "k".into(),
        value: "new".into(),
        guard: RedisGuard {
            expect: Some("expected".into()),
            exists: None,
        },
    };
    let (v, reason) = vote(&mut c, "g1", vec![guarded.clone()]).await;
    assert_eq!(v, Vote::No);
    let reason = reason.unwrap();
    assert!(
        reason.contains("guard failed") && reason.contains("\"actual\""),
        "{reason}"
    );
    // A failed guard fails the same way on every attempt.
    assert_eq!(
        no_class(&mut c, "g1-again", vec![guarded]).await,
        Some(NoClass::Final)
    );

    let must_not_exist = RedisOp::Del {
        key: "k".into(),
        guard: RedisGuard {
            expect: None,
            exists: Some(false),
        },
    };
    let (v, reason) = vote(&mut c, "g2", vec![set("other", "x"), must_not_exist]).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("exists=false"));

    let (v, reason) = vote(&mut c, "b1", vec![incrby("balance", -11, Some(0))]).await;
    assert_eq!(v, Vote::No);
    let reason = reason.unwrap();
    assert!(reason.contains("below the minimum 0"), "{reason}");

    let (v, reason) = vote(&mut c, "w1", vec![incrby("h", 1, None)]).await;
    assert_eq!(v, Vote::No);
    assert!(
        reason.as_deref().unwrap().contains("WRONGTYPE"),
        "{reason:?}"
    );
    let (v, reason) = vote(&mut c, "w2", vec![incrby("text", 1, None)]).await;
    assert_eq!(v, Vote::No);
    assert!(
        reason.as_deref().unwrap().contains("not an integer"),
        "{reason:?}"
    );
    let hset_on_string = RedisOp::Hset {
        key: "text".into(),
        field: "f".into(),
        value: "v".into(),
        guard: RedisGuard::default(),
    };
    let (v, reason) = vote(&mut c, "w3", vec![hset_on_string]).await;
    assert_eq!(v, Vote::No);
    assert!(
        reason.as_deref().unwrap().contains("needs a hash"),
        "{reason:?}"
    );
    let (v, _) = vote(&mut c, "o1", vec![incrby("balance", i64::MAX, None)]).await;
    assert_eq!(v, Vote::No, "overflow must vote no");
    let (v, reason) = vote(&mut c, "ns", vec![set("twopc:lock:k", "x")]).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("reserved"));

    // A NO leaves nothing behind: no locks, no prepared records, data unchanged; and the NO
    // is remembered, so a duplicated Prepare answers NO again.
    assert!(prepared_in_redis(&mut r).await.is_empty());
    assert_eq!(get(&mut r, "twopc:lock:k").await, None);
    assert_eq!(get(&mut r, "k").await.as_deref(), Some("actual"));
    assert_eq!(get(&mut r, "balance").await.as_deref(), Some("10"));
    let (v, reason) = vote(&mut c, "b1", vec![incrby("balance", -1, Some(0))]).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("already aborted"));

    // Read-only: nothing to do.
    assert_eq!(vote(&mut c, "ro", vec![]).await, (Vote::ReadOnly, None));
    server.shutdown().await.unwrap();
}

fn prepare_aged(txid: &str, ops: Vec<RedisOp>, age: u64) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: tx(txid),
        coordinator: c1(),
        ops: Operations::Redis(ops),
        timeout_ms: None,
        priority: Some(twopc_protocol::Priority(age)),
        epoch: None,
    }
}

/// A Prepare that meets a prepared holder's lock waits for it: it prepares as soon as the
/// holder commits, and its staged write then sees the holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_waits_for_the_holder_and_prepares_when_it_commits() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;

    // The holder is younger than the waiter: the waiter never gives way to it.
    let holder = prepare_aged("young", vec![incrby("n", 5, None)], 20);
    assert_eq!(c.vote(holder).await.0, Vote::Yes);
    let waiter = c
        .send(prepare_aged("old", vec![incrby("n", 1, None)], 10))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(get(&mut r, "twopc:lock:n").await.as_deref(), Some("young"));
    assert_eq!(ack(&mut c, commit("young")).await.1, AckResult::Applied);
    match c.recv_matching(|f| f.id == waiter).await.msg {
        Message::Vote { vote, reason, .. } => assert_eq!(vote, Vote::Yes, "{reason:?}"),
        other => panic!("expected a vote, got {other:?}"),
    }
    assert_eq!(get(&mut r, "twopc:lock:n").await.as_deref(), Some("old"));
    assert_eq!(ack(&mut c, commit("old")).await.1, AckResult::Applied);
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("6"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_transactions_the_younger_gives_way_and_abort_discards() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;

    assert_eq!(vote(&mut c, "t1", vec![set("k", "one")]).await.0, Vote::Yes);
    // t2 is younger (no priority sorts after t1 by txid): it waits for t1 only briefly, then
    // gives way, retryably.
    let started = std::time::Instant::now();
    let (v, reason, class) = c
        .vote_with_class(prepare("t2", vec![set("a", "x"), set("k", "two")]))
        .await;
    let waited = started.elapsed();
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    let reason = reason.unwrap();
    assert!(
        reason.contains("key \"k\"") && reason.contains("older transaction t1"),
        "{reason}"
    );
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(1),
        "gave way after {waited:?}"
    );
    // An older transaction waits for the younger holder up to the lock-wait bound (1 s).
    let started = std::time::Instant::now();
    let (v, reason, class) = c
        .vote_with_class(prepare_aged("t0", vec![set("k", "zero")], 1))
        .await;
    assert_eq!((v, class), (Vote::No, Some(NoClass::Conflict)));
    assert!(reason.unwrap().contains("lock-wait bound"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Neither NO locked anything.
    assert_eq!(get(&mut r, "twopc:lock:a").await, None);

    // Abort discards t1's staged writes and releases the lock.
    assert_eq!(
        ack(&mut c, abort("t1")).await,
        (Decision::Abort, AckResult::Applied)
    );
    assert_eq!(get(&mut r, "k").await, None);
    assert_eq!(get(&mut r, "twopc:lock:k").await, None);
    assert!(prepared_in_redis(&mut r).await.is_empty());
    assert_eq!(
        ack(&mut c, abort("t1")).await,
        (Decision::Abort, AckResult::AlreadyApplied)
    );
    assert_eq!(
        ack(&mut c, commit("t1")).await,
        (Decision::Commit, AckResult::Conflict)
    );
    // The key is free again.
    assert_eq!(
        vote(&mut c, "t3", vec![set("k", "three")]).await.0,
        Vote::Yes
    );
    assert_eq!(
        ack(&mut c, commit("t3")).await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(get(&mut r, "k").await.as_deref(), Some("three"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_for_unknown_txid_is_not_prepared_and_invents_nothing() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    assert_eq!(
        ack(&mut c, commit("never-prepared")).await,
        (Decision::Commit, AckResult::NotPrepared)
    );
    assert_eq!(
        ack(&mut c, abort("never-seen")).await,
        (Decision::Abort, AckResult::NotPrepared)
    );
    // The abort is remembered: a late duplicate Prepare votes NO instead of locking keys.
    let (v, _) = vote(&mut c, "never-seen", vec![set("k", "v")]).await;
    assert_eq!(v, Vote::No);
    assert_eq!(get(&mut r, "k").await, None);
    assert!(prepared_in_redis(&mut r).await.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_prepares_on_two_connections_both_vote_yes_once() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut a, _) = connect(server.local_addr()).await;
    let (mut b, _) = connect(server.local_addr()).await;
    let ops = vec![incrby("n", 1, None)];
    let ia = a.send(prepare("dup", ops.clone())).await;
    let ib = b.send(prepare("dup", ops)).await;
    let va = a.recv_matching(|f| f.id == ia).await.msg;
    let vb = b.recv_matching(|f| f.id == ib).await.msg;
    for v in [va, vb] {
        assert!(
            matches!(
                v,
                Message::Vote {
                    vote: Vote::Yes,
                    ..
                }
            ),
            "{v:?}"
        );
    }
    let ia = a.send(commit("dup")).await;
    let ib = b.send(commit("dup")).await;
    let mut results = vec![];
    for m in [
        a.recv_matching(|f| f.id == ia).await.msg,
        b.recv_matching(|f| f.id == ib).await.msg,
    ] {
        let Message::Ack { result, .. } = m else {
            panic!("{m:?}")
        };
        results.push(result);
    }
    results.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(results, vec![AckResult::AlreadyApplied, AckResult::Applied]);
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("1"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_phase_commit_applies_or_aborts_with_reason() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    let one = |txid: &str, ops| Message::CommitOnePhase {
        submitted_by: None,
        txid: tx(txid),
        coordinator: c1(),
        ops: Operations::Redis(ops),
        priority: None,
        epoch: None,
    };
    assert_eq!(
        ack(&mut c, one("p1", vec![incrby("n", 5, None)])).await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(
        ack(&mut c, one("p1", vec![incrby("n", 5, None)])).await,
        (Decision::Commit, AckResult::AlreadyApplied)
    );
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("5"));
    match c.request(one("p2", vec![incrby("n", -6, Some(0))])).await {
        Message::Ack {
            decision: Decision::Abort,
            reason: Some(reason),
            ..
        } => assert!(reason.contains("below the minimum"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("5"));
    server.shutdown().await.unwrap();
}

/// Six prepares queue for one key a prepared transaction holds. Each time the key comes
/// free only the first in line runs its script again, the rest waiting for it as the new
/// holder: six re-runs in all. (Waking every waiter at each hand-over ran 6 + 5 + ... + 1 =
/// 21 scripts, the losers each finding the winner's lock.) Counted in redis-server's own
/// command statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_goes_to_the_first_waiter_only() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    // Every waiter is older than the holder, and each is committed as soon as it votes, so
    // none waits anywhere near the give-way time for the older one ahead of it.
    let holder = prepare_aged("holder", vec![incrby("n", 100, None)], 50);
    assert_eq!(c.vote(holder).await.0, Vote::Yes);
    let mut waiters = Vec::new();
    for k in 1..=6u64 {
        let name = format!("w{k}");
        let id = c
            .send(prepare_aged(&name, vec![incrby("n", 1, None)], k))
            .await;
        waiters.push((name, id));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(ack(&mut c, commit("holder")).await.1, AckResult::Applied);
    let mut order = Vec::new();
    for _ in 0..waiters.len() {
        let f = c
            .recv_matching(|f| matches!(f.msg, Message::Vote { .. }))
            .await;
        let Message::Vote {
            txid, vote, reason, ..
        } = f.msg
        else {
            unreachable!()
        };
        assert_eq!(vote, Vote::Yes, "{txid}: {reason:?}");
        assert_eq!(
            ack(&mut c, commit(txid.as_str())).await.1,
            AckResult::Applied
        );
        order.push(txid.as_str().to_string());
    }
    let first_come: Vec<String> = waiters.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(order, first_come, "first come, first served");
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("106"));
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut r)
        .await
        .unwrap();
    let calls = |cmd: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let scripts = calls("evalsha") + calls("eval");
    // 7 commits and 6 prepares, plus at most a termination scan or two.
    assert!(
        (13..=15).contains(&scripts),
        "{scripts} scripts for 7 commits and 6 hand-overs:\n{stats}"
    );
    server.shutdown().await.unwrap();
}

/// A one-phase commit that meets a key a prepared transaction holds waits for it, as a
/// Prepare does: it commits as soon as the holder commits, on top of the holder's write.
/// When the lock-wait bound runs out first, its last try aborts it and Redis remembers the
/// abort, so a repeated CommitOnePhase after the holder is gone still answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_phase_commit_waits_for_a_prepared_holder() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |cfg| cfg.lock_wait = Duration::from_millis(600)).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    let one = |txid: &str, ops| Message::CommitOnePhase {
        submitted_by: None,
        txid: tx(txid),
        coordinator: c1(),
        ops: Operations::Redis(ops),
        priority: Some(twopc_protocol::Priority(30)),
        epoch: None,
    };

    let holder = prepare_aged("holder", vec![incrby("n", 5, None)], 20);
    assert_eq!(c.vote(holder).await.0, Vote::Yes);
    let waiter = c.send(one("single", vec![incrby("n", 1, None)])).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Still waiting, nothing written or recorded for it.
    assert_eq!(get(&mut r, "n").await, None);
    assert_eq!(ack(&mut c, commit("holder")).await.1, AckResult::Applied);
    match c.recv_matching(|f| f.id == waiter).await.msg {
        Message::Ack {
            decision, result, ..
        } => assert_eq!((decision, result), (Decision::Commit, AckResult::Applied)),
        other => panic!("expected an ack, got {other:?}"),
    }
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("6"));

    // The bound runs out while the holder stays prepared.
    let holder = prepare_aged("holder-2", vec![incrby("n", 5, None)], 40);
    assert_eq!(c.vote(holder).await.0, Vote::Yes);
    let started = std::time::Instant::now();
    match c.request(one("single-2", vec![incrby("n", 1, None)])).await {
        Message::Ack {
            decision: Decision::Abort,
            reason: Some(reason),
            ..
        } => assert!(
            reason.contains("locked by prepared transaction") && reason.contains("holder-2"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ack(&mut c, commit("holder-2")).await.1, AckResult::Applied);
    match c.request(one("single-2", vec![incrby("n", 1, None)])).await {
        Message::Ack {
            decision: Decision::Abort,
            result: AckResult::AlreadyApplied,
            ..
        } => {}
        other => panic!("a repeated one-phase commit must answer its abort: {other:?}"),
    }
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("11"));
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Crashes.

/// The participant binary as a child process.
struct ParticipantProcess {
    child: Child,
    addr: SocketAddr,
}

const EXE: &str = env!("CARGO_BIN_EXE_twopc-redis-participant-under-test");

/// The participant binary with no `TWOPC_*` variables inherited from the test's environment.
fn participant_command() -> Command {
    let mut cmd = Command::new(EXE);
    for (k, _) in std::env::vars() {
        if k.starts_with("TWOPC_REDIS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

impl ParticipantProcess {
    fn spawn(redis: &RedisServer) -> ParticipantProcess {
        let mut cmd = participant_command();
        cmd.args(["--listen", "127.0.0.1:0", "--name", "cache"])
            .args(["--redis-url", &redis.url()])
            .env("TWOPC_REDIS_TOKEN", TOKEN)
            .args(["--log", "warn"]);
        Self::spawn_command(cmd)
    }

    fn spawn_command(mut cmd: Command) -> ParticipantProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the participant binary");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the participant's first line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        ParticipantProcess { child, addr }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for ParticipantProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token never travels on the command line, where every local user can read it (`ps`):
/// `--token` is refused with a message naming the alternatives (and not echoing the secret),
/// and a participant started the supported way has no token in its `/proc/<pid>/cmdline`.
#[test]
fn the_token_is_refused_on_the_command_line() {
    let mut child = participant_command()
        .args(["--listen", "127.0.0.1:0", "--token", "s3cret-on-argv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the participant binary");
    // A participant that accepted the flag would start serving and never exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the participant accepted --token and kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--token is not accepted"), "{stderr}");
    assert!(stderr.contains("TWOPC_REDIS_TOKEN"), "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
    assert!(!stderr.contains("s3cret-on-argv"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let redis = RedisServer::start_new().unwrap();
    let p = ParticipantProcess::spawn(&redis);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--redis-url"), "{cmdline}");
    assert!(
        !cmdline.contains(TOKEN),
        "token on the command line: {cmdline}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_participant_process_between_prepare_and_commit() {
    let redis = RedisServer::start_new().unwrap();
    let mut r = redis_conn(&redis).await;
    let mut p = ParticipantProcess::spawn(&redis);
    let (mut c, report) = connect(p.addr).await;
    assert!(report.is_empty());
    assert_eq!(
        vote(&mut c, "crash-1", vec![set("k", "v"), incrby("n", 2, None)]).await,
        (Vote::Yes, None)
    );

    p.kill9();
    drop(c);
    assert_eq!(get(&mut r, "k").await, None);

    let p2 = ParticipantProcess::spawn(&redis);
    let (mut c, report) = connect(p2.addr).await;
    assert_eq!(
        report,
        vec!["crash-1"],
        "the restarted participant reports it"
    );
    // Still locked against other transactions.
    let (v, reason) = vote(&mut c, "other", vec![set("k", "w")]).await;
    assert_eq!(v, Vote::No, "{reason:?}");
    assert_eq!(
        ack(&mut c, commit("crash-1")).await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(get(&mut r, "k").await.as_deref(), Some("v"));
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_redis_between_prepare_and_commit_keeps_the_prepared_state() {
    let mut redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let (mut c, _) = connect(server.local_addr()).await;
    assert_eq!(
        vote(&mut c, "r1", vec![set("k", "durable")]).await,
        (Vote::Yes, None)
    );

    redis.kill9();
    redis.start().unwrap();

    // The participant reconnects to Redis by itself; until it has, requests may get an
    // `internal` error, which the coordinator would retry, and so do we.
    let mut result = None;
    for _ in 0..100 {
        match c.request(commit("r1")).await {
            Message::Ack { result: r, .. } => {
                result = Some(r);
                break;
            }
            Message::Error {
                code: ErrorCode::Internal,
                ..
            } => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(result, Some(AckResult::Applied));
    let mut r = redis_conn(&redis).await;
    assert_eq!(get(&mut r, "k").await.as_deref(), Some("durable"));
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The connection: authentication, bad frames, limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_refused_with_401() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let wrong = WireClient::refused(server.local_addr(), Some("not-the-token")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("invalid token"), "{}", wrong.body);
    let missing = WireClient::refused(server.local_addr(), None).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.body.contains("missing Authorization"),
        "{}",
        missing.body
    );
    // The right token still works.
    let (c, _) = connect(server.local_addr()).await;
    c.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_replies_and_the_connection_survives() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let (mut c, _) = connect(server.local_addr()).await;

    c.send_raw("{this is not json").await;
    let f = c.recv().await;
    assert!(
        matches!(
            f.msg,
            Message::Error {
                code: ErrorCode::Malformed,
                ..
            }
        ),
        "{f:?}"
    );

    c.send_raw(r#"{"v":1,"id":77,"type":"launch_missiles"}"#)
        .await;
    let f = c.recv().await;
    assert_eq!(f.id, 77);
    assert!(
        matches!(&f.msg, Message::Error { code: ErrorCode::UnknownType, message } if message.contains("launch_missiles")),
        "{f:?}"
    );

    c.send_raw(r#"{"v":1,"id":78,"type":"commit"}"#).await;
    let f = c.recv().await;
    assert_eq!(f.id, 78);
    assert!(
        matches!(
            f.msg,
            Message::Error {
                code: ErrorCode::InvalidFields,
                ..
            }
        ),
        "{f:?}"
    );

    c.send_raw(r#"{"v":2,"id":79,"type":"ping","nonce":1}"#)
        .await;
    let f = c.recv().await;
    assert!(
        matches!(
            f.msg,
            Message::Error {
                code: ErrorCode::UnsupportedVersion,
                ..
            }
        ),
        "{f:?}"
    );

    // A participant-to-coordinator message sent to the participant.
    let id = c
        .send(Message::Vote {
            txid: tx("x"),
            vote: Vote::Yes,
            reason: None,
            class: None,
        })
        .await;
    let f = c.recv().await;
    assert_eq!(f.id, id);
    assert!(
        matches!(
            f.msg,
            Message::Error {
                code: ErrorCode::Unexpected,
                ..
            }
        ),
        "{f:?}"
    );

    // Still alive: protocol-level ping.
    assert_eq!(
        c.request(Message::Ping { nonce: 42 }).await,
        Message::Pong { nonce: 42 }
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_gets_a_clear_error_and_the_server_survives() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let (mut c, _) = connect(server.local_addr()).await;
    let big = format!(
        r#"{{"v":1,"id":5,"type":"ping","nonce":1,"pad":"{}"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    // The send may fail if the server has already closed; what matters is what comes back.
    let _ = c
        .send_ws(tokio_tungstenite::tungstenite::Message::text(big))
        .await;
    let mut saw_clear_error = false;
    while let Some(incoming) = c.next_incoming(Duration::from_secs(20)).await {
        eprintln!("after the oversized frame: {incoming:?}");
        match incoming {
            Incoming::Frame(Frame {
                msg: Message::Error { code, message },
                ..
            }) => {
                assert_eq!(code, ErrorCode::TooLarge);
                assert!(message.contains("limited to"), "{message}");
                saw_clear_error = true;
            }
            Incoming::Frame(other) => panic!("unexpected {other:?}"),
            Incoming::Closed(close) => {
                if let Some(cf) = close {
                    assert_eq!(u16::from(cf.code), 1009, "{cf:?}");
                    saw_clear_error = true;
                }
                break;
            }
        }
    }
    assert!(
        saw_clear_error,
        "neither a too_large error nor a 1009 close"
    );
    // The server is fine: a new connection works.
    let (mut c2, _) = connect(server.local_addr()).await;
    assert_eq!(
        c2.request(Message::Ping { nonce: 1 }).await,
        Message::Pong { nonce: 1 }
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_are_answered_busy() {
    // The limit is a property of the shared server; a gated in-memory resource holds the
    // first request in flight deterministically.
    let (resource, gate) = MemoryResource::new(ParticipantKind::Redis).gate();
    let mut cfg = config();
    cfg.max_in_flight = 1;
    let server = Server::new(resource, cfg)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut c, _) = connect(server.local_addr()).await;
    let first = c.send(prepare("slow", vec![set("k", "v")])).await;
    // Wait until the first request is really in flight (it holds the permit) by sending
    // the second only after a round trip the server handles inline.
    assert_eq!(
        c.request(Message::Ping { nonce: 9 }).await,
        Message::Pong { nonce: 9 }
    );
    let second = c.send(prepare("fast", vec![set("j", "v")])).await;
    let f = c.recv_matching(|f| f.id == second).await;
    assert!(
        matches!(
            f.msg,
            Message::Error {
                code: ErrorCode::Busy,
                ..
            }
        ),
        "{f:?}"
    );
    gate.add_permits(1);
    let f = c.recv_matching(|f| f.id == first).await;
    assert!(
        matches!(
            f.msg,
            Message::Vote {
                vote: Vote::Yes,
                ..
            }
        ),
        "{f:?}"
    );
    // With the permit back, the next request goes through.
    gate.add_permits(1);
    assert!(matches!(
        c.request(prepare("fast", vec![set("j", "v")])).await,
        Message::Vote {
            vote: Vote::Yes,
            ..
        }
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_dropped_after_the_idle_timeout() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let (mut c, _) = connect(server.local_addr()).await;
    // Not reading means not answering the server's pings: the server must give up on us.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut closed = false;
    while let Some(incoming) = c.next_incoming(Duration::from_secs(10)).await {
        if let Incoming::Closed(cf) = incoming {
            if let Some(cf) = cf {
                assert!(cf.reason.as_str().contains("heartbeat"), "{cf:?}");
            }
            closed = true;
            break;
        }
    }
    assert!(closed, "the idle connection was not closed");
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The termination protocol.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_asks_for_the_decision_and_applies_the_answer() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |c| {
        c.decision_timeout = Duration::from_millis(300);
        c.decision_retry_initial = Duration::from_millis(100);
        c.scan_interval = Duration::from_millis(50);
    })
    .await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    assert_eq!(
        vote(&mut c, "lost-commit", vec![set("k", "v")]).await.0,
        Vote::Yes
    );
    assert_eq!(
        vote(&mut c, "lost-abort", vec![set("j", "v")]).await.0,
        Vote::Yes
    );

    // First answer Pending: it must stay prepared and ask again.
    let req = c
        .recv_matching(|f| matches!(&f.msg, Message::DecisionRequest { txid, .. } if txid.as_str() == "lost-commit"))
        .await;
    c.send_frame(Frame::new(
        req.id,
        Message::DecisionAnswer {
            txid: tx("lost-commit"),
            status: DecisionStatus::Pending,
        },
    ))
    .await;
    let again = c
        .recv_matching(|f| matches!(&f.msg, Message::DecisionRequest { txid, .. } if txid.as_str() == "lost-commit"))
        .await;
    assert_ne!(again.id, req.id);
    assert_eq!(get(&mut r, "k").await, None);
    c.send_frame(Frame::new(
        again.id,
        Message::DecisionAnswer {
            txid: tx("lost-commit"),
            status: DecisionStatus::Commit,
        },
    ))
    .await;

    let req = c
        .recv_matching(|f| matches!(&f.msg, Message::DecisionRequest { txid, .. } if txid.as_str() == "lost-abort"))
        .await;
    c.send_frame(Frame::new(
        req.id,
        Message::DecisionAnswer {
            txid: tx("lost-abort"),
            status: DecisionStatus::Abort,
        },
    ))
    .await;

    eventually(20, "both decisions applied", || {
        let mut r = r.clone();
        async move { prepared_in_redis(&mut r).await.is_empty() }
    })
    .await;
    assert_eq!(get(&mut r, "k").await.as_deref(), Some("v"));
    assert_eq!(get(&mut r, "j").await, None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_coordinator_the_transaction_stays_prepared() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |c| {
        c.decision_timeout = Duration::from_millis(100);
        c.decision_retry_initial = Duration::from_millis(100);
        c.scan_interval = Duration::from_millis(20);
    })
    .await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    assert_eq!(
        vote(&mut c, "orphan", vec![set("k", "v")]).await.0,
        Vote::Yes
    );
    c.close().await;

    // Many decision timeouts pass with nobody to ask: nothing is decided.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(prepared_in_redis(&mut r).await, vec!["orphan"]);
    assert_eq!(get(&mut r, "k").await, None);
    assert_eq!(get(&mut r, "twopc:lock:k").await.as_deref(), Some("orphan"));

    // A coordinator connects: the report lists it and the participant asks about it.
    let (mut c, report) = connect(server.local_addr()).await;
    assert_eq!(report, vec!["orphan"]);
    let req = c
        .recv_matching(|f| matches!(f.msg, Message::DecisionRequest { .. }))
        .await;
    c.send_frame(Frame::new(
        req.id,
        Message::DecisionAnswer {
            txid: tx("orphan"),
            status: DecisionStatus::Abort,
        },
    ))
    .await;
    eventually(20, "the abort is applied", || {
        let mut r = r.clone();
        async move { prepared_in_redis(&mut r).await.is_empty() }
    })
    .await;
    assert_eq!(get(&mut r, "k").await, None);
    assert_eq!(get(&mut r, "twopc:lock:k").await, None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incrby_is_exact_at_64_bit_edges_and_hash_ops_apply_in_order() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    let cases: &[(&str, i64, &str)] = &[
        ("-5", 3, "-2"),
        ("-5", 10, "5"),
        ("5", -5, "0"),
        ("0", -1, "-1"),
        ("999", 1, "1000"),
        ("1000", -1, "999"),
        ("9223372036854775806", 1, "9223372036854775807"),
        ("-9223372036854775807", -1, "-9223372036854775808"),
        ("9007199254740993", 2, "9007199254740995"), // beyond a double's exact range
    ];
    for (i, (start_value, by, expected)) in cases.iter().enumerate() {
        let key = format!("n{i}");
        let _: () = r.set(&key, *start_value).await.unwrap();
        let txid = format!("inc{i}");
        assert_eq!(
            vote(&mut c, &txid, vec![incrby(&key, *by, None)]).await,
            (Vote::Yes, None),
            "{start_value} + {by}"
        );
        assert_eq!(
            ack(&mut c, commit(&txid)).await,
            (Decision::Commit, AckResult::Applied)
        );
        assert_eq!(get(&mut r, &key).await.as_deref(), Some(*expected));
    }
    // Overflow in either direction votes NO.
    let _: () = r.set("big", "9223372036854775807").await.unwrap();
    assert_eq!(
        vote(&mut c, "of1", vec![incrby("big", 1, None)]).await.0,
        Vote::No
    );
    let _: () = r.set("small", "-9223372036854775808").await.unwrap();
    assert_eq!(
        vote(&mut c, "of2", vec![incrby("small", -1, None)]).await.0,
        Vote::No
    );
    // Max bound.
    let bounded = RedisOp::Incrby {
        key: "cap".into(),
        by: 11,
        min: None,
        max: Some(10),
        guard: RedisGuard::default(),
    };
    let (v, reason) = vote(&mut c, "cap1", vec![bounded]).await;
    assert_eq!(v, Vote::No);
    assert!(reason.unwrap().contains("above the maximum 10"));

    // Hash operations with field guards, later operations seeing earlier ones.
    let _: () = r.hset("h", "a", "1").await.unwrap();
    let ops = vec![
        RedisOp::Hset {
            key: "h".into(),
            field: "a".into(),
            value: "2".into(),
            guard: RedisGuard {
                expect: Some("1".into()),
                exists: None,
            },
        },
        RedisOp::Hset {
            key: "h".into(),
            field: "b".into(),
            value: "x".into(),
            guard: RedisGuard {
                expect: None,
                exists: Some(false),
            },
        },
        RedisOp::Hdel {
            key: "h".into(),
            field: "b".into(),
            guard: RedisGuard {
                expect: Some("x".into()),
                exists: None,
            },
        },
        set("s", "1"),
        incrby("s", 41, None),
    ];
    assert_eq!(vote(&mut c, "hash1", ops).await, (Vote::Yes, None));
    assert_eq!(
        ack(&mut c, commit("hash1")).await,
        (Decision::Commit, AckResult::Applied)
    );
    let h: std::collections::HashMap<String, String> = r.hgetall("h").await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h["a"], "2");
    assert_eq!(get(&mut r, "s").await.as_deref(), Some("42"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_flags_over_env_over_the_config_file() {
    let help = participant_command().arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in ["--redis-url", "TWOPC_REDIS_URL", "--token-file", "--config"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let no_token = participant_command().output().unwrap();
    assert_eq!(no_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no token configured"));

    let redis = RedisServer::start_new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let file = dir.path().join("participant.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\nname = \"from-file\"\nredis_url = \"{}\"\n\
             token_file = \"token\"\nlog = \"warn\"\n",
            redis.url()
        ),
    )
    .unwrap();

    // File only.
    let mut cmd = participant_command();
    cmd.arg("--config").arg(&file);
    let p = ParticipantProcess::spawn_command(cmd);
    assert_eq!(report_name(p.addr).await, "from-file");
    drop(p);
    // The environment beats the file.
    let mut cmd = participant_command();
    cmd.env("TWOPC_REDIS_CONFIG", &file)
        .env("TWOPC_REDIS_NAME", "from-env");
    let p = ParticipantProcess::spawn_command(cmd);
    assert_eq!(report_name(p.addr).await, "from-env");
    drop(p);
    // A flag beats the environment.
    let mut cmd = participant_command();
    cmd.env("TWOPC_REDIS_CONFIG", &file)
        .env("TWOPC_REDIS_NAME", "from-env")
        .args(["--name", "from-flag"]);
    let p = ParticipantProcess::spawn_command(cmd);
    assert_eq!(report_name(p.addr).await, "from-flag");
}

/// The participant name in the in-doubt report of a fresh connection.
async fn report_name(addr: SocketAddr) -> String {
    let mut c = WireClient::connect(addr, Some(TOKEN)).await.unwrap();
    match c.recv().await.msg {
        Message::InDoubtReport { participant, .. } => participant.to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_bounded_and_txids_of_other_coordinators_are_not_confused() {
    let redis = RedisServer::start_new().unwrap();
    let retention = Retention {
        keep_count: 2,
        keep_for: Duration::from_secs(3600),
    };
    let resource = RedisResource::new(&redis.url(), None, retention).unwrap();
    let server = Server::new(resource, config())
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    for t in ["old", "mid", "new"] {
        assert_eq!(
            vote(&mut c, t, vec![incrby("n", 1, None)]).await.0,
            Vote::Yes
        );
        assert_eq!(
            ack(&mut c, commit(t)).await,
            (Decision::Commit, AckResult::Applied)
        );
    }
    let kept: Vec<String> = r.zrange("twopc:done", 0, -1).await.unwrap();
    assert_eq!(kept, vec!["mid", "new"]);
    assert_eq!(
        ack(&mut c, commit("new")).await,
        (Decision::Commit, AckResult::AlreadyApplied)
    );
    // Past the retention a repeated Commit is no longer recognised; it is reported as not
    // prepared (and, above all, applies nothing).
    assert_eq!(
        ack(&mut c, commit("old")).await,
        (Decision::Commit, AckResult::NotPrepared)
    );
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("3"));

    // Another coordinator reusing a finished txid gets a NO, not a stale YES.
    let other = Message::Prepare {
        submitted_by: None,
        txid: tx("new"),
        coordinator: CoordinatorId::new("c2").unwrap(),
        ops: Operations::Redis(vec![incrby("n", 1, None)]),
        timeout_ms: None,
        priority: None,
        epoch: None,
    };
    match c.request(other).await {
        Message::Vote {
            vote: Vote::No,
            reason: Some(reason),
            ..
        } => assert!(
            reason.contains("already used by coordinator \"c1\""),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // The same coordinator repeating its Prepare after the commit hears YES again.
    assert_eq!(
        vote(&mut c, "new", vec![incrby("n", 1, None)]).await,
        (Vote::Yes, None)
    );
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("3"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_or_abort_naming_another_coordinator_leaves_this_ones_transaction_alone() {
    let redis = RedisServer::start_new().unwrap();
    let server = start(&redis, |_| {}).await;
    let mut r = redis_conn(&redis).await;
    let (mut c, _) = connect(server.local_addr()).await;
    let c2 = CoordinatorId::new("c2").unwrap();
    // c1's "x" is prepared; c2 (which ran an "x" of its own that never prepared here) aborts
    // and commits "x": neither touches c1's.
    assert_eq!(
        vote(&mut c, "x", vec![incrby("n", 5, None)]).await.0,
        Vote::Yes
    );
    for msg in [
        Message::Abort {
            txid: tx("x"),
            reason: None,
            coordinator: Some(c2.clone()),
            epoch: None,
        },
        Message::Commit {
            txid: tx("x"),
            coordinator: Some(c2.clone()),
            epoch: None,
        },
    ] {
        let (_, result) = ack(&mut c, msg).await;
        assert_eq!(result, AckResult::NotPrepared);
    }
    assert_eq!(prepared_in_redis(&mut r).await, vec!["x".to_string()]);
    assert_eq!(get(&mut r, "n").await, None);
    // c1's own Commit applies it; afterwards c2's Abort still finds nothing of its own, and
    // does not turn c1's commit into a conflict or a tombstone.
    assert_eq!(
        ack(
            &mut c,
            Message::Commit {
                txid: tx("x"),
                coordinator: Some(c1()),
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::Applied)
    );
    assert_eq!(
        ack(
            &mut c,
            Message::Abort {
                txid: tx("x"),
                reason: None,
                coordinator: Some(c2),
                epoch: None,
            }
        )
        .await,
        (Decision::Abort, AckResult::NotPrepared)
    );
    assert_eq!(
        ack(
            &mut c,
            Message::Commit {
                txid: tx("x"),
                coordinator: Some(c1()),
                epoch: None,
            }
        )
        .await,
        (Decision::Commit, AckResult::AlreadyApplied)
    );
    assert_eq!(get(&mut r, "n").await.as_deref(), Some("5"));
    server.shutdown().await.unwrap();
}
