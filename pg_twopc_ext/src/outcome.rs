//! What became of a gid: `twopc.outcome(gid)`.
//!
//! # Why it is correct after crashes and restarts
//!
//! Every piece of evidence used here is either PostgreSQL's own state or WAL-logged together
//! with the transaction it describes, so it survives `pg_ctl stop -m immediate`:
//!
//! 1. `pg_prepared_xacts` lists the gid for this database → `in_doubt` (prepared
//!    transactions are restored from WAL / state files by crash recovery).
//! 2. A committed tracking tuple with this gid → `committed`. It was written inside the
//!    prepared transaction and flushed by PREPARE; it can only be committed if that
//!    transaction committed (Citus-style commit marker).
//! 3. The latest `twopc.finish_log` row → its decision. This covers rollbacks and gids
//!    prepared natively (no tracking row) but finished through the functions. Those rows are
//!    written asynchronously (see [`crate::twophase`]), so they are not the only source.
//! 4. A dead tracking tuple whose xmin aborted, or never committed and is no longer running
//!    (the server crashed first) → `aborted`. This is presumed abort made explicit: it needs
//!    neither a finish_log row nor any extra write.
//! 5. A tracking tuple deleted by `twopc.forget()` but not yet vacuumed, committed → `committed`.
//! 6. Nothing → `unknown` (never prepared here, prepared in another database, or forgotten).
//!    Under presumed abort a coordinator treats `unknown` for its own gid as aborted.

use crate::error::{Result, TwopcError};
use crate::tracking::{self, XminStatus};
use crate::validate::{self, Decision};
use pgrx::prelude::*;

/// What became of one gid: the answer of `twopc.outcome()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GidOutcome {
    /// Prepared in this database and not finished.
    InDoubt,
    /// Committed.
    Committed,
    /// Rolled back, or never committed and presumed aborted.
    Aborted,
    /// No evidence either way.
    Unknown,
}

impl GidOutcome {
    /// SQL-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            GidOutcome::InDoubt => "in_doubt",
            GidOutcome::Committed => "committed",
            GidOutcome::Aborted => "aborted",
            GidOutcome::Unknown => "unknown",
        }
    }
}

fn spi_err(e: pgrx::spi::SpiError) -> TwopcError {
    TwopcError::Spi {
        detail: e.to_string(),
    }
}

/// `twopc.outcome(gid)`: see the module docs.
pub fn outcome(gid: Option<&str>) -> Result<GidOutcome> {
    let gid = gid.unwrap_or("");
    validate::check_gid(gid)?;
    let in_doubt = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts \
         WHERE gid OPERATOR(pg_catalog.=) $1 \
         AND database OPERATOR(pg_catalog.=) pg_catalog.current_database())",
        &[gid.into()],
    )
    .map_err(spi_err)?
    .unwrap_or(false);
    if in_doubt {
        return Ok(GidOutcome::InDoubt);
    }
    Ok(match settled(gid)? {
        Some(Decision::Commit) => GidOutcome::Committed,
        Some(Decision::Abort) => GidOutcome::Aborted,
        None => GidOutcome::Unknown,
    })
}

/// Points 2-5 of the module docs: what the tracking tuples and the history say about a gid
/// that is not in doubt, or `None` when they say nothing. Shared with
/// [`crate::twophase::gid_state`], which asks the same question on the participant's path.
pub fn settled(gid: &str) -> Result<Option<Decision>> {
    let tuples = tracking::scan(Some(gid), |_, st| {
        matches!(st, XminStatus::Committed | XminStatus::Aborted)
    })?;
    if tuples
        .iter()
        .any(|t| t.status == XminStatus::Committed && !t.deleted)
    {
        return Ok(Some(Decision::Commit));
    }
    match tracking::history_decision(gid)?.as_deref() {
        Some("commit") => return Ok(Some(Decision::Commit)),
        Some("abort") => return Ok(Some(Decision::Abort)),
        _ => {}
    }
    Ok(if tuples.iter().any(|t| t.status == XminStatus::Aborted) {
        Some(Decision::Abort)
    } else if tuples.iter().any(|t| t.status == XminStatus::Committed) {
        // Committed, then deleted by twopc.forget() but not yet vacuumed away.
        Some(Decision::Commit)
    } else {
        None
    })
}
