//! The harness itself against real servers: write to PostgreSQL and Redis, crash and restart
//! both, and read the data back (including a prepared transaction, which must survive); and
//! fail a primary over to its synchronous standby, reaching whichever is writable through one
//! multi-host URL.

use std::time::{Duration, Instant};
use twopc_tests::{multi_host_url, PgCluster, PgOptions, RedisServer, StandbyOptions};

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

/// Connects through `url` and returns the client and the port of the server it reached, after
/// checking that server is out of recovery (what `target_session_attrs=read-write` promises).
async fn connect_writable(
    url: &str,
) -> Result<(tokio_postgres::Client, u16), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let row = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await?;
    let (port, in_recovery): (i32, bool) = (row.get(0), row.get(1));
    assert!(!in_recovery, "{url} reached a server in recovery");
    Ok((client, u16::try_from(port).expect("a TCP port")))
}

/// Polls `sql` on `pg` until it prints `want` (a standby replays a commit shortly after the
/// primary acknowledged it, not before); errors count as not yet (the table may not have been
/// replayed at all).
fn wait_for(pg: &PgCluster, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = pg.psql_ok("postgres", sql);
        if matches!(&got, Ok(s) if s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} gave {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_standby_takes_over_after_kill9_and_the_url_follows() {
    const NAME: &str = "harness_standby";
    let started = Instant::now();
    // Started naming its standby already, so the base backup's postgresql.conf names the
    // standby itself: start_standby must drop that, or every write on the standby after its
    // promotion would wait for a standby that will never come (checked with a timeout below).
    let primary = PgCluster::start(PgOptions {
        synchronous_standby_names: Some(NAME.into()),
        ..PgOptions::default()
    })
    .expect("start the primary");
    let standby = primary
        .start_standby(StandbyOptions {
            application_name: NAME.into(),
            ..StandbyOptions::default()
        })
        .expect("start the standby");
    assert_ne!(primary.port(), standby.port());
    assert!(!primary.is_in_recovery().unwrap());
    assert!(standby.is_in_recovery().unwrap());
    assert_eq!(
        standby.query("postgres", "SHOW synchronous_standby_names"),
        ""
    );

    // set_synchronous_standby both ways; the primary's own view is the one that counts.
    let sync_state = || {
        primary.query(
            "postgres",
            &format!(
                "SELECT state || ' ' || sync_state FROM pg_stat_replication \
                 WHERE application_name = '{NAME}'"
            ),
        )
    };
    primary.set_synchronous_standby(None).unwrap();
    assert_eq!(sync_state(), "streaming async");
    primary.set_synchronous_standby(Some(NAME)).unwrap();
    assert_eq!(sync_state(), "streaming sync");

    // A write on the primary shows up on the standby, which refuses writes itself.
    primary.query(
        "postgres",
        "CREATE TABLE t(id int PRIMARY KEY, via text NOT NULL);
         INSERT INTO t VALUES (1, 'psql-primary');",
    );
    wait_for(&standby, "SELECT via FROM t WHERE id = 1", "psql-primary");
    let refused = standby
        .psql_ok("postgres", "INSERT INTO t VALUES (99, 'standby')")
        .expect_err("a standby must refuse writes");
    assert!(
        refused.to_string().contains("read-only transaction"),
        "{refused}"
    );

    // The multi-host URL reaches the primary whether it is listed first or after the
    // (read-only, so skipped) standby; a list of only the standby finds nothing writable.
    let url = multi_host_url(&[&primary, &standby], "postgres", "postgres");
    assert_eq!(
        url,
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            primary.port(),
            standby.port()
        )
    );
    let (client, port) = connect_writable(&url).await.expect("connect via the URL");
    assert_eq!(port, primary.port(), "{url} did not reach the primary");
    // Acknowledged only once the synchronous standby has flushed it: it must survive the
    // primary's kill -9 below although nothing waits for the standby to show it.
    client
        .execute("INSERT INTO t VALUES (2, 'url-before')", &[])
        .await
        .unwrap();
    drop(client);
    let standby_first = multi_host_url(&[&standby, &primary], "postgres", "postgres");
    let (client, port) = connect_writable(&standby_first)
        .await
        .expect("connect via the URL listing the standby first");
    assert_eq!(
        port,
        primary.port(),
        "{standby_first} did not skip the standby"
    );
    drop(client);
    let only_standby = multi_host_url(&[&standby], "postgres", "postgres");
    let err = connect_writable(&only_standby)
        .await
        .map(|(_, port)| port)
        .expect_err("a standby alone is not writable");
    // tokio-postgres's Display says only "error connecting to server"; the reason is the
    // source.
    let reason = std::error::Error::source(&err).map(|e| e.to_string());
    assert_eq!(
        reason.as_deref(),
        Some("database does not allow writes"),
        "{err:?}"
    );
    primary.assert_clean_log();

    // Failover: the primary dies, the standby takes over with both acknowledged rows.
    primary.kill9().expect("kill -9 the primary");
    assert!(primary.postmaster_pid().is_none());
    standby.promote().expect("promote the standby");
    assert!(!standby.is_in_recovery().unwrap());
    assert_eq!(
        standby.query(
            "postgres",
            "SELECT string_agg(id || ' ' || via, ', ' ORDER BY id) FROM t"
        ),
        "1 psql-primary, 2 url-before"
    );

    // The same URL, dead primary first, now reaches the promoted standby, and writes there
    // return (a copied synchronous_standby_names would make them wait forever).
    let (client, port) = tokio::time::timeout(Duration::from_secs(10), connect_writable(&url))
        .await
        .expect("connecting after the failover timed out")
        .expect("connect via the URL after the failover");
    assert_eq!(
        port,
        standby.port(),
        "{url} did not reach the promoted standby"
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        client.execute("INSERT INTO t VALUES (3, 'url-after')", &[]),
    )
    .await
    .expect("a write on the promoted standby hung")
    .unwrap();
    drop(client);
    standby.query("postgres", "INSERT INTO t VALUES (4, 'psql-promoted')");
    assert_eq!(
        standby.query(
            "postgres",
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"
        ),
        "1,2,3,4"
    );
    eprintln!("failover test took {:?}", started.elapsed());
}
