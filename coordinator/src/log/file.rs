//! [`FileLog`]: the embedded decision log in a data directory (format in the module docs).
//!
//! The handle and its tuning; the data directory is read by [`super::segments`] and written by
//! the thread in [`super::writer`].

use super::segments::{lock_dir, scan, segment_path, sync_dir};
use super::state::Window;
use super::writer::{Done, Request, SharedStats, Writer};
use super::{
    DecisionLog, LogError, LogEvent, LogRecord, LogStats, Receipt, RecoveredState, EVENT_CAPACITY,
};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// Tuning of a [`FileLog`].
#[derive(Debug, Clone)]
pub struct FileLogConfig {
    /// Roll to a new, checkpointed segment once the active one has grown by this many bytes
    /// since its checkpoint. Default 8 MiB.
    pub segment_bytes: u64,
    /// Finished or aborted outcomes kept at a checkpoint (newest first). Default 100 000.
    pub max_outcomes: usize,
    /// Outcomes older than this (against the newest `at_ms` in the log) are dropped at a
    /// checkpoint. Default 24 hours.
    pub max_outcome_age_ms: u64,
    /// When lazy records are written and nothing forces them, fsync after this long anyway.
    /// `None`: only forced appends, [`DecisionLog::flush`] and shutdown sync. Default 200 ms.
    pub lazy_flush_interval: Option<Duration>,
    /// Most records written per fsync (bounds the latency of one batch). Default 4096.
    pub max_batch_records: usize,
}

impl Default for FileLogConfig {
    fn default() -> Self {
        FileLogConfig {
            segment_bytes: 8 * 1024 * 1024,
            max_outcomes: 100_000,
            max_outcome_age_ms: 24 * 60 * 60 * 1000,
            lazy_flush_interval: Some(Duration::from_millis(200)),
            max_batch_records: 4096,
        }
    }
}

impl FileLogConfig {
    pub(super) fn window(&self) -> Window {
        Window {
            max_outcomes: self.max_outcomes,
            max_age_ms: self.max_outcome_age_ms,
        }
    }
}

/// The embedded decision log: segment files in a data directory, one writer thread with group
/// commit, checkpoints that keep the directory about one segment in size.
///
/// Dropping it (or [`FileLog::close`]) syncs what was written and releases the directory.
pub struct FileLog {
    dir: PathBuf,
    tx: mpsc::Sender<Request>,
    writer: Option<thread::JoinHandle<Result<(), LogError>>>,
    stats: Arc<SharedStats>,
    events: broadcast::Sender<LogEvent>,
    failure: Arc<OnceLock<LogError>>,
    recovered: RecoveredState,
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`, recovers its state and starts the writer
    /// thread. Fails with [`LogError::Locked`] if the directory is still open elsewhere after
    /// half a second,
    /// [`LogError::Corrupt`], [`LogError::BadRecord`] or [`LogError::Inconsistent`] if the log
    /// cannot be trusted, and [`LogError::Io`] on I/O errors. Does not need a tokio runtime.
    pub fn open(dir: impl AsRef<Path>, config: FileLogConfig) -> Result<FileLog, LogError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| LogError::io("create", &dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir)?;
        let scanned = scan(&dir)?;

        // Records a crashed process wrote but never fsynced are still in the page cache and
        // were just read back as if durable; recovery acts on them (delivers a COMMIT, answers
        // `committed`), so they are made durable before anything is returned. Otherwise a
        // power loss after the restart could erase a decision already acted on (found by the
        // model checker).
        for seq in &scanned.segments {
            let path = segment_path(&dir, *seq);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| LogError::io("fsync", &path, e))?;
        }
        sync_dir(&dir)?;

        let active_seq = *scanned.segments.last().expect("at least one segment");
        let active_path = segment_path(&dir, active_seq);
        let active = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(|e| LogError::io("open", &active_path, e))?;

        let mut recovered = scanned.state.recovered(scanned.next_lsn);
        recovered.torn_tail = scanned.torn_tail;
        let stats = Arc::new(SharedStats::default());
        stats
            .segments
            .store(scanned.segments.len() as u64, Ordering::Relaxed);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let failure = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel();

        let writer = Writer {
            dir: dir.clone(),
            config,
            active,
            active_seq,
            active_len: scanned.active_len,
            active_base: scanned.active_base,
            segments: scanned.segments,
            state: scanned.state,
            next_lsn: scanned.next_lsn,
            unsynced: 0,
            unsynced_since: None,
            stats: stats.clone(),
            events: events.clone(),
            failure: failure.clone(),
            _lock: lock,
        };
        let handle = thread::Builder::new()
            .name("decision-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io("start the writer thread for", &dir, e))?;

        Ok(FileLog {
            dir,
            tx,
            writer: Some(handle),
            stats,
            events,
            failure,
            recovered,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs everything written, stops the writer and releases the directory. Returns the
    /// writer's failure, if it had one. Dropping the log does the same and ignores the result.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        let _ = self.tx.send(Request::Shutdown);
        match handle.join() {
            Ok(result) => result,
            Err(_) => Err(LogError::Failed {
                cause: "the decision-log writer thread panicked".into(),
            }),
        }
    }

    fn closed_error(&self) -> LogError {
        self.failure.get().cloned().unwrap_or(LogError::Closed)
    }

    fn request(&self, make: impl FnOnce(Done) -> Request) -> Receipt {
        if let Some(e) = self.failure.get() {
            return Receipt::ready(Err(e.clone()));
        }
        let (done, rx) = oneshot::channel();
        match self.tx.send(make(done)) {
            Ok(()) => Receipt::from_oneshot(rx),
            Err(_) => Receipt::ready(Err(self.closed_error())),
        }
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl DecisionLog for FileLog {
    fn append_durable(&self, record: LogRecord) -> Receipt {
        self.request(|done| Request::Append {
            record,
            done: Some(done),
        })
    }

    fn append_lazy(&self, record: LogRecord) -> Result<(), LogError> {
        if let Some(e) = self.failure.get() {
            return Err(e.clone());
        }
        self.tx
            .send(Request::Append { record, done: None })
            .map_err(|_| self.closed_error())
    }

    fn flush(&self) -> Receipt {
        self.request(Request::Flush)
    }

    fn recover(&self) -> Result<RecoveredState, LogError> {
        Ok(self.recovered.clone())
    }

    fn stats(&self) -> LogStats {
        let s = &self.stats;
        LogStats {
            records: s.records.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            segments: s.segments.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            ..LogStats::default()
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.events.subscribe()
    }
}
