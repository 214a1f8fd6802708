//! The harness itself against real servers: write to PostgreSQL and Redis, crash and restart
//! both, and read the data back (including a prepared transaction, which must survive).

use std::time::Duration;
use twopc_tests::{PgCluster, PgOptions, RedisServer};

async fn pg_client(pg: &PgCluster) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&pg.conn_string("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to the harness cluster");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn redis_conn(r: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(r.url()).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the harness redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_survive_crash_and_restart() {
    let pg = PgCluster::start(PgOptions::default()).expect("start postgres");
    let mut rs = RedisServer::start_new().expect("start redis");

    // Write to both, including a prepared (in-doubt) Postgres transaction.
    let c = pg_client(&pg).await;
    // Two strings: in one simple-query string the statements before BEGIN would join the
    // prepared transaction.
    c.batch_execute(
        "CREATE TABLE accounts(id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO accounts VALUES (1, 100), (2, 50);",
    )
    .await
    .unwrap();
    c.batch_execute(
        "BEGIN; UPDATE accounts SET balance = balance - 30 WHERE id = 1;
         PREPARE TRANSACTION 'harness-g1';",
    )
    .await
    .unwrap();
    let mut r = redis_conn(&rs).await;
    let _: () = redis::cmd("SET")
        .arg("balance:1")
        .arg(70)
        .query_async(&mut r)
        .await
        .unwrap();
    let n: i64 = redis::cmd("INCRBY")
        .arg("balance:2")
        .arg(50)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(n, 50);
    drop(c);
    drop(r);

    // Crash both the hard way.
    pg.kill9().expect("kill -9 postgres");
    assert!(
        pg.postmaster_pid().is_none(),
        "postmaster still alive after kill -9"
    );
    rs.kill9();
    assert!(!rs.is_running());
    assert!(
        tokio_postgres::connect(&pg.conn_string("postgres"), tokio_postgres::NoTls)
            .await
            .is_err(),
        "postgres still accepts connections after kill -9"
    );

    // Restart: crash recovery on both.
    pg.start_server().expect("restart postgres");
    rs.start().expect("restart redis");

    let c = pg_client(&pg).await;
    let gids: Vec<String> = c
        .query("SELECT gid FROM pg_prepared_xacts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        gids,
        vec!["harness-g1".to_string()],
        "prepared transaction lost in the crash"
    );
    let before: i64 = c
        .query_one("SELECT balance FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        before, 100,
        "prepared work must be invisible until COMMIT PREPARED"
    );
    c.batch_execute("COMMIT PREPARED 'harness-g1'")
        .await
        .unwrap();
    let after: i64 = c
        .query_one("SELECT balance FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, 70);

    let mut r = redis_conn(&rs).await;
    let b1: i64 = redis::cmd("GET")
        .arg("balance:1")
        .query_async(&mut r)
        .await
        .unwrap();
    let b2: i64 = redis::cmd("GET")
        .arg("balance:2")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(
        (b1, b2),
        (70, 50),
        "redis lost acknowledged writes across kill -9"
    );

    // A clean stop and start works too, and an immediate stop (pg_ctl stop -m immediate).
    pg.crash().expect("pg_ctl stop -m immediate");
    pg.start_server().expect("start after immediate stop");
    let c = pg_client(&pg).await;
    let sum: i64 = c
        .query_one("SELECT sum(balance)::bigint FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 120);
}

#[test]
fn clusters_are_removed_when_dropped() {
    let pg = PgCluster::start(PgOptions {
        max_prepared_transactions: 0,
        // A setting no client overrides (psql sets its own application_name, so that one
        // would show psql's value whatever the server was given).
        settings: vec![("work_mem".into(), "'7MB'".into())],
        databases: vec!["other".into()],
        ..PgOptions::default()
    })
    .unwrap();
    let data = pg.data_dir().to_path_buf();
    assert_eq!(
        pg.psql_ok("other", "SHOW max_prepared_transactions")
            .unwrap(),
        "0"
    );
    assert_eq!(pg.psql_ok("postgres", "SHOW work_mem").unwrap(), "7MB");
    let pid = pg.postmaster_pid().expect("running");
    drop(pg);
    assert!(!data.exists(), "data directory left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "postmaster left running"
    );

    let rs = RedisServer::start_new().unwrap();
    let dir = rs.dir().to_path_buf();
    assert!(dir.join("appendonlydir").exists() || dir.join("appendonly.aof").exists());
    drop(rs);
    std::thread::sleep(Duration::from_millis(10));
    assert!(!dir.exists(), "redis directory left behind");
}
