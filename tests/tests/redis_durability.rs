//! The Redis participant refuses a redis-server that would lose acknowledged writes.
//!
//! Its YES votes rest on `appendonly yes` + `appendfsync always`: the prepare script's reply
//! leaves Redis only after its writes are fsynced to the AOF. The participant reads both
//! settings with CONFIG GET at start and (at most once a second) before every request that
//! writes, and refuses to serve without them unless started with `--allow-unsafe-durability`.
//! Against a real redis-server from the harness, reconfigured with CONFIG SET the way an
//! operator could.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use twopc_participant::{PrepareOutcome, Resource};
use twopc_protocol::{CoordinatorId, Operations, RedisOp, TxId};
use twopc_redis_participant::{RedisResource, Retention};
use twopc_tests::RedisServer;

const EXE: &str = env!("CARGO_BIN_EXE_twopc-redis-participant-under-test");

fn config_set(redis: &RedisServer, name: &str, value: &str) {
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut c)
        .unwrap();
}

/// Runs the participant binary against `redis` until it prints its listening line (then it
/// is killed and `Ok(())` returned) or exits (`Err(stderr)`).
fn run_participant(redis: &RedisServer, extra: &[&str]) -> Result<(), (i32, String)> {
    let mut cmd = Command::new(EXE);
    for (k, _) in std::env::vars() {
        if k.starts_with("TWOPC_REDIS_") {
            cmd.env_remove(k);
        }
    }
    // The token comes from the environment: a token flag is refused (ps would show it).
    let mut child = cmd
        .env("TWOPC_REDIS_TOKEN", "t0ken")
        .args(["--listen", "127.0.0.1:0", "--redis-url"])
        .arg(redis.url())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The listening line is the only thing on stdout; reading it blocks until the process
    // printed it or exited (EOF).
    let mut out = String::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.contains('\n') && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    if out.contains("listening on") {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Err((status.code().unwrap_or(-1), err))
}

#[test]
fn refuses_to_start_without_appendfsync_always() {
    let redis = RedisServer::start_new().unwrap();
    // The harness's server is durable: the participant starts.
    run_participant(&redis, &[]).expect("starts against appendfsync always");

    config_set(&redis, "appendfsync", "everysec");
    let (code, err) = run_participant(&redis, &[]).expect_err("must refuse appendfsync everysec");
    assert_ne!(code, 0);
    assert!(
        err.contains("appendfsync \"everysec\"") && err.contains("--allow-unsafe-durability"),
        "unclear error: {err}"
    );
    // Explicitly told: it runs.
    run_participant(&redis, &["--allow-unsafe-durability"]).expect("starts when allowed");

    config_set(&redis, "appendfsync", "always");
    config_set(&redis, "appendonly", "no");
    let (code, err) = run_participant(&redis, &[]).expect_err("must refuse appendonly no");
    assert_ne!(code, 0);
    assert!(err.contains("appendonly \"no\""), "unclear error: {err}");
}

fn prepare_ops() -> Operations {
    Operations::Redis(vec![RedisOp::Set {
        key: "k".into(),
        value: "v".into(),
        guard: Default::default(),
    }])
}

/// A server reconfigured while the participant runs: the next Prepare (after the one-second
/// re-check) fails instead of voting YES, and votes again once the server is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_voting_yes_when_redis_is_reconfigured() {
    let redis = RedisServer::start_new().unwrap();
    let r = RedisResource::new(&redis.url(), None, Retention::default()).unwrap();
    let c = CoordinatorId::new("c1").unwrap();
    let ops = prepare_ops();
    let t1 = TxId::new("d1").unwrap();
    assert_eq!(
        r.prepare(&c, &t1, &ops, Default::default()).await.unwrap(),
        PrepareOutcome::Yes
    );
    assert_eq!(
        r.abort(None, &t1).await.unwrap(),
        twopc_protocol::AckResult::Applied
    );

    config_set(&redis, "appendfsync", "no");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t2 = TxId::new("d2").unwrap();
    let e = r
        .prepare(&c, &t2, &ops, Default::default())
        .await
        .expect_err("no YES vote on a server that does not fsync");
    assert!(e.to_string().contains("appendfsync \"no\""), "{e}");
    // Nothing was prepared: the refusal came before the prepare script.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let prepared: Vec<String> = redis::cmd("ZRANGE")
        .arg("twopc:prepared")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert!(prepared.is_empty(), "{prepared:?}");

    config_set(&redis, "appendfsync", "always");
    assert_eq!(
        r.prepare(&c, &t2, &ops, Default::default()).await.unwrap(),
        PrepareOutcome::Yes
    );
    assert_eq!(
        r.abort(None, &t2).await.unwrap(),
        twopc_protocol::AckResult::Applied
    );

    // Allowed explicitly: no check at all.
    config_set(&redis, "appendfsync", "everysec");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let lax = RedisResource::new(&redis.url(), None, Retention::default())
        .unwrap()
        .allow_unsafe_durability(true);
    let t3 = TxId::new("d3").unwrap();
    assert_eq!(
        lax.prepare(&c, &t3, &ops, Default::default())
            .await
            .unwrap(),
        PrepareOutcome::Yes
    );
}
