//! Bounded growth without a cron job: the retention workers.
//!
//! Every tracked transaction leaves a tracking row, and rollbacks and untracked commits a
//! finish-log row; nothing else ever removes them (Citus users found the same with a 753 GB
//! `pg_dist_transaction`). With `shared_preload_libraries = 'pg_twopc_ext'` the postmaster
//! starts one more background worker, the **launcher**, connected to no database (it reads
//! only the shared catalog `pg_database`). Every [`NAPTIME`], and at once after a
//! configuration reload, it checks that `twopc.database` exists and accepts connections, and
//! only then starts a short-lived **purge worker** connected to it, which calls
//! `twopc.purge(twopc.history_retention, BATCH)` in a transaction of its own until a round
//! deletes less than a batch, and exits: many short transactions, each holding its row locks
//! and WAL for milliseconds, so that commits never wait behind a purge. In-doubt work is never
//! touched (see `twopc.purge()` in the extension script). `twopc.history_retention = 0` keeps
//! everything; a database without the extension is skipped (it is looked for again every
//! round, so `CREATE EXTENSION` later is picked up).
//!
//! # Why two workers
//!
//! A background worker connects to one database, once, for its whole life, and connecting to
//! a database that does not exist (yet: `twopc.database` is usually created after the cluster
//! starts) ends the worker with a `FATAL` in the server log, again at every restart. Looking
//! first, from a process connected to no database, never does. A purge worker that lives for
//! one round also never holds a connection to the database between rounds, so `DROP
//! DATABASE` is not refused for "other sessions using the database" because of it. What is
//! left is a race the launcher cannot close: a database dropped between its look and the
//! purge worker's start still ends that one worker with a FATAL.
//!
//! GUCs: `twopc.history_retention` (seconds, default 3 days, reloadable).

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::CStr;
use std::time::Duration;

/// Three days.
const DEFAULT_RETENTION_SECONDS: i32 = 3 * 24 * 3600;
/// Rows per table per purge transaction.
const BATCH: i32 = 1000;
/// Pause between purge rounds.
const NAPTIME: Duration = Duration::from_secs(10);

static HISTORY_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_RETENTION_SECONDS);

/// Defines the GUC and registers the launcher; called from `_PG_init` while preloading only.
pub fn init() {
    GucRegistry::define_int_guc(
        c"twopc.history_retention",
        c"How long finished transactions are kept in twopc.tracking, twopc.finish_log and twopc.decisions (0: forever)",
        c"The retention worker purges older rows in small batches; in-doubt work is never purged.",
        &HISTORY_RETENTION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    BackgroundWorkerBuilder::new("twopc retention launcher")
        .set_type("twopc retention launcher")
        .set_function("twopc_retention_launcher_main")
        .set_library("pg_twopc_ext")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// What the launcher found when it looked for `twopc.database`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    /// It exists and accepts connections.
    Ready(pg_sys::Oid),
    /// No database of that name.
    Missing,
    /// It exists but a connection would be refused (`ALLOW_CONNECTIONS false`, or left
    /// invalid by an interrupted `DROP DATABASE`).
    Closed,
}

/// The launcher's entry point (registered by name in [`init`]).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn twopc_retention_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: only the shared catalogs, which is all the look needs.
    BackgroundWorker::connect_worker_to_spi(None, None);
    let name = crate::worker::database();
    let mut reported: Option<Database> = None;
    while BackgroundWorker::wait_latch(Some(NAPTIME)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the main thread of a background worker, between transactions.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if HISTORY_RETENTION.get() == 0 {
            continue;
        }
        let found = BackgroundWorker::transaction(|| look_up(&name));
        if reported != Some(found) {
            // Said once per change, not every round.
            match found {
                Database::Missing => log!(
                    "twopc retention: database \"{name}\" (twopc.database) does not exist; \
                     nothing is purged until it does"
                ),
                Database::Closed => log!(
                    "twopc retention: database \"{name}\" (twopc.database) does not accept \
                     connections; nothing is purged until it does"
                ),
                Database::Ready(_) if reported.is_some() => {
                    log!("twopc retention: database \"{name}\" is there now; purging")
                }
                Database::Ready(_) => {}
            }
            reported = Some(found);
        }
        if let Database::Ready(oid) = found {
            run_purge_worker(oid);
        }
    }
}

/// Looks `name` up in `pg_database` (a shared catalog, readable without a database).
fn look_up(name: &str) -> Database {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: inside a transaction (BackgroundWorker::transaction); a sequential catalog scan
    // of pg_database as the autovacuum launcher does it, each tuple read through the catalog's
    // own struct while the scan holds it.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut found = Database::Missing;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let db = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if CStr::from_ptr((*db).datname.data.as_ptr()).to_bytes() != name.as_bytes() {
                continue;
            }
            found = if (*db).datallowconn && (*db).datconnlimit != pg_sys::DATCONNLIMIT_INVALID_DB {
                Database::Ready((*db).oid)
            } else {
                Database::Closed
            };
            break;
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
        found
    }
}

/// Starts the purge worker for one round in database `oid` and waits until it is done. No
/// free worker slot (`max_worker_processes`) skips the round.
fn run_purge_worker(oid: pg_sys::Oid) {
    // SAFETY: reading this process's pid.
    let me = unsafe { pg_sys::MyProcPid };
    let started = BackgroundWorkerBuilder::new("twopc retention")
        .set_type("twopc retention")
        .set_function("twopc_retention_main")
        .set_library("pg_twopc_ext")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_argument(Some(pg_sys::Datum::from(oid)))
        .set_notify_pid(me)
        .load_dynamic();
    match started {
        Ok(worker) => {
            let _ = worker.wait_for_shutdown();
        }
        Err(_) => log!(
            "twopc retention: no background worker slot free (max_worker_processes); \
             the purge waits for the next round"
        ),
    }
}

/// The purge worker's entry point: one round in the database the launcher passed, then exit.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn twopc_retention_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // The launcher hands over the database's oid (the Datum holds it in its low 32 bits).
    let oid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(oid), None);
    let retention = HISTORY_RETENTION.get();
    if retention == 0 {
        return;
    }
    // One batch per transaction, until the backlog is gone or a shutdown is asked for.
    loop {
        let purged = BackgroundWorker::transaction(|| purge_batch(retention));
        match purged {
            Ok(n) if n >= i64::from(BATCH) && !BackgroundWorker::sigterm_received() => {}
            Ok(_) => break,
            Err(e) => {
                log!("twopc retention: {e}");
                break;
            }
        }
    }
}

/// One purge transaction: how many rows it deleted (0 without the extension).
fn purge_batch(retention_seconds: i32) -> Result<i64, pgrx::spi::SpiError> {
    let installed = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_twopc_ext')",
    )?
    .unwrap_or(false);
    if !installed {
        return Ok(0);
    }
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT twopc.purge(pg_catalog.make_interval(secs => $1), $2)",
        &[f64::from(retention_seconds).into(), BATCH.into()],
    )?
    .unwrap_or(0))
}
