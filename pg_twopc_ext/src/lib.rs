//! pg_twopc_ext: the PostgreSQL half of twopc.
//!
//! `CREATE EXTENSION pg_twopc_ext` installs, in schema `twopc`, SQL functions that wrap
//! PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED with in-doubt tracking (see
//! README.md for the SQL surface, the design and the security model).
//!
//! # Layout
//!
//! * [`sql_api`]: the `#[pg_extern]` wrappers and the extension script (tables, views, grants).
//! * [`twophase`]: prepare / finish / record_decision.
//! * [`tracking`]: the tracking, history and decision tables below SQL (`SnapshotAny` scans,
//!   direct heap inserts).
//! * [`outcome`]: what `twopc.outcome(gid)` answers, and why.
//! * [`guard`]: hooks that keep `twopc.prepare()` the last statement of its transaction, and
//!   write its tracking row at PREPARE.
//! * [`native`]: tracking native PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED.
//! * [`retention`]: the worker that purges finished history past `twopc.history_retention`.
//! * [`boundary`]: the trust boundary around a client's statements (client mode, its hooks).
//! * [`client`]: running a client's statements behind it (`twopc.run_and_prepare()`).
//! * [`validate`]: argument rules that need no database.
//! * [`error`]: the crate's one error type.
//! * [`worker`]: the Postgres participant endpoint (a background worker, only with
//!   `shared_preload_libraries`).
//! * [`participant_log`]: the endpoint's warnings, from its tokio threads into the server log.

use pgrx::prelude::*;

pub mod boundary;
pub mod client;
pub mod error;
pub mod guard;
pub mod native;
pub mod outcome;
pub mod participant_log;
pub mod retention;
pub mod sql_api;
pub mod tracking;
pub mod twophase;
pub mod validate;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

/// Library load: installs the statement guard hooks (per backend; no preloading needed, the
/// library is loaded before `twopc.prepare()` can run).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx captures a backtrace for every PostgreSQL error that crosses a Rust frame (a DO
    // block's error passing through the ProcessUtility hook, say) and, when RUST_BACKTRACE is
    // set in the server's environment, appends it to the error's DETAIL: Rust internals and
    // source paths in what a client reads. std reads RUST_LIB_BACKTRACE before RUST_BACKTRACE
    // (and only once per process), so this turns those captures off here and, set in the
    // postmaster while preloading, in every backend it forks.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    guard::install();
    boundary::install();
    // SAFETY: reading a postmaster global during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        native::init();
        retention::init();
    }
    // Only acts while shared_preload_libraries is processed: its GUCs are PGC_POSTMASTER, and
    // defining those when the library is loaded later (CREATE EXTENSION, a function call) is a
    // FATAL in PostgreSQL.
    worker::init();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::error::TwopcError;
    use crate::validate::{self, Decision, Via};
    use pgrx::prelude::*;

    #[pg_test]
    fn reports_protocol_version() {
        let v = Spi::get_one::<i32>("SELECT twopc.protocol_version()").unwrap();
        assert_eq!(v, Some(twopc_protocol::PROTOCOL_VERSION as i32));
    }

    #[pg_test]
    fn gid_rules() {
        assert_eq!(validate::check_gid(""), Err(TwopcError::EmptyGid));
        assert!(validate::check_gid(&"x".repeat(199)).is_ok());
        assert_eq!(
            validate::check_gid(&"x".repeat(200)),
            Err(TwopcError::GidTooLong { len: 200 })
        );
    }

    #[pg_test]
    fn via_and_decision_parse() {
        assert_eq!(Via::parse("coordinator"), Ok(Via::Coordinator));
        assert_eq!(Via::parse("manual").map(Via::as_str), Ok("manual"));
        assert_eq!(Via::parse("resolver"), Ok(Via::Resolver));
        assert!(matches!(
            Via::parse("robot"),
            Err(TwopcError::InvalidVia { .. })
        ));
        assert_eq!(Decision::parse("commit"), Ok(Decision::Commit));
        assert_eq!(Decision::parse("abort").map(Decision::as_str), Ok("abort"));
        assert!(Decision::parse("rollback").is_err());
    }

    #[pg_test]
    fn identity_is_filled_from_twopc_gids() {
        assert_eq!(
            validate::reconcile_identity("twopc:c1:tx1", None, None),
            Ok((Some("c1".into()), Some("tx1".into())))
        );
        assert_eq!(
            validate::reconcile_identity("twopc:c1:tx1", Some("c1"), Some("tx1")),
            Ok((Some("c1".into()), Some("tx1".into())))
        );
        assert!(matches!(
            validate::reconcile_identity("twopc:c1:tx1", Some("c2"), None),
            Err(TwopcError::GidMismatch {
                field: "coordinator",
                ..
            })
        ));
        assert!(matches!(
            validate::reconcile_identity("twopc:c1:tx1", None, Some("tx2")),
            Err(TwopcError::GidMismatch {
                field: "global_id",
                ..
            })
        ));
        assert_eq!(
            validate::reconcile_identity("plain", Some("c9"), None),
            Ok((Some("c9".into()), None))
        );
    }

    #[pg_test]
    fn gid_parsing_functions() {
        let c = Spi::get_one::<String>("SELECT twopc.gid_coordinator('twopc:c1:tx-1')").unwrap();
        assert_eq!(c.as_deref(), Some("c1"));
        let t = Spi::get_one::<String>("SELECT twopc.gid_global_id('twopc:c1:tx-1')").unwrap();
        assert_eq!(t.as_deref(), Some("tx-1"));
        let n = Spi::get_one::<String>("SELECT twopc.gid_global_id('native')").unwrap();
        assert_eq!(n, None);
    }

    // Each #[pg_test] runs inside BEGIN ... ROLLBACK (a transaction block), so prepare()'s
    // refusals that need no prepare at all can be tested here; full flows are in
    // tests/tests/extension_sql.rs.
    #[pg_test(error = "gid must not be empty")]
    fn prepare_refuses_empty_gid() {
        Spi::run("SELECT twopc.prepare('')").unwrap();
    }

    // Refused by PREPARE itself, in its own words, when the statement ends (the block is
    // marked for PREPARE first, so the refusal ends the transaction as PREPARE TRANSACTION's).
    #[pg_test(
        error = "transaction identifier \"gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg\" is too long"
    )]
    fn prepare_refuses_long_gid() {
        Spi::run(&format!("SELECT twopc.prepare('{}')", "g".repeat(200))).unwrap();
    }

    #[pg_test(error = "coordinator \"c2\" contradicts the gid, which encodes \"c1\"")]
    fn prepare_refuses_contradicting_coordinator() {
        Spi::run("SELECT twopc.prepare('twopc:c1:t1', 'c2')").unwrap();
    }

    #[pg_test(error = "cannot PREPARE a transaction that has operated on temporary objects")]
    fn prepare_refuses_temp_objects() {
        Spi::run("CREATE TEMP TABLE tmp_x (i int)").unwrap();
        Spi::run("SELECT twopc.prepare('g-temp')").unwrap();
    }

    #[pg_test(error = "twopc.commit_prepared() cannot run inside a transaction block")]
    fn commit_prepared_refuses_transaction_block() {
        Spi::run("SELECT twopc.commit_prepared('nope')").unwrap();
    }

    #[pg_test(error = "invalid via \"robot\": expected 'coordinator', 'manual' or 'resolver'")]
    fn finish_validates_via() {
        Spi::run("SELECT twopc.rollback_prepared('nope', 'robot')").unwrap();
    }

    #[pg_test]
    fn outcome_of_unknown_gid() {
        let o = Spi::get_one::<String>("SELECT twopc.outcome('never-seen')").unwrap();
        assert_eq!(o.as_deref(), Some("unknown"));
    }

    #[pg_test]
    fn record_decision_is_idempotent_and_rejects_conflicts() {
        Spi::run("SELECT twopc.record_decision('d1', 'commit')").unwrap();
        Spi::run("SELECT twopc.record_decision('d1', 'commit')").unwrap();
        let n =
            Spi::get_one::<i64>("SELECT count(*) FROM twopc.decisions WHERE gid = 'd1'").unwrap();
        assert_eq!(n, Some(1));
        let r = std::panic::catch_unwind(|| {
            crate::twophase::record_decision(Some("d1"), Some("abort"))
        });
        assert!(matches!(r, Ok(Err(TwopcError::ConflictingDecision { .. }))));
    }

    #[pg_test]
    fn views_have_the_documented_shape() {
        let cols = Spi::get_one::<String>(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'twopc.in_doubt'::regclass AND attnum > 0",
        )
        .unwrap();
        assert_eq!(
            cols.as_deref(),
            Some("gid,global_id,coordinator,prepared_at,age,database,owner,decision,prepared_by,xid,tracked")
        );
        let cols = Spi::get_one::<String>(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'twopc.history'::regclass AND attnum > 0",
        )
        .unwrap();
        assert_eq!(
            cols.as_deref(),
            Some("gid,global_id,coordinator,decision,finished_at,finished_by,via,submitted_by")
        );
        let n = Spi::get_one::<i64>("SELECT in_doubt FROM twopc.stats()").unwrap();
        assert_eq!(n, Some(0));
    }

    #[pg_test]
    fn tracking_scan_sees_own_uncommitted_row_as_current() {
        crate::tracking::insert_tracking("scan-me", Some("g"), Some("c")).unwrap();
        let found = crate::tracking::scan(Some("scan-me"), |_, _| true).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].status, crate::tracking::XminStatus::Current);
        assert_eq!(found[0].global_id.as_deref(), Some("g"));
        // Not prepared: not in doubt.
        let n = Spi::get_one::<i64>("SELECT count(*) FROM twopc.tracking_in_doubt()").unwrap();
        assert_eq!(n, Some(0));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["max_prepared_transactions = 16"]
    }
}
