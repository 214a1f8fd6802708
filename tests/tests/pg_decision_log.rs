//! The PostgreSQL decision log ([`PgLog`]) against a real PostgreSQL 15 cluster: what it
//! recovers after a clean close and after a crash, group commit, the coordinator id's lease
//! (a second process waits for it), fencing (a holder that lost its lease writes nothing, ever),
//! retention of finished rows, and clear errors for a bad or unreachable database.

use std::sync::Arc;
use std::time::{Duration, Instant};
use twopc_coordinator::log::{DecisionLog, LogError, LogRecord, PgLog, PgLogConfig};
use twopc_protocol::{Decision, ParticipantName, TxId};
use twopc_tests::{PgCluster, PgOptions};

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn commit(id: &str) -> LogRecord {
    LogRecord::Commit {
        txid: tx(id),
        participants: vec![
            ParticipantName::new("bank").unwrap(),
            ParticipantName::new("ledger").unwrap(),
        ],
        body_hash: 0xdead_beef_0000_0001,
        at_ms: 1_700_000_000_000,
        client: None,
    }
}

fn abort(id: &str) -> LogRecord {
    LogRecord::Abort {
        txid: tx(id),
        body_hash: 7,
        reason: Some("participant ledger voted no".into()),
        at_ms: 1_700_000_000_001,
        client: None,
    }
}

fn end(id: &str) -> LogRecord {
    LogRecord::End {
        txid: tx(id),
        heuristics: vec![],
    }
}

fn cluster() -> PgCluster {
    PgCluster::start(PgOptions {
        databases: vec!["twopc_log".into()],
        ..PgOptions::default()
    })
    .expect("start postgres")
}

fn config(pg: &PgCluster, id: &str) -> PgLogConfig {
    let mut c = PgLogConfig::new(pg.url("twopc_log"), id);
    c.lease_ttl = Duration::from_millis(900);
    c.lease_renew = Duration::from_millis(300);
    c
}

fn rows(pg: &PgCluster, sql: &str) -> String {
    pg.psql_ok("twopc_log", sql).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_survive_close_and_crash_and_the_next_holder_waits_for_the_lease() {
    let pg = cluster();
    let log = PgLog::open(config(&pg, "c1")).await.unwrap();
    assert_eq!(log.lease().epoch, 1);
    log.append_durable(commit("t-committed")).await.unwrap();
    log.append_durable(commit("t-ended")).await.unwrap();
    log.append_lazy(end("t-ended")).unwrap();
    log.append_lazy(abort("t-aborted")).unwrap();
    log.flush().await.unwrap();
    // The first decision wins, as in the file log.
    log.append_durable(abort("t-committed")).await.unwrap();
    log.close().await;
    assert!(matches!(
        log.append_durable(commit("late")).await,
        Err(LogError::Closed)
    ));

    // A clean close released the lease: the next holder starts at once, at the next epoch.
    let started = Instant::now();
    let log = PgLog::open(config(&pg, "c1")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.lease().epoch, 2);
    let st = log.recover().unwrap();
    let pending: Vec<&str> = st.pending.iter().map(|p| p.txid.as_str()).collect();
    assert_eq!(pending, ["t-committed"]);
    assert_eq!(st.pending[0].participants.len(), 2);
    assert_eq!(st.pending[0].body_hash, 0xdead_beef_0000_0001);
    assert_eq!(st.outcomes[&tx("t-committed")].decision, Decision::Commit);
    assert!(st.outcomes[&tx("t-ended")].ended);
    assert_eq!(st.outcomes[&tx("t-aborted")].decision, Decision::Abort);
    assert_eq!(
        st.outcomes[&tx("t-aborted")].reason.as_deref(),
        Some("participant ledger voted no")
    );

    // A crash (no close): lazy records not yet written are lost, forced ones are not, and the
    // next process must wait for the crashed one's lease to expire.
    log.append_durable(commit("t-forced")).await.unwrap();
    log.append_lazy(end("t-forced")).unwrap();
    drop(log);
    let started = Instant::now();
    let log = PgLog::open(config(&pg, "c1")).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "did not wait for the lease: {waited:?}"
    );
    assert_eq!(log.lease().epoch, 3);
    let st = log.recover().unwrap();
    assert!(st.outcomes.contains_key(&tx("t-forced")));
    // Other ids are other leases and other rows.
    let other = PgLog::open(config(&pg, "c2")).await.unwrap();
    assert_eq!(other.lease().epoch, 1);
    assert!(other.recover().unwrap().outcomes.is_empty());
    other.close().await;
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_database_commits() {
    let pg = cluster();
    let log = Arc::new(PgLog::open(config(&pg, "c1")).await.unwrap());
    let before = log.stats().fsyncs;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append_durable(commit(&format!("t{i}"))).await.unwrap();
            log.append_lazy(end(&format!("t{i}"))).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    log.flush().await.unwrap();
    let commits = log.stats().fsyncs - before;
    assert!(
        commits < 200,
        "{commits} database commits for 400 decisions: no group commit"
    );
    assert_eq!(log.stats().records, 800);
    assert_eq!(
        rows(
            &pg,
            "SELECT count(*) FILTER (WHERE ended) FROM twopc_log.decision"
        ),
        "400"
    );
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_past_its_lease_is_fenced_and_writes_nothing() {
    let pg = cluster();
    // "Paused": it never renews within its TTL.
    let mut paused = config(&pg, "c1");
    paused.lease_renew = Duration::from_secs(30);
    let old = PgLog::open(paused).await.unwrap();
    old.append_durable(commit("before")).await.unwrap();
    let lost = old.lease_lost();

    // Another coordinator claims the id once the lease expired and finds the decision.
    let new = PgLog::open(config(&pg, "c1")).await.unwrap();
    assert_eq!(new.lease().epoch, 2);
    assert!(new.recover().unwrap().outcomes.contains_key(&tx("before")));

    // The old holder's next decision is refused, and nothing of it reaches the table.
    let e = old.append_durable(commit("stale")).await.unwrap_err();
    assert!(matches!(e, LogError::Fenced { epoch: 1, .. }), "{e}");
    assert!(e.to_string().contains("lease"), "{e}");
    assert_eq!(old.stats().fenced_writes, 1);
    assert!(matches!(
        old.append_lazy(abort("x")),
        Err(LogError::Fenced { .. })
    ));
    assert_eq!(
        rows(
            &pg,
            "SELECT count(*) FROM twopc_log.decision WHERE txid = 'stale'"
        ),
        "0"
    );
    drop(old);
    // The new holder writes on.
    new.append_durable(commit("after")).await.unwrap();
    // A lease taken away while renewing is noticed by the renewal too.
    rows(
        &pg,
        "UPDATE twopc_log.lease SET holder = 'someone-else', epoch = epoch + 1",
    );
    let why = tokio::time::timeout(Duration::from_secs(5), new.lease_lost())
        .await
        .expect("lease loss noticed");
    assert!(why.contains("another holder"), "{why}");
    assert!(matches!(
        new.append_durable(commit("after-loss")).await,
        Err(LogError::Fenced { epoch: 2, .. })
    ));
    // The first one's watcher resolved as well (its log is gone).
    let _ = tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_rows_outside_the_window_are_deleted_pending_commits_never() {
    let pg = cluster();
    let mut c = config(&pg, "c1");
    c.max_outcomes = 10;
    c.retention_interval = Duration::from_millis(300);
    c.retention_batch = 7;
    let log = PgLog::open(c.clone()).await.unwrap();
    for i in 0..50 {
        log.append_durable(commit(&format!("done{i}")))
            .await
            .unwrap();
        log.append_lazy(end(&format!("done{i}"))).unwrap();
    }
    for i in 0..5 {
        log.append_durable(commit(&format!("open{i}")))
            .await
            .unwrap();
    }
    log.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let finished = rows(&pg, "SELECT count(*) FROM twopc_log.decision WHERE ended");
        if finished == "10" || Instant::now() > deadline {
            assert_eq!(
                finished, "10",
                "finished rows kept: the newest max_outcomes"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rows(
            &pg,
            "SELECT string_agg(txid, ',' ORDER BY seq) FROM twopc_log.decision WHERE ended"
        ),
        (40..50)
            .map(|i| format!("done{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        rows(
            &pg,
            "SELECT count(*) FROM twopc_log.decision WHERE NOT ended"
        ),
        "5"
    );
    assert_eq!(log.deleted_rows(), 40);
    log.close().await;
    let st = PgLog::open(c).await.unwrap().recover().unwrap();
    assert_eq!(st.pending.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_unreachable_databases_get_clear_errors_without_secrets() {
    let pg = cluster();
    let port = twopc_tests::util::free_port().unwrap();
    let e = PgLog::open(PgLogConfig::new(
        format!("postgresql://twopc:s3cret-pw@127.0.0.1:{port}/twopc_log"),
        "c1",
    ))
    .await
    .err()
    .expect("nothing listens there");
    let msg = e.to_string();
    assert!(
        msg.contains("connect to the decision log database"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret-pw"), "{msg}");
    let e = PgLog::open(PgLogConfig::new("postgresql://x:s3cret-pw@[bad", "c1"))
        .await
        .err()
        .expect("not a URL");
    assert!(!e.to_string().contains("s3cret-pw"), "{e}");
    let e = PgLog::open(PgLogConfig::new(pg.url("no_such_db"), "c1"))
        .await
        .err()
        .expect("no such database");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // A lease held elsewhere, with a bounded wait: says who holds it.
    let held = PgLog::open(config(&pg, "c1")).await.unwrap();
    let mut c = config(&pg, "c1");
    c.lease_wait = Some(Duration::from_millis(200));
    let e = PgLog::open(c).await.err().expect("lease held");
    assert!(matches!(e, LogError::LeaseHeld { .. }), "{e}");
    assert!(e.to_string().contains("c1@"), "{e}");
    held.close().await;
}
