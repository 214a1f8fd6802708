//! pg_twopc_ext beside native two-phase commit, against real PostgreSQL 15 clusters.
//!
//! * [`postgresql_suite_gives_the_same_results_natively_and_through_the_functions`]:
//!   PostgreSQL's own regression test for prepared transactions (`prepared_xacts.sql` from the
//!   PostgreSQL 15 sources, fetched by `scripts/setup.sh`) runs on a cluster without the
//!   extension (it must print PostgreSQL's expected output), with the library preloaded and
//!   the extension installed (it must print exactly the same), and rewritten to the twopc
//!   functions (the same results, statement echo aside). The rewrite is mechanical; where the
//!   functions cannot behave like the statements, [`KEPT_NATIVE`] says which statement stays
//!   and why.
//! * [`a_real_xa_client_is_tracked`]: psycopg's `tpc_*` API (XA-format gids) against a
//!   preloaded cluster: its transactions show in `twopc.in_doubt`, `twopc.outcome()` and
//!   `twopc.history`, and not when `twopc.track_native` is off.
//! * [`a_finish_on_the_preparing_session_stamps_the_right_row_whatever_happened_meanwhile`]:
//!   the finish's shortcut to the row its own session's prepare wrote, and every way that row
//!   can have changed meanwhile.
//! * [`a_prepared_transaction_keeps_the_tracking_tables_lock_but_not_its_indexs`]: which locks
//!   a tracked prepared transaction carries.
//! * [`retention_purges_finished_history_in_batches_and_never_in_doubt_work`]:
//!   `twopc.purge()` and the retention worker.
//! * [`upgrades_keep_in_doubt_transactions`]: `ALTER EXTENSION ... UPDATE` from every earlier
//!   version (0.1.0, 0.2.0) on a cluster with tracked in-doubt transactions, and the upgraded
//!   schema equals a fresh one.
//!
//! Every cluster runs with `RUST_BACKTRACE=1` (the harness sets it), and no output may carry a
//! Rust source path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use twopc_tests::util::{line_diff, wait_until};
use twopc_tests::{repo_root, PgCluster, PgOptions};

const REGRESS_DIR: &str = "/var/cache/twopc/pg15-regress";
const EXTENSION_DIR: &str = "/usr/share/postgresql/15/extension";

/// Gids whose `PREPARE TRANSACTION` the rewrite leaves as it is, with the reason.
///
/// `foo5` follows a serialization failure inside its block. PostgreSQL runs nothing in a
/// failed block but the statements that end it (`ROLLBACK`, `COMMIT`, `PREPARE TRANSACTION`,
/// which is then a ROLLBACK): a `SELECT twopc.prepare()` there is refused before any function
/// runs ("current transaction is aborted"), so no function can match the statement. With the
/// library preloaded the statement itself is tracked, so an application loses nothing by
/// sending it.
const KEPT_NATIVE: &[(&str, &str)] = &[(
    "foo5",
    "a failed block runs no function; the native statement is a ROLLBACK there",
)];

fn require_installed() {
    let control = Path::new(EXTENSION_DIR).join("pg_twopc_ext.control");
    assert!(
        control.exists(),
        "pg_twopc_ext is not installed ({} is missing): run `cargo pgrx install --pg-config \
         /usr/lib/postgresql/15/bin/pg_config` in pg_twopc_ext/ first",
        control.display()
    );
}

fn regress_file(rel: &str) -> String {
    let path = Path::new(REGRESS_DIR).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/setup.sh fetches PostgreSQL's regression files)",
            path.display()
        )
    })
}

fn preloaded(settings: &[(&str, &str)]) -> PgCluster {
    require_installed();
    PgCluster::start(PgOptions {
        shared_preload_libraries: Some("pg_twopc_ext".into()),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PgOptions::default()
    })
    .expect("start a cluster with pg_twopc_ext preloaded")
}

/// Runs a regression script as pg_regress does (`psql -a -q`, script on stdin).
fn run_script(cluster: &PgCluster, db: &str, sql: &str) -> String {
    let out = cluster.psql_script(
        db,
        "postgres",
        &[
            "-a",
            "-q",
            "-v",
            "HIDE_TABLEAM=on",
            "-v",
            "HIDE_TOAST_COMPRESSION=on",
        ],
        sql,
    );
    assert!(
        !out.contains(".rs:") && !out.contains("panicked"),
        "Rust internals in psql output:\n{out}"
    );
    out
}

/// The suite rewritten to the twopc functions: each `PREPARE TRANSACTION 'g';`,
/// `COMMIT PREPARED 'g';` and `ROLLBACK PREPARED 'g';` becomes the function call, its
/// result row swallowed by `\gset` (the statements print nothing either); a trailing comment
/// moves to the line before (psql would read it as an argument of `\gset`).
fn rewrite_to_functions(sql: &str) -> String {
    let rules = [
        ("PREPARE TRANSACTION '", "twopc.prepare"),
        ("COMMIT PREPARED '", "twopc.commit_prepared"),
        ("ROLLBACK PREPARED '", "twopc.rollback_prepared"),
    ];
    let mut out = String::new();
    for line in sql.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rewritten = rules.iter().find_map(|(prefix, function)| {
            let rest = trimmed.strip_prefix(prefix)?;
            let (gid, tail) = rest.split_once("';")?;
            if KEPT_NATIVE.iter().any(|(kept, _)| *kept == gid) {
                return None;
            }
            let comment = tail.trim();
            let mut s = String::new();
            if !comment.is_empty() {
                s.push_str(&format!("{indent}{comment}\n"));
            }
            s.push_str(&format!("{indent}SELECT {function}('{gid}') \\gset"));
            Some(s)
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The output without the echo of the script: `psql -a` prints each (non-blank) input line
/// as it reads it, so walking the output with a cursor into the script drops exactly those lines and
/// keeps what the statements printed.
fn results_only(output: &str, script: &str) -> Vec<String> {
    // Blank lines are not echoed.
    let input: Vec<&str> = script.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut next = 0;
    let mut kept = Vec::new();
    for line in output.lines() {
        if next < input.len() && line == input[next] {
            next += 1;
        } else {
            kept.push(line.to_owned());
        }
    }
    assert_eq!(
        next,
        input.len(),
        "the output does not echo the whole script (stopped at line {})",
        next + 1
    );
    kept
}

#[test]
fn postgresql_suite_gives_the_same_results_natively_and_through_the_functions() {
    let sql = regress_file("sql/prepared_xacts.sql");
    let expected = regress_file("expected/prepared_xacts.out");

    // 1. PostgreSQL alone: the harness runs the file as pg_regress does.
    let plain = PgCluster::start(PgOptions::default()).expect("start a plain cluster");
    plain.query("postgres", "CREATE DATABASE regression");
    let without = run_script(&plain, "regression", &sql);
    assert_eq!(
        without,
        expected,
        "PostgreSQL's own expected output:\n{}",
        line_diff(&expected, &without)
    );
    drop(plain);

    // 2. The library preloaded, the extension installed, the statements as written: not one
    //    byte differs (native tracking is on by default).
    let cluster = preloaded(&[]);
    for db in ["native", "functions"] {
        cluster.query("postgres", &format!("CREATE DATABASE {db}"));
        cluster.query(db, "CREATE EXTENSION pg_twopc_ext");
    }
    let native = run_script(&cluster, "native", &sql);
    assert_eq!(
        native,
        without,
        "with pg_twopc_ext:\n{}",
        line_diff(&without, &native)
    );

    // 3. Through the functions: the same results.
    let rewritten = rewrite_to_functions(&sql);
    assert!(rewritten.contains("SELECT twopc.prepare('regress-one') \\gset"));
    let native_left: Vec<&str> = rewritten
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("PREPARE TRANSACTION") || l.ends_with(" PREPARED 'foo5';"))
        .collect();
    assert_eq!(
        native_left,
        ["PREPARE TRANSACTION 'foo5';"],
        "only KEPT_NATIVE stays"
    );
    let functions = run_script(&cluster, "functions", &rewritten);
    let (want, got) = (
        results_only(&without, &sql).join("\n"),
        results_only(&functions, &rewritten).join("\n"),
    );
    // Not an empty comparison: the results include the suite's tables and its refusals.
    assert!(want.lines().count() > 100, "{want}");
    for refusal in [
        "ERROR:  transaction identifier \"foo3\" is already in use",
        "ERROR:  could not serialize access due to read/write dependencies among transactions",
        "ERROR:  cannot PREPARE while holding both session-level and transaction-level locks on the same object",
    ] {
        assert!(want.contains(refusal), "{refusal}");
    }
    assert_eq!(
        got,
        want,
        "results through the functions:\n{}",
        line_diff(&want, &got)
    );

    // Both runs were tracked: the native statements with via 'native', the functions with
    // their default 'manual'. (foo5 was never prepared; foo3's second PREPARE was refused.)
    let history = "SELECT string_agg(gid || ':' || decision || ':' || via, ' ' ORDER BY gid) \
                   FROM twopc.history";
    assert_eq!(
        cluster.query("native", history),
        "foo1:abort:native foo2:commit:native foo3:abort:native foo4:abort:native \
         regress-one:commit:native regress-two:commit:native"
    );
    assert_eq!(
        cluster.query("functions", history),
        "foo1:abort:manual foo2:commit:manual foo3:abort:manual foo4:abort:manual \
         regress-one:commit:manual regress-two:commit:manual"
    );
    for db in ["native", "functions"] {
        assert_eq!(
            cluster.query(
                db,
                "SELECT twopc.outcome('foo2') || ' ' || twopc.outcome('foo4') || ' ' \
                 || twopc.outcome('foo5')"
            ),
            "committed aborted unknown",
            "{db}"
        );
    }
    cluster.assert_clean_log();
}

/// Runs a Python script with Debian's python3 (which has psycopg2, installed by
/// scripts/setup.sh); returns its stdout, panicking with stderr on failure.
fn python(cluster: &PgCluster, db: &str, script: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", db)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// psycopg's XA API: prepares the branch `gtrid` and prints its gid.
const XA_PREPARE: &str = r#"
import psycopg2
conn = psycopg2.connect("")
xid = conn.xid(42, "GTRID", "bqual-1")
conn.tpc_begin(xid)
conn.cursor().execute("INSERT INTO acct VALUES (%s, 100)", (GTRID_ID,))
conn.tpc_prepare()
cur = psycopg2.connect("").cursor()
cur.execute("SELECT gid FROM pg_prepared_xacts ORDER BY prepared DESC LIMIT 1")
print(cur.fetchone()[0])
conn.close()
"#;

/// psycopg's XA recovery API: finishes a prepared branch from a new connection, as a
/// transaction manager does after a crash (tpc_recover, then tpc_commit / tpc_rollback).
const XA_FINISH: &str = r#"
import psycopg2
conn = psycopg2.connect("")
for xid in conn.tpc_recover():
    if xid.gtrid == "GTRID":
        conn.tpc_commit(xid) if "DECISION" == "commit" else conn.tpc_rollback(xid)
        print(xid.format_id, xid.gtrid, xid.bqual)
"#;

fn xa_prepare(cluster: &PgCluster, gtrid: &str, id: i32) -> String {
    python(
        cluster,
        "bank",
        &XA_PREPARE
            .replace("\"GTRID\"", &format!("{gtrid:?}"))
            .replace("GTRID_ID", &id.to_string()),
    )
}

fn xa_finish(cluster: &PgCluster, gtrid: &str, decision: &str) -> String {
    python(
        cluster,
        "bank",
        &XA_FINISH
            .replace("\"GTRID\"", &format!("{gtrid:?}"))
            .replace("DECISION", decision),
    )
}

#[test]
fn a_real_xa_client_is_tracked() {
    let cluster = preloaded(&[]);
    cluster.query("postgres", "CREATE DATABASE bank");
    cluster.query(
        "bank",
        "CREATE EXTENSION pg_twopc_ext; CREATE TABLE acct (id int PRIMARY KEY, bal int)",
    );

    // Prepared by psycopg: in doubt, tracked, with the XA gid psycopg formats.
    let committed = xa_prepare(&cluster, "order-1", 1);
    assert!(committed.starts_with("42_"), "XA-format gid: {committed}");
    let rolled_back = xa_prepare(&cluster, "order-2", 2);
    assert_eq!(
        cluster.query("bank",
            "SELECT string_agg(gid || ':' || tracked, ' ' ORDER BY prepared_at) FROM twopc.in_doubt"
        ),
        format!("{committed}:true {rolled_back}:true")
    );
    let outcome = |gid: &str| cluster.query("bank", &format!("SELECT twopc.outcome('{gid}')"));
    assert_eq!(outcome(&committed), "in_doubt");

    // Finished by psycopg's recovery API from another session.
    assert_eq!(
        xa_finish(&cluster, "order-1", "commit"),
        "42 order-1 bqual-1"
    );
    assert_eq!(
        xa_finish(&cluster, "order-2", "rollback"),
        "42 order-2 bqual-1"
    );
    assert_eq!(outcome(&committed), "committed");
    assert_eq!(outcome(&rolled_back), "aborted");
    assert_eq!(
        cluster.query(
            "bank",
            "SELECT string_agg(decision || ':' || via || ':' || (finished_by = 'postgres'), ' ' \
             ORDER BY decision DESC) FROM twopc.history"
        ),
        "commit:native:true abort:native:true"
    );
    assert_eq!(cluster.query("bank", "SELECT count(*) FROM acct"), "1");

    // twopc.track_native = off: the same client, no tracking (and no refusal).
    cluster.query(
        "postgres",
        "ALTER SYSTEM SET twopc.track_native = off; SELECT pg_reload_conf()",
    );
    assert!(wait_until(Duration::from_secs(10), || cluster
        .query("bank", "SHOW twopc.track_native")
        == "off"));
    let untracked = xa_prepare(&cluster, "order-3", 3);
    assert_eq!(
        cluster.query(
            "bank",
            &format!("SELECT tracked FROM twopc.in_doubt WHERE gid = '{untracked}'")
        ),
        "f"
    );
    xa_finish(&cluster, "order-3", "commit");
    assert_eq!(
        cluster.query("bank", "SELECT count(*) FROM twopc.history"),
        "2"
    );
    // Only a superuser may turn tracking off.
    let refused = cluster
        .psql_raw(
            "bank",
            &["-v", "ON_ERROR_STOP=1", "-At", "-q"],
            "CREATE ROLE xa_app LOGIN; SET ROLE xa_app; SET twopc.track_native = off;",
        )
        .expect("run psql");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    cluster.assert_clean_log();
}

/// One session that prepares and finishes its own transactions natively, with a second
/// session (dblink) finishing some of them behind its back. A finish on the preparing session
/// reads the tracking row at the position the prepare remembered; each case below makes that
/// position stale in another way, and the finish must then behave exactly as without the
/// shortcut: the right row stamped, or PostgreSQL's own error and nothing recorded.
#[test]
fn a_finish_on_the_preparing_session_stamps_the_right_row_whatever_happened_meanwhile() {
    let cluster = preloaded(&[]);
    cluster.query("postgres", "CREATE DATABASE same");
    cluster.query(
        "same",
        "CREATE EXTENSION pg_twopc_ext; CREATE EXTENSION dblink; CREATE TABLE t (id int)",
    );
    let other = format!(
        "host={} port={} dbname=same user=postgres",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let elsewhere = |stmt: &str| format!("SELECT dblink_exec('{other}', '{stmt}');\n");
    let mut script = String::new();
    // 1. The only tracking row, rolled back elsewhere and vacuumed away with the table's only
    //    page: the remembered position is past the end of the table.
    script += "BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'gone';\n";
    script += &elsewhere("ROLLBACK PREPARED ''gone''");
    script += "VACUUM twopc.tracking;\n";
    script += "SELECT 'pages ' || pg_relation_size('twopc.tracking');\n";
    script += "COMMIT PREPARED 'gone';\n";
    // 2. Prepared and committed here: the remembered row.
    script += "BEGIN; INSERT INTO t VALUES (2); PREPARE TRANSACTION 'here';\n";
    script += "COMMIT PREPARED 'here';\n";
    // 3. Rolled back elsewhere, then prepared again here under the same gid: the second
    //    prepare's row, not the dead one, is stamped.
    script += "BEGIN; INSERT INTO t VALUES (3); PREPARE TRANSACTION 'again';\n";
    script += &elsewhere("ROLLBACK PREPARED ''again''");
    script += "BEGIN; INSERT INTO t VALUES (4); PREPARE TRANSACTION 'again';\n";
    script += "COMMIT PREPARED 'again';\n";
    // 4. Committed elsewhere: finishing it here is PostgreSQL's "does not exist".
    script += "BEGIN; INSERT INTO t VALUES (5); PREPARE TRANSACTION 'theirs';\n";
    script += &elsewhere("COMMIT PREPARED ''theirs''");
    script += "COMMIT PREPARED 'theirs';\n";
    script += "SELECT 'rows ' || string_agg(id::text, ',' ORDER BY id) FROM t;\n";
    let out = cluster.psql_script("same", "postgres", &["-At", "-q"], &script);
    assert!(
        !out.contains(".rs:") && !out.contains("panicked"),
        "Rust internals in psql output:\n{out}"
    );
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "exactly two refusals:\n{out}");
    for gid in ["gone", "theirs"] {
        assert!(
            errors.iter().any(|e| e.ends_with(&format!(
                "ERROR:  prepared transaction with identifier \"{gid}\" does not exist"
            ))),
            "PostgreSQL's own error for {gid}:\n{out}"
        );
    }
    assert!(out.contains("pages 0"), "the table was truncated:\n{out}");
    assert!(out.contains("rows 2,4,5"), "{out}");

    // Each committed gid has one visible tracking row, stamped by the COMMIT PREPARED that
    // committed it (the other session's for 'theirs'), and the history says so once.
    assert_eq!(
        cluster.query(
            "same",
            "SELECT string_agg(gid || ':' || finished_via::text || ':' || (finished_at > prepared_at), \
             ' ' ORDER BY gid) FROM twopc.tracking"
        ),
        "again:n:true here:n:true theirs:n:true"
    );
    assert_eq!(
        cluster.query(
            "same",
            "SELECT string_agg(gid || ':' || decision || ':' || via, ' ' ORDER BY gid, decision) \
             FROM twopc.history"
        ),
        "again:abort:native again:commit:native gone:abort:native here:commit:native \
         theirs:commit:native"
    );
    for (gid, outcome) in [
        ("gone", "aborted"),
        ("here", "committed"),
        ("again", "committed"),
        ("theirs", "committed"),
    ] {
        assert_eq!(
            cluster.query("same", &format!("SELECT twopc.outcome('{gid}')")),
            outcome,
            "{gid}"
        );
    }
    cluster.assert_clean_log();
}

/// A prepared transaction, tracked natively or through `twopc.prepare()`, keeps its lock on
/// `twopc.tracking` (which holds off whatever would move or drop its row, and the index's
/// REINDEX / DROP INDEX, which lock the table first) but not one on `tracking_gid_idx`: the
/// index's lock is released after the insert, as PostgreSQL's executor releases its index
/// locks, so that each prepared transaction carries one lock fewer. Nor does it keep a lock on
/// the `pg_extension` catalog, read once per backend to know whether to track at all.
#[test]
fn a_prepared_transaction_keeps_the_tracking_tables_lock_but_not_its_indexs() {
    let cluster = preloaded(&[]);
    cluster.query("postgres", "CREATE DATABASE locks");
    cluster.query(
        "locks",
        "CREATE EXTENSION pg_twopc_ext; CREATE TABLE t (id int)",
    );
    cluster.query(
        "locks",
        "BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'native-held'",
    );
    cluster.query(
        "locks",
        "BEGIN; INSERT INTO t VALUES (2); SELECT twopc.prepare('twopc:c1:fn-held'); COMMIT",
    );
    let held = |relation: &str| {
        cluster.query(
            "locks",
            &format!(
                "SELECT coalesce(string_agg(mode, ','), '-') FROM pg_catalog.pg_locks \
                 WHERE pid IS NULL AND relation = '{relation}'::regclass"
            ),
        )
    };
    // Prepared transactions' locks are the ones without a backend (pid NULL).
    assert_eq!(
        cluster.query(
            "locks",
            "SELECT count(DISTINCT virtualtransaction) FROM pg_catalog.pg_locks WHERE pid IS NULL"
        ),
        "2"
    );
    assert_eq!(held("t"), "RowExclusiveLock,RowExclusiveLock");
    assert_eq!(held("twopc.tracking"), "RowExclusiveLock,RowExclusiveLock");
    assert_eq!(held("twopc.tracking_gid_idx"), "-");
    // Nor a catalog's: the native prepare, the first of its backend, looked up the
    // extension's version, and that lookup's locks are released at once.
    assert_eq!(held("pg_catalog.pg_extension"), "-");
    assert_eq!(held("pg_catalog.pg_extension_name_index"), "-");
    // The table's lock still keeps the index where the prepared rows' entries are.
    for stmt in [
        "REINDEX INDEX twopc.tracking_gid_idx",
        "DROP INDEX twopc.tracking_gid_idx",
    ] {
        let out = cluster.psql_script(
            "locks",
            "postgres",
            &["-At", "-q"],
            &format!("SET lock_timeout = '200ms';\n{stmt};\n"),
        );
        assert!(
            out.contains("canceling statement due to lock timeout"),
            "{stmt} while prepared:\n{out}"
        );
    }
    cluster.query("locks", "COMMIT PREPARED 'native-held'");
    cluster.query(
        "locks",
        "SELECT twopc.commit_prepared('twopc:c1:fn-held', 'coordinator')",
    );
    cluster.query("locks", "REINDEX INDEX twopc.tracking_gid_idx");
    assert_eq!(
        cluster.query(
            "locks",
            "SELECT string_agg(gid || ':' || twopc.outcome(gid), ' ' ORDER BY gid) FROM twopc.tracking"
        ),
        "native-held:committed twopc:c1:fn-held:committed"
    );
    cluster.assert_clean_log();
}

#[test]
fn retention_purges_finished_history_in_batches_and_never_in_doubt_work() {
    // twopc.database is created after the cluster starts, as the demo and the harness do:
    // the launcher waits for it (a LOG line), and never tries to connect to it while it is
    // missing, which would put a FATAL in the server log (checked at the end).
    let cluster = preloaded(&[
        ("twopc.history_retention", "0"),
        ("twopc.database", "retained"),
    ]);
    // A reload makes the launcher look at once; retention of a day cannot race the manual
    // purge below (its rows are an hour old).
    cluster.query(
        "postgres",
        "ALTER SYSTEM SET twopc.history_retention = '1d'; SELECT pg_reload_conf()",
    );
    let log = || std::fs::read_to_string(cluster.log_path()).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || log().contains(
            r#"twopc retention: database "retained" (twopc.database) does not exist"#
        )),
        "the launcher never said it waits for the database:\n{}",
        log()
    );
    cluster.query("postgres", "CREATE DATABASE retained");
    cluster.query(
        "retained",
        "CREATE EXTENSION pg_twopc_ext; CREATE TABLE acct (id int PRIMARY KEY, bal int)",
    );
    // 2,500 finish-log rows (more than two batches), a committed tracked transaction, and an
    // in-doubt one that must survive every purge.
    cluster.query(
        "retained",
        "INSERT INTO twopc.finish_log \
         SELECT 'old-' || g, NULL, NULL, 'abort', now() - interval '1 hour', 'postgres', 'manual' \
           FROM generate_series(1, 2500) g",
    );
    for (gid, finish) in [("kept-in-doubt", false), ("committed", true)] {
        cluster.query(
            "retained",
            &format!(
                "BEGIN; INSERT INTO acct VALUES ({}, 1); SELECT twopc.prepare('{gid}');",
                u8::from(finish)
            ),
        );
        if finish {
            cluster.query(
                "retained",
                &format!("SELECT twopc.commit_prepared('{gid}')"),
            );
        }
    }
    // One call deletes at most a batch per table.
    assert_eq!(
        cluster.query(
            "retained",
            "SELECT twopc.purge(interval '30 minutes', 1000)"
        ),
        "1000"
    );
    // The worker purges the rest once they are past twopc.history_retention.
    cluster.query(
        "retained",
        "ALTER SYSTEM SET twopc.history_retention = '2s'; SELECT pg_reload_conf()",
    );
    let rows = || {
        cluster.query(
            "retained",
            "SELECT tracking_rows || ' ' || finish_log_rows || ' ' || in_doubt FROM twopc.stats()",
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || rows() == "0 0 1"),
        "retention left: {}",
        rows()
    );
    assert_eq!(
        cluster.query(
            "retained",
            "SELECT gid || ' ' || tracked FROM twopc.in_doubt"
        ),
        "kept-in-doubt true"
    );
    cluster.query("retained", "SELECT twopc.commit_prepared('kept-in-doubt')");
    assert_eq!(
        cluster.query("retained", "SELECT twopc.outcome('kept-in-doubt')"),
        "committed"
    );
    // stats() reports the tables' size and oldest row.
    assert_eq!(
        cluster.query(
            "retained",
            "SELECT tracking_rows, total_bytes > 0, oldest_row IS NOT NULL FROM twopc.stats()"
        ),
        "1|t|t"
    );
    // Bad arguments are clean errors.
    let err = cluster
        .psql_raw(
            "retained",
            &["-v", "ON_ERROR_STOP=1", "-At", "-q"],
            "SELECT twopc.purge(interval '1 day', 0)",
        )
        .expect("run psql");
    assert!(String::from_utf8_lossy(&err.stderr).contains("batch_size must be positive"));
    cluster.assert_clean_log();
}

/// The version every schema change is measured against: its install script is kept in the
/// repository (pgrx generates only the current one) and copied next to the others.
fn install_frozen(version: &str) {
    let name = format!("pg_twopc_ext--{version}.sql");
    let frozen: PathBuf = repo_root().join("pg_twopc_ext/sql/frozen").join(&name);
    let target = Path::new(EXTENSION_DIR).join(&name);
    let script = std::fs::read(&frozen).expect("frozen install script");
    if std::fs::read(&target).ok().as_deref() != Some(&script[..]) {
        std::fs::write(&target, &script).expect("install the frozen script (run as root)");
    }
}

/// The extension's version in this tree (its Cargo.toml), which `ALTER EXTENSION ... UPDATE`
/// must arrive at.
fn current_version() -> String {
    let toml = std::fs::read_to_string(repo_root().join("pg_twopc_ext/Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("pg_twopc_ext/Cargo.toml names its version")
        .to_owned()
}

/// Everything about schema `twopc` that an upgrade must get right, as text.
const DESCRIBE_SCHEMA: &str = r#"
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '-')
    FROM pg_class c WHERE c.relnamespace = 'twopc'::regnamespace
  UNION ALL
  SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' ' || a.attnotnull || ' ' || a.attnum
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'twopc'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'twopc'::regnamespace
  UNION ALL
  SELECT 'idx ' || pg_get_indexdef(indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
   WHERE c.relnamespace = 'twopc'::regnamespace
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid)
    FROM pg_class c WHERE c.relnamespace = 'twopc'::regnamespace AND c.relkind = 'v'
  UNION ALL
  SELECT 'fn ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, '-')
    FROM pg_proc p WHERE p.pronamespace = 'twopc'::regnamespace
  UNION ALL
  SELECT 'comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-') || ' on ' || c.relname
    FROM pg_class c WHERE c.relnamespace = 'twopc'::regnamespace
  UNION ALL
  SELECT 'comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || ' on ' || p.proname
    FROM pg_proc p WHERE p.pronamespace = 'twopc'::regnamespace
) d(line)
"#;

#[test]
fn upgrades_keep_in_doubt_transactions() {
    let cluster = preloaded(&[]);
    cluster.query("postgres", "CREATE DATABASE fresh");
    cluster.query("fresh", "CREATE EXTENSION pg_twopc_ext");
    let fresh = cluster.query("fresh", DESCRIBE_SCHEMA);
    for from in ["0.1.0", "0.2.0"] {
        install_frozen(from);
        upgrade_from(&cluster, from, &fresh);
    }
    cluster.assert_clean_log();
}

/// Creates the extension at `from` in a new database, leaves tracked work in doubt, updates
/// to the current version, finishes the work, and compares the schema with `fresh`.
fn upgrade_from(cluster: &PgCluster, from: &str, fresh: &str) {
    let db = format!("upgraded_{}", from.replace('.', "_"));
    cluster.query("postgres", &format!("CREATE DATABASE {db}"));
    let db = db.as_str();
    // Gids are cluster-wide: each run has its own coordinator name.
    let c = format!("c{}", from.replace('.', ""));
    cluster.query(
        db,
        &format!(
            "CREATE EXTENSION pg_twopc_ext VERSION '{from}'; \
         CREATE TABLE acct (id int PRIMARY KEY, bal int); \
         INSERT INTO acct SELECT g, 100 FROM generate_series(1, 3) g"
        ),
    );
    // Tracked work of every kind, left in doubt across the upgrade.
    let (to_commit, to_abort, done) = (
        format!("twopc:{c}:to-commit"),
        format!("twopc:{c}:to-abort"),
        format!("done-{c}"),
    );
    for (id, gid) in [(1, &to_commit), (2, &to_abort)] {
        cluster.query(
            db,
            &format!(
                "BEGIN; UPDATE acct SET bal = bal - 10 WHERE id = {id}; \
                 SELECT twopc.prepare('{gid}');"
            ),
        );
    }
    cluster.query(
        db,
        &format!(
            "BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = 3; SELECT twopc.prepare('{done}'); \
             SELECT twopc.commit_prepared('{done}'); \
             SELECT twopc.record_decision('{to_commit}', 'commit')"
        ),
    );
    let in_doubt = "SELECT string_agg(gid || ' ' || global_id || ' ' || coordinator || ' ' \
                    || tracked || ' ' || coalesce(decision, '-'), ', ' ORDER BY gid) \
                    FROM twopc.in_doubt";
    let before = cluster.query(db, in_doubt);
    assert_eq!(
        before,
        format!("{to_abort} to-abort {c} true -, {to_commit} to-commit {c} true commit")
    );

    // This library on the old schema: a rollback's finish-log row leaves out the column that
    // schema lacks (finish_log.submitted_by) instead of failing after the rollback happened.
    let early = format!("twopc:{c}:early");
    cluster.query(
        db,
        &format!(
            "BEGIN; UPDATE acct SET bal = bal + 50 WHERE id = 3; SELECT twopc.prepare('{early}'); \
             SELECT twopc.rollback_prepared('{early}')"
        ),
    );

    // From 0.1.0 that runs both scripts, one after the other.
    cluster.query(db, "ALTER EXTENSION pg_twopc_ext UPDATE");
    assert_eq!(
        cluster.query(
            db,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_twopc_ext'"
        ),
        current_version()
    );
    assert_eq!(
        cluster.query(db, in_doubt),
        before,
        "in-doubt work survives"
    );
    cluster.query(
        db,
        &format!("SELECT twopc.commit_prepared('{to_commit}', 'coordinator')"),
    );
    cluster.query(db, &format!("ROLLBACK PREPARED '{to_abort}'"));
    assert_eq!(
        cluster.query(
            db,
            &format!(
                "SELECT twopc.outcome('{to_commit}') || ' ' || twopc.outcome('{to_abort}') \
                 || ' ' || twopc.outcome('{done}') || ' ' || twopc.outcome('{early}')"
            )
        ),
        "committed aborted committed aborted"
    );
    assert_eq!(
        cluster.query(
            db,
            "SELECT string_agg(gid || ' ' || decision || ' ' || via || ' ' \
             || coalesce(submitted_by, '-'), ', ' ORDER BY gid) FROM twopc.history"
        ),
        format!(
            "{done} commit manual -, {early} abort manual -, {to_abort} abort native -, \
             {to_commit} commit coordinator -"
        )
    );
    assert_eq!(
        cluster.query(
            db,
            "SELECT string_agg(bal::text, ',' ORDER BY id) FROM acct"
        ),
        "90,100,101"
    );
    // 0.2.0's additions work on the upgraded schema.
    assert_eq!(
        cluster.query(
            db,
            "SELECT tracking_rows || ' ' || finish_log_rows FROM twopc.stats()"
        ),
        "2 2"
    );
    // 0.3.0's: who submitted a transaction, committed and rolled back, through the new
    // run_and_prepare() overload (the Postgres participant's call).
    let role = format!("client_{c}");
    cluster.query(
        db,
        &format!("CREATE ROLE {role} NOLOGIN; GRANT ALL ON acct TO {role}"),
    );
    for (tx, decision) in [("named-commit", "COMMIT"), ("named-abort", "ROLLBACK")] {
        let gid = format!("twopc:{c}:{tx}");
        cluster.query(
            db,
            &format!(
                "BEGIN; SELECT twopc.run_and_prepare('{gid}', '{c}', '{tx}', '{role}', \
                 ARRAY['UPDATE acct SET bal = bal + 1 WHERE id = 1'], ARRAY[0], '{{}}', \
                 'payments'); {decision} PREPARED '{gid}'"
            ),
        );
    }
    assert_eq!(
        cluster.query(
            db,
            "SELECT string_agg(global_id || ' ' || decision || ' ' || submitted_by, ', ' \
             ORDER BY global_id) FROM twopc.history WHERE submitted_by IS NOT NULL"
        ),
        "named-abort abort payments, named-commit commit payments"
    );

    // The upgraded schema is exactly a fresh install's.
    let upgraded = cluster.query(db, DESCRIBE_SCHEMA);
    assert_eq!(
        upgraded,
        fresh,
        "upgraded from {from} vs fresh schema:\n{}",
        line_diff(fresh, &upgraded)
    );
}
