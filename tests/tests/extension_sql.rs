//! pg_twopc_ext against a real PostgreSQL 15 cluster.
//!
//! * [`golden_sql_files`]: every `tests/sql/extension/*.sql` is fed to `psql -a` (echo) in a
//!   database of its own (named after the file) and the combined stdout+stderr is compared
//!   with the `.out` file next to it. `UPDATE_GOLDEN=1` rewrites the `.out` files instead.
//!   psql reads the script from stdin, so error lines carry no `psql:file:line:` prefix, and
//!   stdout and stderr share one pipe, so errors appear in order (psql flushes stdout before it
//!   writes to stderr, as pg_regress relies on). The files select no volatile values
//!   (timestamps, ages, xids).
//! * The other tests need things a single psql script cannot do: a crash and restart, a
//!   second database, a cluster with `max_prepared_transactions = 0`.
//!
//! Every test ends by checking that the server log holds no FATAL / PANIC / crashed backend.
//!
//! The extension must be installed into the system PostgreSQL 15 first:
//! `cd pg_twopc_ext && cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use twopc_tests::pg::PG_BIN;
use twopc_tests::util::line_diff;
use twopc_tests::{repo_root, PgCluster, PgOptions};

const CONTROL: &str = "/usr/share/postgresql/15/extension/pg_twopc_ext.control";

fn require_extension_installed() {
    assert!(
        Path::new(CONTROL).exists(),
        "pg_twopc_ext is not installed into the system PostgreSQL 15 ({CONTROL} is missing). \
         Run `cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config` in \
         pg_twopc_ext/ (as root) first."
    );
}

fn start(opts: PgOptions) -> PgCluster {
    require_extension_installed();
    PgCluster::start(opts).expect("start PostgreSQL cluster")
}

/// Runs `sql` expecting an error; returns psql's stderr.
fn q_err(cluster: &PgCluster, db: &str, sql: &str) -> String {
    let out = cluster
        .psql_raw(db, &["-v", "ON_ERROR_STOP=1", "-At", "-q"], sql)
        .expect("run psql");
    assert!(
        !out.status.success(),
        "expected an error from {sql:?}, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn golden_dir() -> PathBuf {
    repo_root().join("tests/sql/extension")
}

#[test]
fn golden_sql_files() {
    let cluster = start(PgOptions::default());
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/sql/extension exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden SQL files");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for sql_path in &files {
        let stem = sql_path.file_stem().unwrap().to_string_lossy().into_owned();
        let db = format!(
            "golden_{}",
            stem.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        cluster.query("postgres", &format!("CREATE DATABASE {db}"));
        let sql = std::fs::read_to_string(sql_path).expect("read .sql");
        let actual = cluster.psql_script(
            &db,
            "postgres",
            &["-a", "-v", "VERBOSITY=terse", "-v", "ON_ERROR_STOP=0"],
            &sql,
        );
        let out_path = sql_path.with_extension("out");
        if update {
            std::fs::write(&out_path, &actual).expect("write .out");
            eprintln!("updated {}", out_path.display());
            continue;
        }
        let expected = std::fs::read_to_string(&out_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{} differs from {} (- expected, + actual; UPDATE_GOLDEN=1 rewrites):\n{}",
                sql_path.display(),
                out_path.display(),
                line_diff(&expected, &actual)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cluster.assert_clean_log();
}

/// Sets up the extension and a table in `db`.
fn setup_db(cluster: &PgCluster, db: &str) {
    cluster.query(
        db,
        "CREATE EXTENSION pg_twopc_ext; \
         CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL); \
         INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g;",
    );
}

fn prepare_sql(id: i32, gid: &str) -> String {
    format!("BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = {id}; SELECT twopc.prepare('{gid}');")
}

#[test]
fn crash_and_restart_keep_tracking_and_outcomes() {
    let cluster = start(PgOptions::default());
    setup_db(&cluster, "postgres");
    let db = "postgres";
    // in doubt across the crash, tracked
    cluster.query(db, &prepare_sql(1, "twopc:c1:in-doubt"));
    // in doubt, explicit identity on a plain gid
    cluster.query(
        db,
        "BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = 2; \
         SELECT twopc.prepare('plain-gid', 'c7', 'order-77');",
    );
    // committed through the function (history row is asynchronous; the tracking row is not)
    cluster.query(db, &prepare_sql(3, "twopc:c1:committed"));
    cluster.query(
        db,
        "SELECT twopc.commit_prepared('twopc:c1:committed', 'coordinator')",
    );
    // committed natively: only the tracking row tells
    cluster.query(db, &prepare_sql(4, "twopc:c1:native-commit"));
    cluster.query(db, "COMMIT PREPARED 'twopc:c1:native-commit'");
    // rolled back natively: presumed abort from the dead tracking tuple
    cluster.query(db, &prepare_sql(5, "twopc:c1:native-abort"));
    cluster.query(db, "ROLLBACK PREPARED 'twopc:c1:native-abort'");
    // a native prepare without tracking
    cluster.query(
        db,
        "BEGIN; UPDATE acct SET bal = 0 WHERE id = 6; PREPARE TRANSACTION 'twopc:c2:untracked'",
    );

    cluster.crash().expect("pg_ctl stop -m immediate");
    cluster.start_server().expect("restart after crash");

    let in_doubt = cluster.query(
        db,
        "SELECT gid, global_id, coordinator, tracked, coalesce(prepared_by::text, '-') \
         FROM twopc.in_doubt ORDER BY gid",
    );
    assert_eq!(
        in_doubt,
        "plain-gid|order-77|c7|t|postgres\n\
         twopc:c1:in-doubt|in-doubt|c1|t|postgres\n\
         twopc:c2:untracked|untracked|c2|f|-"
    );
    let outcomes = cluster.query(
        db,
        "SELECT g || '=' || twopc.outcome(g) FROM unnest(ARRAY['twopc:c1:in-doubt', 'plain-gid', \
         'twopc:c1:committed', 'twopc:c1:native-commit', 'twopc:c1:native-abort', \
         'twopc:c2:untracked', 'never-seen']) g",
    );
    assert_eq!(
        outcomes,
        "twopc:c1:in-doubt=in_doubt\nplain-gid=in_doubt\ntwopc:c1:committed=committed\n\
         twopc:c1:native-commit=committed\ntwopc:c1:native-abort=aborted\n\
         twopc:c2:untracked=in_doubt\nnever-seen=unknown"
    );

    // Finish after the restart, through the functions.
    cluster.query(
        db,
        "SELECT twopc.commit_prepared('twopc:c1:in-doubt', 'resolver')",
    );
    cluster.query(
        db,
        "SELECT twopc.rollback_prepared('plain-gid', 'resolver')",
    );
    cluster.query(
        db,
        "SELECT twopc.rollback_prepared('twopc:c2:untracked', 'resolver')",
    );
    let outcomes = cluster.query(
        db,
        "SELECT g || '=' || twopc.outcome(g) FROM unnest(ARRAY['twopc:c1:in-doubt', 'plain-gid', \
         'twopc:c2:untracked']) g",
    );
    assert_eq!(
        outcomes,
        "twopc:c1:in-doubt=committed\nplain-gid=aborted\ntwopc:c2:untracked=aborted"
    );
    let hist = cluster.query(
        db,
        "SELECT gid, coalesce(global_id, '-'), decision, via FROM twopc.history \
         WHERE via = 'resolver' ORDER BY gid",
    );
    assert_eq!(
        hist,
        "plain-gid|order-77|abort|resolver\n\
         twopc:c1:in-doubt|in-doubt|commit|resolver\n\
         twopc:c2:untracked|untracked|abort|resolver"
    );
    // The data agrees with the outcomes.
    let bal = cluster.query(
        db,
        "SELECT string_agg(bal::text, ',' ORDER BY id) FROM acct WHERE id <= 6",
    );
    assert_eq!(bal, "101,100,101,101,100,100");
    assert_eq!(
        cluster.query(db, "SELECT count(*) FROM twopc.in_doubt"),
        "0"
    );

    // A crash after twopc.prepare() wrote its tracking row but before the statement ended
    // (so before PREPARE happened): the tuple's xmin never committed and is not running after
    // the restart => presumed abort, with no history row and no prepared transaction.
    std::thread::scope(|s| {
        let session = s.spawn(|| {
            cluster.psql_raw(
                db,
                &[
                    "-c",
                    "BEGIN; UPDATE acct SET bal = 0 WHERE id = 7; \
                         SELECT twopc.prepare('twopc:c1:crashed'), pg_sleep(60);",
                ],
                "",
            )
        });
        let seen = twopc_tests::util::wait_until(std::time::Duration::from_secs(30), || {
            cluster
                .psql_ok(
                    db,
                    "SELECT count(*) FROM twopc.tracking_tuples() \
                     WHERE gid = 'twopc:c1:crashed' AND status = 'in_progress'",
                )
                .map(|n| n == "1")
                .unwrap_or(false)
        });
        assert!(seen, "tracking row of the sleeping prepare not seen");
        // An unfinished transaction's WAL is not flushed by itself; a checkpoint flushes all
        // of it, the tracking insert included. (Had it not reached the disk, there would be no
        // evidence at all: 'unknown', which a coordinator also reads as presumed abort.)
        cluster.query(db, "CHECKPOINT");
        cluster.crash().expect("second crash");
        let _ = session.join();
    });
    cluster.start_server().expect("second restart");
    assert_eq!(
        cluster.query(db, "SELECT twopc.outcome('twopc:c1:crashed')"),
        "aborted"
    );
    assert_eq!(
        cluster.query(db, "SELECT count(*) FROM pg_prepared_xacts"),
        "0"
    );
    assert_eq!(
        cluster.query(db, "SELECT bal FROM acct WHERE id = 7"),
        "100"
    );
    assert_eq!(
        cluster.query(db, "SELECT twopc.outcome('twopc:c1:native-abort')"),
        "aborted"
    );
    assert_eq!(
        cluster.query(db, "SELECT twopc.outcome('twopc:c1:native-commit')"),
        "committed"
    );
    cluster.assert_clean_log();
}

#[test]
fn second_database_is_kept_apart() {
    let cluster = start(PgOptions {
        databases: vec!["other".into()],
        ..PgOptions::default()
    });
    setup_db(&cluster, "postgres");
    setup_db(&cluster, "other");
    cluster.query("postgres", &prepare_sql(1, "twopc:c1:db1"));
    // Seen from the other database: listed (pg_prepared_xacts is cluster-wide) with its
    // database, but its tracking row lives in the first database.
    assert_eq!(
        cluster.query(
            "other",
            "SELECT gid, database, tracked, coordinator FROM twopc.in_doubt"
        ),
        "twopc:c1:db1|postgres|f|c1"
    );
    assert_eq!(
        cluster.query("postgres", "SELECT tracked FROM twopc.in_doubt"),
        "t"
    );
    assert_eq!(
        cluster.query("other", "SELECT twopc.outcome('twopc:c1:db1')"),
        "unknown"
    );
    let err = q_err(
        &cluster,
        "other",
        "SELECT twopc.commit_prepared('twopc:c1:db1')",
    );
    assert!(
        err.contains("prepared transaction belongs to another database"),
        "{err}"
    );
    // The same gid cannot be prepared again from the other database while it is in doubt.
    let err = q_err(&cluster, "other", &prepare_sql(1, "twopc:c1:db1"));
    assert!(err.contains("is already in use"), "{err}");
    // Nothing leaked into the other database's history.
    assert_eq!(
        cluster.query("other", "SELECT count(*) FROM twopc.history"),
        "0"
    );
    cluster.query("postgres", "SELECT twopc.commit_prepared('twopc:c1:db1')");
    assert_eq!(
        cluster.query("postgres", "SELECT twopc.outcome('twopc:c1:db1')"),
        "committed"
    );
    cluster.assert_clean_log();
}

/// The tracking table's gid index is unique, and `twopc.prepare()` inserts into it with a
/// check that must not wait: the other row may belong to a transaction that stays prepared for
/// days. A row held by a running transaction (here a plain INSERT left open) makes prepare()
/// refuse at once; once that transaction rolls back, its dead row no longer counts.
#[test]
fn a_gid_held_by_a_running_transaction_is_refused_without_waiting() {
    let cluster = start(PgOptions::default());
    setup_db(&cluster, "postgres");
    let gid = "twopc:c1:held";
    let mut holder = Command::new(format!("{PG_BIN}/psql"))
        .args(["-X", "-q", "-h"])
        .arg(cluster.socket_dir())
        .args([
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .env("PGAPPNAME", "holder")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn holder psql");
    holder
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            format!(
                "BEGIN;\n\
                 INSERT INTO twopc.tracking VALUES (pg_current_xact_id(), '{gid}', NULL, NULL, \
                   now(), current_user::regrole::oid, '-infinity', 0, '-');\n\
                 SELECT pg_sleep(60);\n\
                 ROLLBACK;\n"
            )
            .as_bytes(),
        )
        .expect("feed holder");
    // Wait until the holder sits in pg_sleep with its row inserted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.query(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' \
           AND wait_event = 'PgSleep'",
    ) != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "holder never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A waiting check would run into the statement timeout instead.
    let err = q_err(
        &cluster,
        "postgres",
        &format!("SET statement_timeout = '10s'; {}", prepare_sql(1, gid)),
    );
    assert!(err.contains("is already in use"), "{err}");
    assert!(!err.contains("statement timeout"), "{err}");
    // Cancel the holder's sleep: its script goes on with ROLLBACK.
    cluster.query(
        "postgres",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'",
    );
    let status = holder.wait().expect("wait holder");
    assert!(status.success(), "holder psql: {status}");
    cluster.query("postgres", &prepare_sql(1, gid));
    cluster.query(
        "postgres",
        &format!("SELECT twopc.commit_prepared('{gid}')"),
    );
    assert_eq!(
        cluster.query("postgres", &format!("SELECT twopc.outcome('{gid}')")),
        "committed"
    );
    cluster.assert_clean_log();
}

/// The gid lookups below SQL (outcome, gid_state, prepare's reuse check, the commit stamp's probe)
/// descend the btree by the index's own ordering. In a database whose collation does not sort
/// like C (ICU en-US ignores punctuation at the first level) a lookup that compared as C could
/// take the wrong branch and miss a gid that is there. Thousands of gids that differ only in
/// punctuation and case, so that the index has many pages whose order depends on it.
#[test]
fn gid_lookups_follow_the_database_collation() {
    let cluster = start(PgOptions::default());
    cluster.query(
        "postgres",
        "CREATE DATABASE icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
         LOCALE 'C.UTF-8'",
    );
    setup_db(&cluster, "icu");
    cluster.query("icu",
        "CREATE TABLE gids AS \
           SELECT 'twopc:c1:' || p1 || n || p2 || upper(chr(97 + n % 26)) || chr(97 + n % 7) AS gid \
             FROM generate_series(1, 400) n, \
                  unnest(ARRAY['-', '_', '.', '~', 'x']) p1, unnest(ARRAY['', '-', 'Z']) p2; \
         INSERT INTO twopc.tracking \
           SELECT pg_current_xact_id(), gid, NULL, NULL, now(), current_user::regrole::oid, '-infinity', 0, '-' \
             FROM gids;",
    );
    assert_eq!(cluster.query("icu", "SELECT count(*) FROM gids"), "6000");
    assert_eq!(
        cluster.query(
            "icu",
            "SELECT count(*) FROM gids WHERE twopc.gid_state(gid) IS DISTINCT FROM 'committed'"
        ),
        "0"
    );
    // And the reuse check refuses every one of them.
    let err = q_err(&cluster, "icu", &prepare_sql(1, "twopc:c1:_17-Rd"));
    assert!(
        err.contains("already used by a committed transaction"),
        "{err}"
    );
    // A real prepare and commit among them: the commit finds its tracking row and stamps it
    // (a missed probe would fall back to a finish_log row).
    let gid = "twopc:c1:~17-Rd!";
    cluster.query("icu", &prepare_sql(1, gid));
    cluster.query("icu", &format!("SELECT twopc.commit_prepared('{gid}')"));
    assert_eq!(
        cluster.query(
            "icu",
            &format!(
                "SELECT finished_via, (SELECT count(*) FROM twopc.finish_log), \
                        twopc.outcome(gid) FROM twopc.tracking WHERE gid = '{gid}'"
            )
        ),
        "m|0|committed"
    );
    cluster.assert_clean_log();
}

#[test]
fn max_prepared_transactions_zero_is_a_clean_error() {
    let cluster = start(PgOptions {
        max_prepared_transactions: 0,
        ..PgOptions::default()
    });
    setup_db(&cluster, "postgres");
    let out = cluster.psql_script(
        "postgres",
        "postgres",
        &["-v", "VERBOSITY=terse", "-At"],
        "BEGIN;\n\
         UPDATE acct SET bal = 1 WHERE id = 1;\n\
         SELECT twopc.prepare('g1');\n\
         ROLLBACK;\n\
         SELECT 'session still usable', count(*) FROM acct WHERE bal = 1;\n",
    );
    assert!(
        out.contains("ERROR:  prepared transactions are disabled"),
        "{out}"
    );
    assert!(out.contains("session still usable|0"), "{out}");
    cluster.assert_clean_log();
}

#[test]
fn one_query_string_after_prepare_is_an_error_not_fatal() {
    let cluster = start(PgOptions::default());
    setup_db(&cluster, "postgres");
    // Exactly the shape that kills the backend with PREPARE in TBLOCK_PREPARE: one
    // simple-query string via `psql -c`.
    let out = cluster
        .psql_raw(
            "postgres",
            &[
                "-c",
                "BEGIN; UPDATE acct SET bal = 7 WHERE id = 1; SELECT twopc.prepare('g'); COMMIT;",
                "-c",
                "SELECT 'alive', count(*) FROM pg_prepared_xacts",
            ],
            "",
        )
        .expect("psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("twopc.prepare() must be the last statement of the transaction"),
        "{stderr}"
    );
    assert!(!stderr.contains("FATAL"), "{stderr}");
    assert!(stdout.contains("alive"), "{stdout}");
    assert_eq!(
        cluster.query("postgres", "SELECT count(*) FROM pg_prepared_xacts"),
        "0"
    );
    assert_eq!(
        cluster.query("postgres", "SELECT bal FROM acct WHERE id = 1"),
        "100"
    );
    cluster.assert_clean_log();
}
