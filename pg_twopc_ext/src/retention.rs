//! Bounded growth without a cron job: the retention worker.
//!
//! Every tracked transaction leaves a tracking row, and rollbacks and untracked commits a
//! finish-log row; nothing else ever removes them (Citus users found the same with a 753 GB
//! `pg_dist_transaction`). With `shared_preload_libraries = 'pg_twopc_ext'` the postmaster
//! starts one more background worker, which connects to `twopc.database` and, every
//! [`NAPTIME`], calls `twopc.purge(twopc.history_retention, BATCH)` in a transaction of its
//! own until a round deletes less than a batch: many short transactions, each holding its row
//! locks and WAL for milliseconds, so that commits never wait behind a purge. In-doubt work is
//! never touched (see `twopc.purge()` in the extension script). `twopc.history_retention = 0`
//! keeps everything; a database without the extension is skipped (it is looked for again
//! every round, so `CREATE EXTENSION` later is picked up).
//!
//! GUCs: `twopc.history_retention` (seconds, default 3 days, reloadable).

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::time::Duration;

/// Three days.
const DEFAULT_RETENTION_SECONDS: i32 = 3 * 24 * 3600;
/// Rows per table per purge transaction.
const BATCH: i32 = 1000;
/// Pause between purge rounds.
const NAPTIME: Duration = Duration::from_secs(10);

static HISTORY_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_RETENTION_SECONDS);

/// Defines the GUC and registers the worker; called from `_PG_init` while preloading only.
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
    BackgroundWorkerBuilder::new("twopc retention")
        .set_type("twopc retention")
        .set_function("twopc_retention_main")
        .set_library("pg_twopc_ext")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// The worker's entry point (registered by name in [`init`]).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn twopc_retention_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = crate::worker::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    while BackgroundWorker::wait_latch(Some(NAPTIME)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the main thread of a background worker, between transactions.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let retention = HISTORY_RETENTION.get();
        if retention == 0 {
            continue;
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
