//! [`FileLog`]: the embedded decision log in a data directory (format in the module docs).

use super::codec::{self, Entry};
use super::state::{Checkpoint, LiveState, Window};
use super::{
    DecisionLog, LogError, LogEvent, LogRecord, LogStats, Lsn, Receipt, RecordKind, RecoveredState,
    TornTail, EVENT_CAPACITY,
};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
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
    fn window(&self) -> Window {
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

type Done = oneshot::Sender<Result<Lsn, LogError>>;

enum Request {
    Append {
        record: LogRecord,
        done: Option<Done>,
    },
    Flush(Done),
    Shutdown,
}

#[derive(Default)]
struct SharedStats {
    records: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    segments: AtomicU64,
    checkpoints: AtomicU64,
}

// Relaxed is enough: these are counters; readers that need to see a batch's counts synchronize
// with the writer through the receipt or the event channel, both of which happen after.
fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

const LOCK_FILE: &str = "LOCK";

/// How long [`FileLog::open`] waits for a busy directory lock.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// The path of segment `seq`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:020}.seg"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment numbers in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes file creations and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io("fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("open", &path, e))?;
    // A lock that is busy for a moment is not a second coordinator: a predecessor process may
    // still be exiting, and a child process forked by this one holds a copy of every
    // descriptor (the lock included) until it execs. So wait briefly before giving up.
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(LogError::io("lock", &path, e)),
        }
    }
}

/// Creates an empty segment and makes its existence durable.
fn create_segment(dir: &Path, seq: u64, contents: &[u8]) -> Result<File, LogError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::io("create", &path, e))?;
    file.write_all(contents)
        .map_err(|e| LogError::io("write", &path, e))?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The segment's first frame, if it is a complete, valid checkpoint: (lsn, checkpoint, frame
/// length). Anything else (a record, a torn or corrupt frame, an empty file) gives `None`.
fn read_first_checkpoint(path: &Path) -> Result<Option<(Lsn, Checkpoint, u64)>, LogError> {
    let mut file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len();
    if size < codec::HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; codec::HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|e| LogError::io("read", path, e))?;
    let len = u64::from(u32::from_le_bytes(
        header[0..4].try_into().expect("4 bytes"),
    ));
    if len == 0 || len > codec::MAX_PAYLOAD as u64 || size < codec::HEADER_LEN as u64 + len {
        return Ok(None);
    }
    let mut buf = header.to_vec();
    buf.resize(codec::HEADER_LEN + len as usize, 0);
    file.read_exact(&mut buf[codec::HEADER_LEN..])
        .map_err(|e| LogError::io("read", path, e))?;
    let Ok(Some((payload, end))) = codec::read_frame(&buf, 0) else {
        return Ok(None);
    };
    match codec::decode_entry(payload) {
        Ok(Entry::Checkpoint(lsn, cp)) => Ok(Some((lsn, cp, end as u64))),
        _ => Ok(None),
    }
}

/// The outcome of scanning a data directory.
struct Scanned {
    state: LiveState,
    next_lsn: Lsn,
    segments: Vec<u64>,
    active_len: u64,
    active_base: u64,
    torn_tail: Option<TornTail>,
}

fn inconsistent(dir: &Path, detail: String) -> LogError {
    LogError::Inconsistent {
        dir: dir.to_path_buf(),
        detail,
    }
}

/// Recovery: find the base checkpoint, drop obsolete segments, replay, cut a torn tail.
fn scan(dir: &Path) -> Result<Scanned, LogError> {
    let mut seqs = list_segments(dir)?;
    if seqs.is_empty() {
        create_segment(dir, 1, &[])?;
        return Ok(Scanned {
            state: LiveState::default(),
            next_lsn: 1,
            segments: vec![1],
            active_len: 0,
            active_base: 0,
            torn_tail: None,
        });
    }

    // The newest segment that starts with a complete checkpoint makes every older one obsolete.
    let mut base = None;
    for i in (0..seqs.len()).rev() {
        if let Some(found) = read_first_checkpoint(&segment_path(dir, seqs[i]))? {
            base = Some((i, found));
            break;
        }
    }
    let (mut state, mut expected, start_off) = match base {
        Some((i, (lsn, cp, frame_len))) => {
            if i > 0 {
                // A compaction that crashed after its checkpoint was durable: finish it.
                for &seq in &seqs[..i] {
                    let path = segment_path(dir, seq);
                    fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
                }
                sync_dir(dir)?;
                seqs.drain(..i);
            }
            (LiveState::from_checkpoint(cp), Some(lsn + 1), frame_len)
        }
        None => {
            if seqs[0] != 1 {
                // Every segment but the first is created with a checkpoint, and older ones are
                // only deleted once it is durable; a bad first frame here is corruption, never
                // a torn write (treating it as one would throw the whole history away).
                let path = segment_path(dir, seqs[0]);
                let buf = fs::read(&path).map_err(|e| LogError::io("read", &path, e))?;
                if let Err(bad) = codec::read_frame(&buf, 0) {
                    return Err(LogError::Corrupt {
                        path,
                        offset: 0,
                        detail: format!("{bad}; this segment must start with a checkpoint"),
                    });
                }
                return Err(inconsistent(
                    dir,
                    format!(
                        "no segment starts with a checkpoint and the oldest is segment {}, \
                         not 1: earlier segments are missing",
                        seqs[0]
                    ),
                ));
            }
            (LiveState::default(), None, 0)
        }
    };
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(inconsistent(
                dir,
                format!(
                    "segment {} follows segment {}: segments are missing",
                    w[1], w[0]
                ),
            ));
        }
    }

    let last = seqs.len() - 1;
    let mut torn_tail = None;
    let mut active_len = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let buf = fs::read(&path).map_err(|e| LogError::io("read", &path, e))?;
        let mut off = if i == 0 { start_off as usize } else { 0 };
        loop {
            match codec::read_frame(&buf, off) {
                Ok(None) => break,
                Ok(Some((payload, next))) => {
                    let entry =
                        codec::decode_entry(payload).map_err(|detail| LogError::BadRecord {
                            path: path.clone(),
                            offset: off as u64,
                            detail,
                        })?;
                    let lsn = entry.lsn();
                    let want = expected.unwrap_or(1);
                    if lsn != want {
                        return Err(inconsistent(
                            dir,
                            format!(
                                "{} at byte {off}: LSN {lsn} where {want} was expected",
                                path.display()
                            ),
                        ));
                    }
                    match entry {
                        Entry::Record(lsn, record) => state.apply(lsn, &record),
                        Entry::Checkpoint(..) => {
                            return Err(inconsistent(
                                dir,
                                format!(
                                    "{} at byte {off}: a checkpoint that does not start the \
                                     newest checkpointed segment",
                                    path.display()
                                ),
                            ))
                        }
                    }
                    expected = Some(lsn + 1);
                    off = next;
                }
                Err(bad) if i == last => {
                    // A torn write from a crash: nothing from here on was ever acknowledged.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| LogError::io("open", &path, e))?;
                    file.set_len(off as u64)
                        .map_err(|e| LogError::io("truncate", &path, e))?;
                    file.sync_all()
                        .map_err(|e| LogError::io("fsync", &path, e))?;
                    torn_tail = Some(TornTail {
                        segment: path.clone(),
                        offset: off as u64,
                        discarded_bytes: (buf.len() - off) as u64,
                        reason: bad.to_string(),
                    });
                    break;
                }
                Err(bad) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: off as u64,
                        detail: bad.to_string(),
                    })
                }
            }
        }
        if i == last {
            active_len = off as u64;
        }
    }
    Ok(Scanned {
        state,
        next_lsn: expected.unwrap_or(1),
        active_base: if last == 0 { start_off } else { 0 },
        segments: seqs,
        active_len,
        torn_tail,
    })
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
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.events.subscribe()
    }
}

/// The writer thread's state: it alone touches the segment files after open.
struct Writer {
    dir: PathBuf,
    config: FileLogConfig,
    active: File,
    active_seq: u64,
    /// Bytes in the active segment.
    active_len: u64,
    /// Bytes of the checkpoint the active segment starts with (0 if none).
    active_base: u64,
    /// Segment numbers on disk, oldest first; the last is the active one.
    segments: Vec<u64>,
    state: LiveState,
    next_lsn: Lsn,
    /// Records written since the last fsync.
    unsynced: u32,
    /// When the oldest of them was written.
    unsynced_since: Option<Instant>,
    stats: Arc<SharedStats>,
    events: broadcast::Sender<LogEvent>,
    failure: Arc<OnceLock<LogError>>,
    /// Held (locked) until the writer exits.
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) -> Result<(), LogError> {
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
