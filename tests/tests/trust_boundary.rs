//! A client's SQL must never break atomicity, end to end: every way found to get transaction
//! control, the extension's writing functions or session state past the participant, sent as
//! an ordinary `POST /v1/transactions` body to a real coordinator, Postgres participant and
//! Redis participant, plus variants of each class and a fuzz of statement text built from SQL
//! fragments. Each hostile statement rides in a real transfer (both stores), so a statement
//! that ended or split the Postgres transaction shows up as a balance that differs between the
//! stores.
//!
//! After each case: nothing is prepared that the coordinator does not know, the next ordinary
//! transfer runs in a clean session (its first statement divides by zero unless every setting,
//! the role, advisory locks and prepared statements are as the participant left them) and
//! commits, and at the end both stores agree with what every client was told (the invariant
//! checker).

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use twopc_tests::fault_proxy::SplitMix;
use twopc_tests::invariants::{Told, TxRecord};
use twopc_tests::reliability::{post_told_reason, print_summary, Rig, Row};
use twopc_tests::stack::{Binaries, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

fn fuzz_seed() -> u64 {
    std::env::var("TWOPC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201)
}

/// Fails (division by zero) unless the session is exactly as the participant keeps it: its
/// settings, the client role, no advisory lock and no SQL-level prepared statement left over.
const CLEAN_SESSION_PROBE: &str =
    "SELECT 1 / (current_setting('search_path') = '\"$user\", public' \
     AND current_setting('statement_timeout') = '10s' \
     AND current_setting('lock_timeout') = '1s' \
     AND current_setting('synchronous_commit') = 'off' \
     AND current_setting('default_transaction_read_only') = 'off' \
     AND current_setting('default_transaction_isolation') = 'read committed' \
     AND current_user = 'app_client' \
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks \
                     WHERE locktype = 'advisory' AND pid = pg_backend_pid()) \
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql))::int";

/// A transfer of 1 from account 1 to 2 in both stores, with `extra` statements after the
/// Postgres debit and credit.
fn transfer_with(id: &str, extra: &[Value]) -> Value {
    let mut sql = vec![
        json!({"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"}),
        json!({"query": "UPDATE accounts SET balance = balance + 1 WHERE id = 2"}),
    ];
    sql.extend(extra.iter().cloned());
    json!({
        "id": id,
        "participants": {
            "bank": {"sql": sql},
            "ledger": {"redis": [
                {"op": "incrby", "key": "balance:1", "by": -1},
                {"op": "incrby", "key": "balance:2", "by": 1},
            ]},
        }
    })
}

fn q(text: &str) -> Value {
    json!({ "query": text })
}

/// The hostile cases: (name, extra statements).
fn cases() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        // 1. Transaction control through the old first-keyword filter.
        (
            "nested comment hides COMMIT",
            vec![q("/* /* */ SELECT */ COMMIT")],
        ),
        (
            "\\r ends a line comment: ROLLBACK",
            vec![q("-- x\rROLLBACK /*\nSELECT */")],
        ),
        (
            "\\r ends a line comment: SAVEPOINT",
            vec![q("-- x\rSAVEPOINT s /*\nSELECT */")],
        ),
        ("PREPARE TRANSACTION", vec![q("PREPARE TRANSACTION 'evil'")]),
        (
            "COMMIT after a dollar-quoted string",
            vec![q("SELECT $x$ ; $x$; COMMIT")],
        ),
        (
            "COMMIT after an E'' string",
            vec![q("SELECT E'\\' ;'; COMMIT")],
        ),
        (
            "CALL of a procedure that commits",
            vec![q("CALL public.commits()")],
        ),
        (
            "DO block that rolls back",
            vec![q("DO $$ BEGIN ROLLBACK; END $$")],
        ),
        (
            "EXECUTE of COMMIT in dynamic SQL",
            vec![q("SELECT public.runs('COMMIT')")],
        ),
        // 2. The extension's writing functions.
        ("twopc.prepare()", vec![q("SELECT twopc.prepare('evil')")]),
        (
            "twopc.prepare() of another client's gid",
            vec![q("SELECT twopc.prepare('twopc:c1:victim1')")],
        ),
        (
            "twopc.rollback_prepared()",
            vec![q(
                "SELECT twopc.rollback_prepared('twopc:c1:victim3', 'coordinator')",
            )],
        ),
        (
            "twopc.record_decision()",
            vec![q("SELECT twopc.record_decision('twopc:c1:zzz', 'commit')")],
        ),
        (
            "twopc.prepare() through dynamic SQL",
            vec![q("SELECT public.runs('SELECT twopc.prepare(''evil2'')')")],
        ),
        ("twopc.forget()", vec![q("SELECT twopc.forget('0')")]),
        // 3. Session state.
        ("SET search_path", vec![q("SET search_path = pg_catalog")]),
        (
            "SET statement_timeout",
            vec![q("SET statement_timeout = 0")],
        ),
        ("SET lock_timeout", vec![q("SET lock_timeout = 0")]),
        ("RESET ALL", vec![q("RESET ALL")]),
        (
            "SET default_transaction_isolation",
            vec![q("SET default_transaction_isolation = 'serializable'")],
        ),
        (
            "SET default_transaction_read_only",
            vec![q("SET default_transaction_read_only = on")],
        ),
        (
            "Unicode-escaped SET",
            vec![q("SET U&\"default\\0074ransaction_read_only\" = on")],
        ),
        (
            "set_config(..., false)",
            vec![q("SELECT set_config('statement_timeout', '0', false)")],
        ),
        (
            "set_config through dynamic SQL",
            vec![q(
                "SELECT public.runs('SELECT set_config(''lock_timeout'', ''0'', false)')",
            )],
        ),
        ("SET ROLE", vec![q("SET ROLE app")]),
        ("RESET ROLE", vec![q("RESET ROLE")]),
        (
            "session advisory lock",
            vec![q("SELECT pg_advisory_lock(7)")],
        ),
        ("DEALLOCATE ALL", vec![q("DEALLOCATE ALL")]),
        (
            "PREPARE / EXECUTE",
            vec![q("PREPARE p AS SELECT 1"), q("EXECUTE p")],
        ),
        (
            "EXECUTE of the participant's statement",
            vec![q("EXECUTE s0")],
        ),
        ("DISCARD ALL", vec![q("DISCARD ALL")]),
        ("LISTEN", vec![q("LISTEN x")]),
        ("temporary table", vec![q("CREATE TEMP TABLE t (i int)")]),
        // 4. Errors raised on the client side of the connection.
        (
            "too few parameters",
            vec![json!({"query": "SELECT $1, $2", "params": [1]})],
        ),
        (
            "too many parameters",
            vec![json!({"query": "SELECT 1", "params": [1]})],
        ),
        ("COPY TO STDOUT", vec![q("COPY accounts TO STDOUT")]),
        (
            "two commands in one statement",
            vec![q("SELECT 1; SELECT 2")],
        ),
        ("empty statement", vec![q(" -- nothing\n")]),
    ]
}

/// Runs one transfer with the clean-session probe first; it must commit.
async fn probe(rig: &mut Rig, url: &str, after: &str) -> Result<(), String> {
    let id = rig.next_txid();
    let mut body = transfer_with(&id, &[]);
    body["participants"]["bank"]["sql"]
        .as_array_mut()
        .unwrap()
        .insert(0, q(CLEAN_SESSION_PROBE));
    let (told, reason) = post_told_reason(&rig.http, url, &body).await;
    rig.txs.push(TxRecord::transfer(id, told, 1, 2, 1));
    if told == Told::Committed {
        Ok(())
    } else {
        Err(format!(
            "after {after}: the next transfer was {told:?} ({reason:?})"
        ))
    }
}

/// Accounts 1 and 2 (the ones every case moves) hold the same balance in both stores.
fn stores_agree(rig: &Rig) -> Result<(), String> {
    let pg = rig.stack.pg_balances().map_err(|e| e.to_string())?;
    let mut con = redis::Client::open(rig.stack.redis.url())
        .and_then(|c| c.get_connection())
        .map_err(|e| e.to_string())?;
    for id in [1u32, 2] {
        let p = pg.iter().find(|(a, _)| *a == id).map(|(_, b)| *b);
        let r: Option<i64> = redis::cmd("GET")
            .arg(format!("balance:{id}"))
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if p != r {
            return Err(format!("account {id}: postgres {p:?}, redis {r:?}"));
        }
    }
    Ok(())
}

/// Prepared transactions in Postgres that no client transaction of this test owns.
fn foreign_prepared(rig: &Rig) -> String {
    rig.stack
        .pg
        .psql_ok(
            "bank",
            "SELECT coalesce(string_agg(gid, ','), '') FROM pg_prepared_xacts \
             WHERE gid NOT LIKE 'twopc:c1:tb-%'",
        )
        .unwrap_or_else(|e| format!("<{e}>"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sql_cannot_break_atomicity() {
    let t_all = Instant::now();
    let mut rig = Rig::start(
        bins(),
        StackOptions {
            accounts: 4,
            initial_balance: 1000,
            prepare_timeout_ms: 3000,
            ..StackOptions::default()
        },
        "tb",
    )
    .await;
    rig.stack
        .pg
        .psql_ok(
            "bank",
            "CREATE PROCEDURE public.commits() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
             CREATE FUNCTION public.runs(q text) RETURNS int LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; RETURN 1; END $$;",
        )
        .unwrap();
    let url = format!("{}/v1/transactions", rig.stack.coordinator_url);
    let mut rows = Vec::new();

    // Every hostile case, each followed by a probe transfer.
    let t0 = Instant::now();
    let mut bad = Vec::new();
    let all = cases();
    for (name, extra) in &all {
        let id = rig.next_txid();
        let (told, reason) = post_told_reason(&rig.http, &url, &transfer_with(&id, extra)).await;
        rig.txs.push(TxRecord::transfer(id.clone(), told, 1, 2, 1));
        if told == Told::Unknown {
            bad.push(format!("{name}: no final answer ({reason:?})"));
        }
        let foreign = foreign_prepared(&rig);
        if !foreign.is_empty() {
            bad.push(format!("{name}: left prepared {foreign}"));
        }
        // Wait for its own transaction to settle before comparing the stores.
        let (_, settle) = tokio::task::block_in_place(|| {
            twopc_tests::invariants::wait_settled(&rig.stack, Duration::from_secs(10))
        });
        if !settle.is_empty() {
            bad.push(format!("{name}: {settle:?}"));
        }
        if let Err(e) = tokio::task::block_in_place(|| stores_agree(&rig)) {
            bad.push(format!(
                "{name}: the stores disagree ({e}); client told {told:?}"
            ));
        }
        if let Err(e) = probe(&mut rig, &url, name).await {
            bad.push(e);
        }
    }
    rows.push(Row {
        name: "hostile statements: refused or harmless, clean session".into(),
        faults: 0,
        txs: all.len(),
        violations: bad.len(),
        ms: t0.elapsed().as_millis(),
        note: if bad.is_empty() {
            format!(
                "{} cases, each followed by a committed probe transfer",
                all.len()
            )
        } else {
            bad.join("; ")
        },
    });

    // A transaction id whose gid was pre-prepared by a client statement must not vote YES
    // without running its own statements: the pre-prepare was refused, so this one runs.
    let t0 = Instant::now();
    let body = transfer_with("victim1", &[]);
    let (told, reason) = post_told_reason(&rig.http, &url, &body).await;
    rig.txs.push(TxRecord::transfer("victim1", told, 1, 2, 1));
    rows.push(Row {
        name: "pre-claimed gid: the victim runs its own statements".into(),
        faults: 0,
        txs: 1,
        violations: usize::from(told != Told::Committed),
        ms: t0.elapsed().as_millis(),
        note: format!("{told:?} {reason:?}"),
    });

    // A statement that outlives the prepare timeout is cancelled, not waited for: the row
    // lock it holds is free again as soon as the client is told.
    let t0 = Instant::now();
    let id = rig.next_txid();
    let (told, reason) = post_told_reason(
        &rig.http,
        &url,
        &transfer_with(&id, &[q("SELECT pg_sleep(15)")]),
    )
    .await;
    rig.txs.push(TxRecord::transfer(id, told, 1, 2, 1));
    let told_after = t0.elapsed();
    let lock_free = rig
        .stack
        .pg
        .psql_ok(
            "bank",
            "SET lock_timeout = '1s'; SELECT id FROM accounts WHERE id = 1 FOR UPDATE",
        )
        .is_ok();
    let freed_after = t0.elapsed();
    let mut v = 0;
    if told != Told::Aborted {
        v += 1;
    }
    if !lock_free || freed_after > Duration::from_secs(8) {
        v += 1;
    }
    rows.push(Row {
        name: "pg_sleep(15) past the 3 s prepare timeout is cancelled".into(),
        faults: 0,
        txs: 1,
        violations: v,
        ms: t0.elapsed().as_millis(),
        note: format!(
            "told {told:?} after {told_after:?} ({reason:?}); row lock free: {lock_free} after {freed_after:?}"
        ),
    });
    if let Err(e) = probe(&mut rig, &url, "the cancelled statement").await {
        rows.last_mut().unwrap().violations += 1;
        rows.last_mut().unwrap().note.push_str(&format!("; {e}"));
    }

    // Fuzz: statement text built from SQL fragments.
    let t0 = Instant::now();
    let seed = fuzz_seed();
    let n = std::env::var("TWOPC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let mut rng = SplitMix(seed);
    let mut bad = Vec::new();
    let mut committed = 0;
    for i in 0..n {
        let text = fuzz_statement(&mut rng);
        let id = rig.next_txid();
        let (told, reason) =
            post_told_reason(&rig.http, &url, &transfer_with(&id, &[q(&text)])).await;
        rig.txs.push(TxRecord::transfer(id, told, 1, 2, 1));
        if told == Told::Unknown {
            bad.push(format!("case {i} {text:?}: no final answer ({reason:?})"));
        }
        if told == Told::Committed {
            committed += 1;
        }
        if i % 10 == 9 {
            let foreign = foreign_prepared(&rig);
            if !foreign.is_empty() {
                bad.push(format!("after case {i}: left prepared {foreign}"));
            }
            if let Err(e) = probe(&mut rig, &url, &format!("fuzz case {i} {text:?}")).await {
                bad.push(e);
            }
        }
    }
    rows.push(Row {
        name: format!("fuzzed statement text (seed {seed})"),
        faults: 0,
        txs: n,
        violations: bad.len(),
        ms: t0.elapsed().as_millis(),
        note: if bad.is_empty() {
            format!("{n} cases ({committed} committed), a probe transfer after every 10")
        } else {
            bad.join("; ")
        },
    });

    // Every transaction: atomic, and told the truth.
    let t0 = Instant::now();
    let report = rig.check().await;
    rows.push(Row {
        name: "invariants over every transaction".into(),
        faults: 0,
        txs: report.transactions,
        violations: report.violations.len(),
        ms: t0.elapsed().as_millis(),
        note: format!(
            "{} committed, {} aborted; {:?}",
            report.committed, report.aborted, report.violations
        ),
    });
    let foreign = foreign_prepared(&rig);
    rows.push(Row {
        name: "nothing prepared that the coordinator does not know".into(),
        faults: 0,
        txs: 0,
        violations: usize::from(!foreign.is_empty()),
        ms: 0,
        note: foreign,
    });
    let total = print_summary("trust boundary", &rows);
    println!("whole suite: {:?}", t_all.elapsed());
    assert_eq!(total, 0, "see the summary above");
}

/// One statement text from SQL fragments: comments (nested, unterminated, `\r`-ended),
/// quotes of every kind, transaction keywords, session-changing calls and `;`.
fn fuzz_statement(rng: &mut SplitMix) -> String {
    const FRAGMENTS: &[&str] = &[
        "SELECT 1",
        "SELECT ",
        "COMMIT",
        "ROLLBACK",
        "END",
        "ABORT",
        "SAVEPOINT s",
        "RELEASE s",
        "PREPARE TRANSACTION 'f'",
        "COMMIT PREPARED 'twopc:c1:tb-0'",
        "BEGIN",
        "START TRANSACTION",
        "SET search_path = x",
        "SET LOCAL lock_timeout = 100",
        "RESET ALL",
        "DISCARD ALL",
        "DEALLOCATE ALL",
        "set_config('statement_timeout', '0', false)",
        "pg_advisory_lock(3)",
        "twopc.prepare('f')",
        "twopc.record_decision('f', 'commit')",
        ";",
        "; ",
        "/*",
        "*/",
        "/* /* */",
        "-- c",
        "\r",
        "\n",
        "'",
        "''",
        "E'\\''",
        "$$",
        "$q$",
        "\"",
        "U&'\\0041'",
        " ",
        "(",
        ")",
        ",",
        "1",
    ];
    let len = 1 + rng.below(8) as usize;
    let mut s = String::new();
    for _ in 0..len {
        s.push_str(FRAGMENTS[rng.below(FRAGMENTS.len() as u64) as usize]);
        if rng.below(2) == 0 {
            s.push(' ');
        }
    }
    s
}
