//! The coordinator's durable decision log.
//!
//! Two-phase commit needs exactly one durable fact from the coordinator: *this transaction was
//! decided COMMIT*. Everything else can be reconstructed or presumed. This module stores that
//! fact (and a little bookkeeping around it) behind the [`DecisionLog`] trait, with two
//! implementations: [`FileLog`], the embedded default that lives in a data directory,
//! [`PgLog`], the log in a (replicated) PostgreSQL database that several coordinators share,
//! and [`MemLog`], an in-memory log for deterministic tests of the protocol core.
//!
//! # Records and presumed abort
//!
//! A [`LogRecord`] is one of
//!
//! * `Commit { txid, participants, body_hash, at_ms, client }`: the COMMIT decision. It is **forced**:
//!   the coordinator calls [`DecisionLog::append_durable`] and sends no Commit message before
//!   the returned [`Receipt`] resolves, i.e. before the record has been fsynced. If the
//!   coordinator crashes after that, recovery finds the record and commits again; if it crashes
//!   before, no participant can have heard "commit", so aborting is safe.
//! * `Abort { txid, body_hash, reason, at_ms, client }`: the ABORT decision. No participant
//!   waits for it: that is the *presumed abort* rule, a transaction the log does not know is
//!   answered "abort" to a participant, so Abort messages go out before the record is written.
//!   The record is for the client: it is forced ([`DecisionLog::append_durable`], sharing the
//!   group commit) and the client hears "aborted" only once it is durable, so that
//!   `GET /v1/transactions/{id}` and a resubmission of the id answer the same after a crash or
//!   a takeover (a lost record would let a resubmission run the transaction again).
//! * `End { txid }`: every participant acknowledged the decision; the transaction needs no more
//!   work. Also lazy: if it is lost, recovery sends Commit once more and the participants,
//!   which are idempotent by (txid, kind), answer `already_applied`.
//!
//! `body_hash` is the client's request-body hash: the same client txid with the same body gets
//! the recorded outcome back; with a different body it is rejected. `client` is set only on the
//! last attempt of a transaction the coordinator retried (its `txid` is the attempt's own,
//! [`twopc_protocol::attempt`]): recovery then answers the client's txid with that outcome too.
//! It is optional on the wire, so logs written before retries read as they did.
//!
//! Recovery ([`DecisionLog::recover`]) yields a [`RecoveredState`]: every transaction with a
//! Commit and no End ([`RecoveredState::pending`], which the coordinator drives to completion)
//! and an outcome index for recent transactions ([`RecoveredState::outcomes`]). Within one
//! transaction the first decision record wins: a Commit is never overridden by a later Abort
//! (that would be a bug upstream, and a durable COMMIT is final).
//!
//! # On-disk format ([`FileLog`])
//!
//! The data directory holds segment files `log-<seq>.seg` (`seq` zero-padded to 20 digits, so
//! name order is numeric order) and a `LOCK` file, locked exclusively while a [`FileLog`] has
//! the directory open, so two coordinators cannot share one log. A segment is a sequence of
//! frames, with no file header:
//!
//! ```text
//! +----------------+----------------+---------------------------+
//! | len: u32 LE    | crc: u32 LE    | payload: len bytes (JSON) |
//! +----------------+----------------+---------------------------+
//! crc = CRC-32C (Castagnoli) over the 4 length bytes followed by the payload
//! ```
//!
//! The payload is one JSON object, `{"lsn": 7, "record": {"type": "commit", ...}}` or
//! `{"lsn": 7, "checkpoint": {...}}`. JSON keeps the log readable with standard tools; records
//! are a few hundred bytes, and the fsync, not the encoding, is what costs. Every frame
//! carries its log sequence number (LSN); LSNs increase by exactly one from frame to frame,
//! across segment boundaries too, which lets recovery notice a missing segment.
//!
//! The checksum covers the length as well as the payload, so a damaged length field is caught
//! too, and a zero-filled tail (which some file systems expose after a crash) is never a valid
//! frame: a zero length is rejected outright.
//!
//! # Torn writes
//!
//! There is exactly one writer and it only ever appends. Records are written in batches, and a
//! receipt for a forced record is completed only after the batch's fsync returned. A crash can
//! therefore damage only the bytes written after the last completed fsync, and those sit at the
//! end of the *last* segment: a frame cut short, or one whose bytes reached the disk partly or
//! out of order. None of these records was acknowledged to anyone (their fsync never
//! completed), so on open the log truncates the last segment at the first frame that is short
//! or fails its checksum, fsyncs the truncation, and reports it in
//! [`RecoveredState::torn_tail`]. Every earlier segment was fsynced in full before the next one
//! was created, so a bad frame in a segment that is not the last is *not* a torn write: it is
//! real corruption, and [`FileLog::open`] refuses to start with [`LogError::Corrupt`] rather
//! than silently lose a durable COMMIT. A frame whose checksum is right but whose payload does
//! not decode is likewise an error ([`LogError::BadRecord`]) wherever it is: a checksum does not
//! pass by accident, so that is a format mismatch, not a crash artifact.
//!
//! The limit of the argument: damage to the last segment that is *not* a crash (bit rot in an
//! old, acknowledged record of the active segment) looks exactly like a torn write and is
//! truncated too; no single-copy log can tell the two apart. Segments are small and checkpoints
//! frequent, so the active segment holds only recent history; a replicated store behind
//! [`DecisionLog`] is the remedy. One case *is* told apart: every segment but the very first
//! starts with a checkpoint, so a damaged first frame in an only segment numbered above 1 is
//! reported as corruption instead of wiping the history.
//!
//! # Group commit
//!
//! One writer thread owns the active segment. Appends are sent to it over a channel; it takes
//! everything queued (up to [`FileLogConfig::max_batch_records`]), writes it with one `write`,
//! issues one `fdatasync`, and then completes every waiting [`Receipt`]. While an fsync is in
//! progress, new appends queue up and ride the next one, so under load many decisions share a
//! single fsync ([`LogStats::fsyncs`] against [`LogStats::records`]). The writer is a
//! dedicated OS thread rather than a task on the tokio runtime because `fdatasync` blocks for
//! milliseconds; the receipts are tokio oneshots, so async callers simply `.await` them.
//! Lazy records are written at once (into the page cache) and become durable with the next
//! fsync: the next forced record, [`DecisionLog::flush`], the periodic flush
//! ([`FileLogConfig::lazy_flush_interval`]) or a clean shutdown. The channel is unbounded, so
//! an append never blocks: forced appends are bounded by the callers waiting on them, and lazy
//! ones are one per decided transaction.
//!
//! After a failed write or fsync the log stops accepting records ([`LogError::Failed`]): after
//! a failed fsync the state of the page cache is unknown, and retrying can report success for
//! data that never reached the disk. The coordinator must then stop deciding COMMIT; presumed
//! abort keeps everything it has not yet forced safe.
//!
//! # Checkpoints and compaction
//!
//! When the active segment has grown by [`FileLogConfig::segment_bytes`] since its start, the
//! writer rolls over: it fsyncs the old segment, builds a snapshot of the live state (every
//! Commit without End, plus the outcome window: the newest
//! [`FileLogConfig::max_outcomes`] finished or aborted outcomes no older than
//! [`FileLogConfig::max_outcome_age_ms`], measured against the newest `at_ms` in the log, so no
//! wall clock is involved), writes it as the first frame of a new segment `seq + 1`, fsyncs the
//! file and the directory, and only then deletes the older segments (and fsyncs the directory
//! again). The log thus stays about one segment plus one checkpoint in size.
//!
//! A crash at any point of that sequence is safe. On open, the newest segment whose *first
//! frame is a complete, valid checkpoint* is the base of recovery, and every older segment is
//! obsolete and deleted. If the crash left the new segment empty or with a torn checkpoint, it
//! is the last segment, its tail is truncated as above (to nothing), no segment newer than the
//! previous one starts with a checkpoint, and recovery replays the old segments, which were
//! fsynced in full before the new one was created. Either way the recovered state is the one
//! before the crash. Replaying a checkpoint plus the records after it gives the same pending
//! commits as replaying the full history, and the same outcome for every transaction within the
//! window; the window is applied only at checkpoints, so between two checkpoints the index may
//! hold up to one segment's worth more than the window.
//!
//! # Layout
//!
//! * this file: the record, event, error and receipt types and the [`DecisionLog`] trait.
//! * `exchange`: what the protocol core and the log hand each other ([`LazyRecord`],
//!   [`RecoveredCommit`]).
//! * `codec`: frames (length, CRC-32C, JSON payload).
//! * `state`: the live state replayed from records and carried in checkpoints.
//! * `file`: [`FileLog`], the handle and its tuning.
//! * `segments`: the data directory (segment files, the lock, the scan at open).
//! * `writer`: the writer thread (group commit, roll-over with a checkpoint).
//! * `mem`: [`MemLog`], for tests.
//! * `postgres`: [`PgLog`], the decision log in a PostgreSQL database shared by several
//!   coordinators, with the coordinator id's lease and fencing.
//! * `tests`: unit tests.

mod codec;
mod exchange;
mod file;
mod mem;
mod postgres;
mod segments;
mod state;
#[cfg(test)]
mod tests;
mod writer;

pub use exchange::{LazyRecord, RecoveredCommit};
pub use file::{FileLog, FileLogConfig};
pub use mem::MemLog;
/// A PostgreSQL error for people (the log's wording, shared with `reshard`).
pub(crate) use postgres::describe as describe_pg_error;
pub use postgres::{Lease, LeaseReader, LeaseRow, LeaseState, PgLog, PgLogConfig};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{broadcast, oneshot};
use twopc_protocol::api::HeuristicReport;
use twopc_protocol::{Decision, ParticipantName, TxId};

/// A log sequence number: the position of a record in the log, from 1, increasing by one per
/// record (a checkpoint also takes one). `0` means "before the first record".
pub type Lsn = u64;

/// One decision-log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRecord {
    /// The COMMIT decision. Append it with [`DecisionLog::append_durable`] and send no Commit
    /// before the receipt resolves.
    Commit {
        /// The global transaction id.
        txid: TxId,
        /// Every participant that voted yes and must be told to commit.
        participants: Vec<ParticipantName>,
        /// Hash of the client's request body, for idempotent retries.
        body_hash: u64,
        /// When the decision was taken, milliseconds since the Unix epoch.
        at_ms: u64,
        /// For a retried transaction's attempt 2 or later (`txid` is then an attempt id, see
        /// [`twopc_protocol::attempt`]): the client's txid, so that after a restart the client's
        /// id finds this outcome. Absent otherwise, and in records written before retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<TxId>,
    },
    /// The ABORT decision of a client's transaction. Append it with
    /// [`DecisionLog::append_durable`] before the client is told; participants do not wait
    /// for it (presumed abort).
    Abort {
        /// The global transaction id.
        txid: TxId,
        /// Hash of the client's request body, for idempotent retries.
        body_hash: u64,
        /// Why (a NO vote's reason, a timeout, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When the decision was taken, milliseconds since the Unix epoch.
        at_ms: u64,
        /// As for `Commit`: the client's txid of the last attempt of a retried transaction.
        /// (An attempt that is retried logs no Abort: it is not the client's outcome, and
        /// presumed abort answers for it.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<TxId>,
    },
    /// Every participant acknowledged the decision; nothing is left to do.
    End {
        /// The global transaction id.
        txid: TxId,
        /// Acknowledgements that did not match the decision (heuristic outcomes); absent in
        /// records written before they were kept, which read as none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        heuristics: Vec<HeuristicReport>,
    },
}

impl LogRecord {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            LogRecord::Commit { .. } => RecordKind::Commit,
            LogRecord::Abort { .. } => RecordKind::Abort,
            LogRecord::End { .. } => RecordKind::End,
        }
    }

    /// The transaction the record is about.
    pub fn txid(&self) -> &TxId {
        match self {
            LogRecord::Commit { txid, .. }
            | LogRecord::Abort { txid, .. }
            | LogRecord::End { txid, .. } => txid,
        }
    }
}

/// The kind of a frame in the log, for events and metrics: the event stream's own type, so
/// the log, the core and the browser app name record kinds with one vocabulary.
pub use twopc_protocol::event::LogRecordKind as RecordKind;

/// Something the log did, for the coordinator's event stream ("log write and fsync" on the
/// log lane of the browser app). Delivered through [`DecisionLog::subscribe`]; within one
/// batch the `Write` events come first, then the `Fsync` that made them durable (if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    /// A record was written to the log (not necessarily durable yet).
    Write {
        /// Which kind of record.
        kind: RecordKind,
        /// The transaction it is about (`None` for a checkpoint).
        txid: Option<TxId>,
        /// Its log sequence number.
        lsn: Lsn,
    },
    /// One fsync made `records` written records durable at once.
    Fsync {
        /// Records made durable by this fsync (group commit: many).
        records: u32,
        /// How long the fsync took, in microseconds (reported, never relied upon).
        micros: u64,
    },
    /// The log rolled to a new segment that starts with a checkpoint, and deleted the older ones.
    Checkpoint {
        /// The new segment's sequence number.
        segment: u64,
        /// Commits without End carried into the checkpoint.
        pending: u64,
        /// Outcomes (including the pending commits) carried into the checkpoint.
        outcomes: u64,
        /// Older segments deleted.
        deleted_segments: u64,
    },
}

/// Counters for metrics, since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Records appended (checkpoints not included).
    pub records: u64,
    /// fsyncs issued (group commits, periodic flushes and checkpoints).
    pub fsyncs: u64,
    /// Bytes written, frames and checkpoints included.
    pub bytes: u64,
    /// Segment files in the data directory now (0 for [`MemLog`]).
    pub segments: u64,
    /// Checkpoints written (each one a compaction).
    pub checkpoints: u64,
    /// The epoch at which this process holds its coordinator id's lease ([`PgLog`]; 0 for
    /// the file log, which has no lease).
    #[serde(default)]
    pub lease_epoch: u64,
    /// Lease renewals that succeeded ([`PgLog`]).
    #[serde(default)]
    pub lease_renewals: u64,
    /// Decision writes refused because the lease was gone ([`PgLog`]).
    #[serde(default)]
    pub fenced_writes: u64,
}

/// A transaction with a logged COMMIT and no END: recovery must drive it to completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The global transaction id.
    pub txid: TxId,
    /// The participants to send Commit to.
    pub participants: Vec<ParticipantName>,
    /// Hash of the client's request body.
    pub body_hash: u64,
    /// When the decision was taken, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The LSN of its Commit record.
    pub lsn: Lsn,
    /// The client's txid when `txid` is a later attempt's.
    pub client: Option<TxId>,
}

/// The outcome of a recent transaction as the log recorded it (the core keeps its own,
/// with timings: [`crate::core::RecordedOutcome`]; the client is told a
/// [`twopc_protocol::api::Outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOutcome {
    /// Commit or abort.
    pub decision: Decision,
    /// Hash of the client's request body, to tell a retry from a conflicting reuse of the id.
    pub body_hash: u64,
    /// Whether an End was logged (every participant acknowledged).
    pub ended: bool,
    /// When the decision was taken, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The abort reason, if one was logged.
    pub reason: Option<String>,
    /// Acknowledgements that did not match the decision, from its End record.
    pub heuristics: Vec<HeuristicReport>,
    /// The client's txid when this is a later attempt's outcome.
    pub client: Option<TxId>,
}

/// Where recovery cut off a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was truncated (always the last one).
    pub segment: PathBuf,
    /// The byte offset it was truncated at.
    pub offset: u64,
    /// How many bytes were discarded.
    pub discarded_bytes: u64,
    /// What was wrong with the first discarded frame.
    pub reason: String,
}

/// What the log held when it was opened: what a restarting coordinator acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveredState {
    /// Every transaction with a Commit and no End, in LSN order.
    pub pending: Vec<PendingCommit>,
    /// Outcome index for recent transactions (the pending commits included, `ended: false`).
    pub outcomes: HashMap<TxId, LoggedOutcome>,
    /// The LSN the next record will get.
    pub next_lsn: Lsn,
    /// Set when the last segment ended in a torn write that was truncated.
    pub torn_tail: Option<TornTail>,
}

/// Why a decision-log operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An I/O operation on the data directory failed.
    #[error("decision log: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`open`, `write`, `fsync`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// Another process (or another [`FileLog`] in this one) has the data directory open.
    #[error(
        "decision log directory {} is locked: is another coordinator running with the same \
         data directory?",
        dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A frame failed its length or checksum check in a segment that is not the last one. Only
    /// the last segment can end in a torn write, so this is real corruption; the log refuses to
    /// open rather than lose a durable COMMIT.
    #[error(
        "decision log is corrupt: {} at byte {offset}: {detail}. This is not a torn write \
         (only the last segment can have one); refusing to start. Restore the data directory \
         from a backup or inspect it by hand.",
        path.display()
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A frame's checksum is valid but its payload does not decode: a format mismatch (a log
    /// written by another version?) rather than a crash artifact.
    #[error("decision log record in {} at byte {offset} cannot be decoded: {detail}", path.display())]
    BadRecord {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The decoder's message.
        detail: String,
    },
    /// The segments do not form one history: a gap in segment numbers or LSNs, or a history
    /// that starts neither at LSN 1 nor with a checkpoint (segments are missing).
    #[error("decision log in {} is inconsistent: {detail}", dir.display())]
    Inconsistent {
        /// The data directory.
        dir: PathBuf,
        /// What does not fit.
        detail: String,
    },
    /// A record (or checkpoint) is too large for one frame.
    #[error("decision log record of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier write or fsync failed; the log accepts no more records (a failed fsync leaves
    /// the page cache in an unknown state, so retrying could report false durability).
    #[error("decision log stopped after an earlier failure: {cause}")]
    Failed {
        /// The original failure.
        cause: String,
    },
    /// The log has been closed.
    #[error("decision log is closed")]
    Closed,
    /// The log database refused or could not do something ([`PgLog`]); the detail is the
    /// server's message and SQLSTATE, never the connection string.
    #[error("decision log database: cannot {op}: {detail}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// The error.
        detail: String,
    },
    /// This process no longer holds the coordinator id's lease ([`PgLog`]): another holder
    /// claimed it at a higher epoch, or it expired. Nothing more can be written under it.
    #[error(
        "decision log: the lease on coordinator id {coordinator} (epoch {epoch}) is lost; this \
         process writes no more decisions for it"
    )]
    Fenced {
        /// The coordinator id.
        coordinator: String,
        /// The epoch this process held it at.
        epoch: u64,
    },
    /// The coordinator id's lease is held by another process and did not expire within the
    /// configured wait.
    #[error(
        "decision log: coordinator id {coordinator} is held by {holder} for {expires_in_ms} ms \
         more; is another coordinator running with this id?"
    )]
    LeaseHeld {
        /// The coordinator id.
        coordinator: String,
        /// Its holder.
        holder: String,
        /// Until its lease expires, unless renewed.
        expires_in_ms: u64,
    },
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source: Arc::new(e),
        }
    }
}

/// Resolves once an appended record is durable (or the append failed), with the record's LSN.
///
/// Dropping a receipt does not cancel the append.
#[must_use = "a receipt tells when the record is durable; await it before acting on the decision"]
pub struct Receipt(ReceiptInner);

enum ReceiptInner {
    Ready(Option<Result<Lsn, LogError>>),
    Waiting(oneshot::Receiver<Result<Lsn, LogError>>),
}

impl Receipt {
    /// A receipt that is already resolved.
    pub fn ready(result: Result<Lsn, LogError>) -> Self {
        Receipt(ReceiptInner::Ready(Some(result)))
    }

    /// A receipt resolved by whoever holds the sender (a dropped sender resolves to
    /// [`LogError::Closed`]).
    pub fn from_oneshot(rx: oneshot::Receiver<Result<Lsn, LogError>>) -> Self {
        Receipt(ReceiptInner::Waiting(rx))
    }

    /// Waits for the receipt on the current thread. Must not be called from async code (use
    /// `.await` there).
    pub fn wait_blocking(self) -> Result<Lsn, LogError> {
        match self.0 {
            ReceiptInner::Ready(r) => r.unwrap_or(Err(LogError::Closed)),
            ReceiptInner::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(LogError::Closed)),
        }
    }
}

impl Future for Receipt {
    type Output = Result<Lsn, LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            ReceiptInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LogError::Closed))),
            ReceiptInner::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(LogError::Closed))),
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            ReceiptInner::Ready(r) => f.debug_tuple("Receipt").field(r).finish(),
            ReceiptInner::Waiting(_) => f.write_str("Receipt(<pending>)"),
        }
    }
}

/// A durable decision log. Object safe: the coordinator holds an `Arc<dyn DecisionLog>`.
///
/// Records are appended in call order: a record appended by one call is ordered before every
/// record appended by a later call (from any thread), whether forced or lazy, and becoming
/// durable makes every earlier record durable too.
pub trait DecisionLog: Send + Sync {
    /// Appends `record` and returns a receipt that resolves with its LSN once it (and every
    /// record appended before it) is durable. Use it for [`LogRecord::Commit`] (no Commit
    /// message may leave the coordinator before the receipt resolves `Ok`) and for the
    /// [`LogRecord::Abort`] of a client's outcome (the client is told only after it resolves).
    fn append_durable(&self, record: LogRecord) -> Receipt;

    /// Appends `record` without waiting for durability; it becomes durable with the next
    /// forced append, flush or periodic sync, and may be lost in a crash before that. Use it
    /// for [`LogRecord::End`] (a lost End costs one repeated Commit). Fails only when the
    /// log is closed or has failed.
    fn append_lazy(&self, record: LogRecord) -> Result<(), LogError>;

    /// Makes every record appended so far durable; resolves with the LSN of the last one
    /// (`0` for an empty log). Cheap when nothing is waiting.
    fn flush(&self) -> Receipt;

    /// The state the log held when it was opened: commits without End to drive to completion
    /// and the recent outcome index. Records appended since are not included.
    fn recover(&self) -> Result<RecoveredState, LogError>;

    /// Counters since the log was opened.
    fn stats(&self) -> LogStats;

    /// A stream of [`LogEvent`]s from now on. A receiver that falls behind by more than the
    /// channel's capacity (1024 events) loses the oldest ones (`RecvError::Lagged`).
    fn subscribe(&self) -> broadcast::Receiver<LogEvent>;
}

/// Capacity of the event broadcast channel.
pub(crate) const EVENT_CAPACITY: usize = 1024;
