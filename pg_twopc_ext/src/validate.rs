//! Argument checking that needs no database: gids, `via`, decisions, and the reconciliation of
//! an explicit coordinator / global id with what a twopc-format gid encodes.
//!
//! Kept free of `pg_sys` so that the rules are easy to read and to test.

use crate::error::{Result, TwopcError};
use twopc_protocol::gid::{parse_gid, PG_MAX_GID_LEN};

/// Checks a gid the way PREPARE TRANSACTION would, but up front and with our own messages.
pub fn check_gid(gid: &str) -> Result<()> {
    if gid.is_empty() {
        return Err(TwopcError::EmptyGid);
    }
    if gid.len() > PG_MAX_GID_LEN {
        return Err(TwopcError::GidTooLong { len: gid.len() });
    }
    Ok(())
}

/// The longest `submitted_by` recorded (a coordinator's client names are at most 64).
pub const MAX_SUBMITTER_LEN: usize = 128;

/// Checks who a transaction is recorded as submitted by: a name to show in the history, not
/// a place for arbitrary text.
pub fn check_submitter(name: &str) -> Result<()> {
    let detail = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_SUBMITTER_LEN {
        "it is longer than 128 bytes"
    } else if name.chars().any(char::is_control) {
        "it holds control characters"
    } else {
        return Ok(());
    };
    Err(TwopcError::BadSubmitter { detail })
}

/// Which path finished a prepared transaction (recorded in `twopc.history.via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The twopc coordinator's normal commit/abort path (through the Postgres participant).
    Coordinator,
    /// An operator, by hand.
    Manual,
    /// A recovery / resolver process finishing in-doubt work.
    Resolver,
    /// A native `COMMIT PREPARED` / `ROLLBACK PREPARED` statement (tracked by the
    /// `ProcessUtility` hook; never an argument of the functions).
    Native,
}

impl Via {
    /// Parses the SQL argument.
    pub fn parse(s: &str) -> Result<Via> {
        match s {
            "coordinator" => Ok(Via::Coordinator),
            "manual" => Ok(Via::Manual),
            "resolver" => Ok(Via::Resolver),
            other => Err(TwopcError::InvalidVia {
                via: other.to_owned(),
            }),
        }
    }

    /// The one-byte form stamped on a tracking row (`twopc.tracking.finished_via`; the
    /// `twopc.history` view spells it out again).
    pub fn code(self) -> u8 {
        match self {
            Via::Coordinator => b'c',
            Via::Manual => b'm',
            Via::Resolver => b'r',
            Via::Native => b'n',
        }
    }

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Coordinator => "coordinator",
            Via::Manual => "manual",
            Via::Resolver => "resolver",
            Via::Native => "native",
        }
    }
}

/// A commit/abort decision (coordinator decisions and history rows use the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Commit.
    Commit,
    /// Abort (roll back).
    Abort,
}

impl Decision {
    /// Parses the SQL argument.
    pub fn parse(s: &str) -> Result<Decision> {
        match s {
            "commit" => Ok(Decision::Commit),
            "abort" => Ok(Decision::Abort),
            other => Err(TwopcError::InvalidDecision {
                decision: other.to_owned(),
            }),
        }
    }

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "commit",
            Decision::Abort => "abort",
        }
    }
}

/// The (coordinator, global id) recorded for a prepare: explicit values win, a twopc-format gid
/// fills in what is missing, and explicit values that contradict the gid are an error.
pub fn reconcile_identity(
    gid: &str,
    coordinator: Option<&str>,
    global_id: Option<&str>,
) -> Result<(Option<String>, Option<String>)> {
    let Some((c, t)) = parse_gid(gid) else {
        return Ok((coordinator.map(str::to_owned), global_id.map(str::to_owned)));
    };
    if let Some(given) = coordinator {
        if given != c.as_str() {
            return Err(TwopcError::GidMismatch {
                field: "coordinator",
                given: given.to_owned(),
                encoded: c.as_str().to_owned(),
            });
        }
    }
    if let Some(given) = global_id {
        if given != t.as_str() {
            return Err(TwopcError::GidMismatch {
                field: "global_id",
                given: given.to_owned(),
                encoded: t.as_str().to_owned(),
            });
        }
    }
    Ok((Some(c.as_str().to_owned()), Some(t.as_str().to_owned())))
}

/// Coordinator id encoded in a twopc-format gid.
pub fn gid_coordinator(gid: &str) -> Option<String> {
    parse_gid(gid).map(|(c, _)| c.as_str().to_owned())
}

/// Global transaction id encoded in a twopc-format gid.
pub fn gid_global_id(gid: &str) -> Option<String> {
    parse_gid(gid).map(|(_, t)| t.as_str().to_owned())
}
