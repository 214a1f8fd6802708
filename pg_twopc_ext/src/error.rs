//! The one error type of the extension.
//!
//! Every refusal the SQL functions make is a variant here, with its SQLSTATE, so that the
//! wrappers in [`crate::sql_api`] stay one line long and so that every misuse ends as a plain
//! `ERROR` (never a `FATAL`, never a half-prepared transaction). Errors raised by PostgreSQL
//! itself while we call into it (unknown gid, permission denied, another database) are not
//! wrapped: they already are clean SQL errors with the native wording, which is what an
//! operator who knows `COMMIT PREPARED` expects to see.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::fmt;

/// Everything the extension refuses, with enough context for a useful message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwopcError {
    /// `twopc.prepare()` outside `BEGIN ... ` (PostgreSQL would only warn and commit).
    NotInTransactionBlock,
    /// `twopc.prepare()` inside a savepoint or a plpgsql `EXCEPTION` block.
    InSubtransaction,
    /// `twopc.prepare()` called a second time in the same transaction.
    AlreadyPreparing {
        /// The gid the first call used.
        gid: String,
    },
    /// A statement after `twopc.prepare()` in the same transaction (same query string or
    /// pipeline). Raised by the guard hooks.
    StatementAfterPrepare {
        /// The gid being prepared.
        gid: String,
    },
    /// `max_prepared_transactions = 0`: PREPARE TRANSACTION is disabled on this server.
    PreparedTransactionsDisabled,
    /// The transaction used temporary objects, which cannot be prepared.
    TouchedTemporaryObjects,
    /// The gid is empty.
    EmptyGid,
    /// The gid is longer than PostgreSQL's limit of 199 bytes.
    GidTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A prepared transaction with this gid exists already (in any database).
    GidInUse {
        /// The gid.
        gid: String,
    },
    /// A transaction prepared through `twopc.prepare()` under this gid committed before, so
    /// reusing it would make `twopc.outcome()` ambiguous.
    GidAlreadyCommitted {
        /// The gid.
        gid: String,
    },
    /// The explicit coordinator / global id contradicts what the twopc-format gid encodes.
    GidMismatch {
        /// Which argument (`coordinator` or `global_id`).
        field: &'static str,
        /// The value given.
        given: String,
        /// The value the gid encodes.
        encoded: String,
    },
    /// `via` is not one of `coordinator`, `manual`, `resolver`.
    InvalidVia {
        /// The value given.
        via: String,
    },
    /// A decision that is not `commit` or `abort`.
    InvalidDecision {
        /// The value given.
        decision: String,
    },
    /// `twopc.record_decision()` with a decision other than the one already recorded.
    ConflictingDecision {
        /// The gid.
        gid: String,
        /// The decision on record.
        recorded: String,
        /// The decision now given.
        given: String,
    },
    /// PostgreSQL did not put the transaction block into the PREPARE state.
    PrepareRefused {
        /// The gid.
        gid: String,
    },
    /// An object of the extension (table, index) is missing: the extension is broken or is
    /// being dropped.
    MissingObject {
        /// Its name.
        name: String,
    },
    /// Someone added an index to one of the extension's tables that the functions (writing
    /// below SQL) cannot maintain: an expression or partial index, or one on the columns the
    /// commit stamp overwrites in place.
    UnsupportedIndex {
        /// The table.
        table: String,
        /// The index.
        index: String,
    },
    /// A writing function of the extension was called from a client's statements.
    ClientMode {
        /// The function.
        what: String,
    },
    /// A client statement is of a kind refused behind the trust boundary.
    ClientStatement {
        /// What kind.
        what: String,
    },
    /// A client statement tried to end or split the transaction.
    ClientTransactionControl,
    /// Client statements changed a setting beyond the transaction.
    SessionSetting {
        /// The setting.
        name: String,
    },
    /// The role client statements are to run as is not usable.
    ClientRole {
        /// Why.
        detail: String,
    },
    /// The `submitted_by` given to `twopc.run_and_prepare()` is empty, too long or holds
    /// control characters.
    BadSubmitter {
        /// How.
        detail: &'static str,
    },
    /// The statement arrays given to `twopc.run_and_prepare()` do not fit together.
    BadStatementList {
        /// How.
        detail: String,
    },
    /// A statement got a different number of parameters than its query has.
    ParameterCount {
        /// Parameters given.
        given: usize,
        /// Placeholders in the query.
        required: usize,
    },
    /// The type of a placeholder cannot be inferred from its query.
    ParameterType {
        /// Its number (`$n`).
        index: usize,
    },
    /// A statement is not exactly one SQL command.
    NotOneCommand {
        /// How many it holds.
        commands: i32,
    },
    /// An SPI query of the extension failed.
    Spi {
        /// What failed.
        detail: String,
    },
}

impl TwopcError {
    /// The SQLSTATE of this error.
    pub fn code(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            TwopcError::NotInTransactionBlock => ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            TwopcError::InSubtransaction
            | TwopcError::AlreadyPreparing { .. }
            | TwopcError::StatementAfterPrepare { .. }
            | TwopcError::PrepareRefused { .. } => ERRCODE_INVALID_TRANSACTION_STATE,
            TwopcError::PreparedTransactionsDisabled => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            TwopcError::TouchedTemporaryObjects => ERRCODE_FEATURE_NOT_SUPPORTED,
            TwopcError::EmptyGid
            | TwopcError::GidTooLong { .. }
            | TwopcError::GidMismatch { .. }
            | TwopcError::InvalidVia { .. }
            | TwopcError::InvalidDecision { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            TwopcError::GidInUse { .. } | TwopcError::GidAlreadyCommitted { .. } => {
                ERRCODE_DUPLICATE_OBJECT
            }
            TwopcError::ConflictingDecision { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            TwopcError::MissingObject { .. } => ERRCODE_UNDEFINED_OBJECT,
            TwopcError::UnsupportedIndex { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
            TwopcError::ClientMode { .. }
            | TwopcError::ClientStatement { .. }
            | TwopcError::SessionSetting { .. }
            | TwopcError::ClientRole { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            TwopcError::ClientTransactionControl => ERRCODE_INVALID_TRANSACTION_TERMINATION,
            TwopcError::BadStatementList { .. } | TwopcError::BadSubmitter { .. } => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            TwopcError::ParameterCount { .. } => ERRCODE_PROTOCOL_VIOLATION,
            TwopcError::ParameterType { .. } => ERRCODE_INDETERMINATE_DATATYPE,
            TwopcError::NotOneCommand { .. } => ERRCODE_SYNTAX_ERROR,
            TwopcError::Spi { .. } => ERRCODE_INTERNAL_ERROR,
        }
    }

    /// A hint for the operator, where there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            TwopcError::NotInTransactionBlock => {
                Some("Call it as the last statement of a BEGIN ... block.")
            }
            TwopcError::InSubtransaction => Some(
                "Release or roll back to the savepoint first; twopc.prepare() cannot run inside a plpgsql EXCEPTION block.",
            ),
            TwopcError::StatementAfterPrepare { .. } => Some(
                "Send twopc.prepare() as the last statement of its query string; the transaction has been rolled back.",
            ),
            TwopcError::PreparedTransactionsDisabled => {
                Some("Set max_prepared_transactions to a nonzero value and restart the server.")
            }
            TwopcError::GidAlreadyCommitted { .. } => {
                Some("Use a new gid, or purge old tracking rows with twopc.forget().")
            }
            TwopcError::ClientTransactionControl => Some(
                "The coordinator decides how a participant transaction ends; send only the statements of its work.",
            ),
            TwopcError::SessionSetting { .. } => Some(
                "Use SET LOCAL or set_config(name, value, true): a participant transaction may not change its pooled session.",
            ),
            TwopcError::UnsupportedIndex { .. } => {
                Some("Drop that index; only plain-column indexes on columns other than finished_* are supported there.")
            }
            _ => None,
        }
    }

    /// Raises this error as a PostgreSQL `ERROR`; does not return.
    #[track_caller]
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code(), self.to_string(), "pg_twopc_ext");
        if let Some(h) = self.hint() {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }
}

impl fmt::Display for TwopcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TwopcError::NotInTransactionBlock => {
                write!(f, "twopc.prepare() can only be used in a transaction block")
            }
            TwopcError::InSubtransaction => write!(
                f,
                "twopc.prepare() cannot be used inside a subtransaction (savepoint or EXCEPTION block)"
            ),
            TwopcError::AlreadyPreparing { gid } => write!(
                f,
                "twopc.prepare() was already called in this transaction (gid \"{gid}\")"
            ),
            TwopcError::StatementAfterPrepare { gid } => write!(
                f,
                "twopc.prepare() must be the last statement of the transaction (preparing gid \"{gid}\")"
            ),
            TwopcError::PreparedTransactionsDisabled => {
                write!(f, "prepared transactions are disabled")
            }
            TwopcError::TouchedTemporaryObjects => write!(
                f,
                "cannot prepare a transaction that has operated on temporary objects"
            ),
            TwopcError::EmptyGid => write!(f, "gid must not be empty"),
            TwopcError::GidTooLong { len } => write!(
                f,
                "gid is too long ({len} bytes; at most {} allowed)",
                twopc_protocol::gid::PG_MAX_GID_LEN
            ),
            TwopcError::GidInUse { gid } => {
                write!(f, "transaction identifier \"{gid}\" is already in use")
            }
            TwopcError::GidAlreadyCommitted { gid } => write!(
                f,
                "transaction identifier \"{gid}\" was already used by a committed transaction"
            ),
            TwopcError::GidMismatch {
                field,
                given,
                encoded,
            } => write!(
                f,
                "{field} \"{given}\" contradicts the gid, which encodes \"{encoded}\""
            ),
            TwopcError::InvalidVia { via } => write!(
                f,
                "invalid via \"{via}\": expected 'coordinator', 'manual' or 'resolver'"
            ),
            TwopcError::InvalidDecision { decision } => write!(
                f,
                "invalid decision \"{decision}\": expected 'commit' or 'abort'"
            ),
            TwopcError::ConflictingDecision {
                gid,
                recorded,
                given,
            } => write!(
                f,
                "decision \"{given}\" for \"{gid}\" conflicts with the recorded decision \"{recorded}\""
            ),
            TwopcError::PrepareRefused { gid } => {
                write!(f, "could not prepare transaction \"{gid}\"")
            }
            TwopcError::MissingObject { name } => {
                write!(f, "pg_twopc_ext object {name} is missing")
            }
            TwopcError::UnsupportedIndex { table, index } => write!(
                f,
                "index \"{index}\" on {table} cannot be maintained by pg_twopc_ext (an expression or partial index, or one on the finished_* columns, which are stamped in place)"
            ),
            TwopcError::ClientMode { what } => write!(
                f,
                "{what} cannot be called from a client statement of a participant transaction"
            ),
            TwopcError::ClientStatement { what } => {
                write!(f, "{what} is not allowed in a participant transaction")
            }
            TwopcError::ClientTransactionControl => write!(
                f,
                "transaction control (COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION, ...) is not allowed in a participant transaction"
            ),
            TwopcError::SessionSetting { name } => write!(
                f,
                "setting \"{name}\" was changed for the session; a participant transaction may only change settings for itself"
            ),
            TwopcError::ClientRole { detail } => write!(f, "client role: {detail}"),
            TwopcError::BadSubmitter { detail } => write!(f, "invalid submitted_by: {detail}"),
            TwopcError::BadStatementList { detail } => {
                write!(f, "invalid statement list: {detail}")
            }
            TwopcError::ParameterCount { given, required } => write!(
                f,
                "the statement supplies {given} parameters, but its query requires {required}"
            ),
            TwopcError::ParameterType { index } => {
                write!(f, "could not determine data type of parameter ${index}")
            }
            TwopcError::NotOneCommand { commands } => write!(
                f,
                "a statement must be exactly one SQL command (this one has {commands})"
            ),
            TwopcError::Spi { detail } => write!(f, "pg_twopc_ext internal query failed: {detail}"),
        }
    }
}

impl std::error::Error for TwopcError {}

/// Result of the extension's core functions.
pub type Result<T> = std::result::Result<T, TwopcError>;
