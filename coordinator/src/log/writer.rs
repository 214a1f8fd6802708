//! The writer thread of a [`super::FileLog`]: it alone appends to the active segment, batches
//! appends into one write and one fdatasync (group commit), and rolls segments over with a
//! checkpoint.

use super::codec;
use super::file::FileLogConfig;
use super::segments::{create_segment, segment_path, sync_dir};
use super::state::LiveState;
use super::{LogError, LogEvent, LogRecord, Lsn, RecordKind};
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

pub(super) type Done = oneshot::Sender<Result<Lsn, LogError>>;

pub(super) enum Request {
    Append {
        record: LogRecord,
        done: Option<Done>,
    },
    Flush(Done),
    Shutdown,
}

#[derive(Default)]
pub(super) struct SharedStats {
    pub(super) records: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) segments: AtomicU64,
    pub(super) checkpoints: AtomicU64,
}

// Relaxed is enough: these are counters; readers that need to see a batch's counts synchronize
// with the writer through the receipt or the event channel, both of which happen after.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The writer thread's state: it alone touches the segment files after open.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) config: FileLogConfig,
    pub(super) active: File,
    pub(super) active_seq: u64,
    /// Bytes in the active segment.
    pub(super) active_len: u64,
    /// Bytes of the checkpoint the active segment starts with (0 if none).
    pub(super) active_base: u64,
    /// Segment numbers on disk, oldest first; the last is the active one.
    pub(super) segments: Vec<u64>,
    pub(super) state: LiveState,
    pub(super) next_lsn: Lsn,
    /// Records written since the last fsync.
    pub(super) unsynced: u32,
    /// When the oldest of them was written.
    pub(super) unsynced_since: Option<Instant>,
    pub(super) stats: Arc<SharedStats>,
    pub(super) events: broadcast::Sender<LogEvent>,
    pub(super) failure: Arc<OnceLock<LogError>>,
    /// Held (locked) until the writer exits.
    pub(super) _lock: File,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) -> Result<(), LogError> {
        let max_batch = self.config.max_batch_records.max(1);
        loop {
            let Some(first) = self.next_request(&rx) else {
                break;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            if self.process(batch) {
                break;
            }
        }
        if self.unsynced > 0 && self.failure.get().is_none() {
            match self.sync() {
                Ok(ev) => self.emit(ev),
                Err(e) => self.fail(&e),
            }
        }
        match self.failure.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The next request; syncs lazily written records once the oldest of them has waited
    /// [`FileLogConfig::lazy_flush_interval`], even while requests keep arriving.
    fn next_request(&mut self, rx: &mpsc::Receiver<Request>) -> Option<Request> {
        loop {
            match (self.config.lazy_flush_interval, self.unsynced_since) {
                (Some(interval), Some(since)) if self.failure.get().is_none() => {
                    let deadline = since + interval;
                    let now = Instant::now();
                    let timeout = if now < deadline {
                        match rx.recv_timeout(deadline - now) {
                            Ok(req) => return Some(req),
                            Err(mpsc::RecvTimeoutError::Timeout) => true,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                        }
                    } else {
                        true
                    };
                    if timeout {
                        match self.sync() {
                            Ok(ev) => self.emit(ev),
                            Err(e) => self.fail(&e),
                        }
                    }
                }
                _ => return rx.recv().ok(),
            }
        }
    }

    /// Writes one batch, fsyncs it if anything waits, completes the receipts. Returns whether
    /// a shutdown was requested.
    fn process(&mut self, batch: Vec<Request>) -> bool {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut waiters: Vec<(Done, Lsn)> = Vec::new();
        let mut want_sync = false;
        let mut shutdown = false;
        let mut appended = 0u32;
        for req in batch {
            match req {
                Request::Append { record, done } => {
                    if let Some(e) = self.failure.get() {
                        if let Some(done) = done {
                            let _ = done.send(Err(e.clone()));
                        }
                        continue;
                    }
                    let lsn = self.next_lsn;
                    match codec::encode_record(lsn, &record) {
                        Ok(frame) => buf.extend_from_slice(&frame),
                        Err(e) => {
                            if let Some(done) = done {
                                let _ = done.send(Err(e));
                            }
                            continue;
                        }
                    }
                    self.next_lsn += 1;
                    self.state.apply(lsn, &record);
                    appended += 1;
                    events.push(LogEvent::Write {
                        kind: record.kind(),
                        txid: Some(record.txid().clone()),
                        lsn,
                    });
                    if let Some(done) = done {
                        want_sync = true;
                        waiters.push((done, lsn));
                    }
                }
                Request::Flush(done) => {
                    want_sync = true;
                    waiters.push((done, self.next_lsn - 1));
                }
                Request::Shutdown => {
                    want_sync = true;
                    shutdown = true;
                }
            }
        }

        let result = if self.failure.get().is_some() {
            Err(self.failure.get().cloned().expect("checked"))
        } else {
            self.write_and_sync(&buf, appended, want_sync, &mut events)
        };
        if let Err(e) = &result {
            self.fail(e);
            events.clear();
        }
        for (done, lsn) in waiters {
            let _ = done.send(result.clone().map(|()| lsn));
        }
        for ev in events {
            self.emit(ev);
        }

        if result.is_ok()
            && !shutdown
            && self.active_len.saturating_sub(self.active_base) >= self.config.segment_bytes
        {
            if let Err(e) = self.roll() {
                self.fail(&e);
            }
        }
        shutdown
    }

    fn write_and_sync(
        &mut self,
        buf: &[u8],
        appended: u32,
        want_sync: bool,
        events: &mut Vec<LogEvent>,
    ) -> Result<(), LogError> {
        if !buf.is_empty() {
            self.active
                .write_all(buf)
                .map_err(|e| LogError::io("write", self.active_path(), e))?;
            self.active_len += buf.len() as u64;
            add(&self.stats.bytes, buf.len() as u64);
            add(&self.stats.records, u64::from(appended));
            if self.unsynced == 0 && appended > 0 {
                self.unsynced_since = Some(Instant::now());
            }
            self.unsynced += appended;
        }
        if want_sync && self.unsynced > 0 {
            events.push(self.sync()?);
        }
        Ok(())
    }

    fn active_path(&self) -> PathBuf {
        segment_path(&self.dir, self.active_seq)
    }

    /// fdatasync of the active segment; returns the event to publish.
    fn sync(&mut self) -> Result<LogEvent, LogError> {
        let start = Instant::now();
        self.active
            .sync_data()
            .map_err(|e| LogError::io("fsync", self.active_path(), e))?;
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        add(&self.stats.fsyncs, 1);
        self.unsynced_since = None;
        Ok(LogEvent::Fsync {
            records: std::mem::take(&mut self.unsynced),
            micros,
        })
    }

    /// Compaction: a new segment starting with a checkpoint of the live state, then the old
    /// segments go. The order (old synced, new written + fsynced + directory fsynced, then
    /// removals + directory fsync) makes a crash at any point recoverable.
    fn roll(&mut self) -> Result<(), LogError> {
        if self.unsynced > 0 {
            let ev = self.sync()?;
            self.emit(ev);
        }
        self.state.prune(self.config.window());
        let cp = self.state.checkpoint();
        let lsn = self.next_lsn;
        let frame = codec::encode_checkpoint(lsn, &cp)?;
        let seq = self.active_seq + 1;
        let file = create_segment(&self.dir, seq, &frame)?;
        self.next_lsn += 1;
        add(&self.stats.bytes, frame.len() as u64);
        add(&self.stats.fsyncs, 1);
        add(&self.stats.checkpoints, 1);
        self.active = file;
        self.active_seq = seq;
        self.active_len = frame.len() as u64;
        self.active_base = frame.len() as u64;
        self.segments.push(seq);
        self.stats
            .segments
            .store(self.segments.len() as u64, Ordering::Relaxed);
        self.emit(LogEvent::Write {
            kind: RecordKind::Checkpoint,
            txid: None,
            lsn,
        });

        let old: Vec<u64> = self.segments.drain(..self.segments.len() - 1).collect();
        for &s in &old {
            let path = segment_path(&self.dir, s);
            fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
            self.stats.segments.fetch_sub(1, Ordering::Relaxed);
        }
        if !old.is_empty() {
            sync_dir(&self.dir)?;
        }
        self.emit(LogEvent::Checkpoint {
            segment: seq,
            pending: self.state.pending_count() as u64,
            outcomes: self.state.len() as u64,
            deleted_segments: old.len() as u64,
        });
        Ok(())
    }

    fn emit(&self, ev: LogEvent) {
        // No subscriber is fine: the events are a view.
        let _ = self.events.send(ev);
    }

    fn fail(&self, e: &LogError) {
        let _ = self.failure.set(match e {
            LogError::Failed { .. } => e.clone(),
            other => LogError::Failed {
                cause: other.to_string(),
            },
        });
    }
}
