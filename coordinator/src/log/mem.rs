//! [`MemLog`]: an in-memory decision log for deterministic tests of the protocol core.

use super::codec;
use super::state::LiveState;
use super::{
    DecisionLog, LogError, LogEvent, LogRecord, LogStats, Lsn, Receipt, RecoveredState,
    EVENT_CAPACITY,
};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::broadcast;

/// An in-memory [`DecisionLog`] with the same durability rules as [`super::FileLog`], made
/// deterministic: a forced append is durable before it returns (one "fsync" per call), a lazy
/// append stays volatile until the next forced append or flush, and [`MemLog::crash`] loses
/// exactly the volatile records, as a power failure would. It keeps the full history (no
/// checkpoints, no outcome window) and needs no runtime.
pub struct MemLog {
    inner: Mutex<Inner>,
    events: broadcast::Sender<LogEvent>,
}

struct Inner {
    durable: Vec<(Lsn, LogRecord)>,
    volatile: Vec<(Lsn, LogRecord)>,
    next_lsn: Lsn,
    stats: LogStats,
    recovered: RecoveredState,
    failure: Option<String>,
}

impl Default for MemLog {
    fn default() -> Self {
        MemLog::new()
    }
}

impl MemLog {
    /// An empty log.
    pub fn new() -> Self {
        MemLog::from_durable(Vec::new())
    }

    fn from_durable(durable: Vec<(Lsn, LogRecord)>) -> Self {
        let mut state = LiveState::default();
        for (lsn, record) in &durable {
            state.apply(*lsn, record);
        }
        let next_lsn = durable.last().map_or(1, |(lsn, _)| lsn + 1);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        MemLog {
            inner: Mutex::new(Inner {
                durable,
                volatile: Vec::new(),
                next_lsn,
                stats: LogStats::default(),
                recovered: state.recovered(next_lsn),
                failure: None,
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record appended, durable or not, in LSN order.
    pub fn records(&self) -> Vec<(Lsn, LogRecord)> {
        let inner = self.lock();
        inner
            .durable
            .iter()
            .chain(inner.volatile.iter())
            .cloned()
            .collect()
    }

    /// The records that would survive a crash now.
    pub fn durable_records(&self) -> Vec<(Lsn, LogRecord)> {
        self.lock().durable.clone()
    }

    /// A power failure and restart: a new log holding only the durable records (lazy records
    /// not yet flushed are lost). `self` is left as it was.
    pub fn crash(&self) -> MemLog {
        MemLog::from_durable(self.durable_records())
    }

    /// A clean shutdown and restart: a new log holding every record.
    pub fn restart(&self) -> MemLog {
        MemLog::from_durable(self.records())
    }

    /// Fault injection: from now on every append fails with [`LogError::Failed`] (as after a
    /// failed fsync).
    pub fn fail(&self, cause: impl Into<String>) {
        self.lock().failure = Some(cause.into());
    }

    fn append(&self, record: LogRecord, force: bool) -> Result<Lsn, LogError> {
        let mut inner = self.lock();
        if let Some(cause) = &inner.failure {
            return Err(LogError::Failed {
                cause: cause.clone(),
            });
        }
        let lsn = inner.next_lsn;
        let bytes = codec::encode_record(lsn, &record)?.len() as u64;
        inner.next_lsn += 1;
        inner.stats.records += 1;
        inner.stats.bytes += bytes;
        let _ = self.events.send(LogEvent::Write {
            kind: record.kind(),
            txid: Some(record.txid().clone()),
            lsn,
        });
        inner.volatile.push((lsn, record));
        if force {
            self.sync(&mut inner);
        }
        Ok(lsn)
    }

    fn sync(&self, inner: &mut Inner) {
        if inner.volatile.is_empty() {
            return;
        }
        let records = inner.volatile.len() as u32;
        let volatile = std::mem::take(&mut inner.volatile);
        inner.durable.extend(volatile);
        inner.stats.fsyncs += 1;
        let _ = self.events.send(LogEvent::Fsync { records, micros: 0 });
    }
}

impl DecisionLog for MemLog {
    fn append_durable(&self, record: LogRecord) -> Receipt {
        Receipt::ready(self.append(record, true))
    }

    fn append_lazy(&self, record: LogRecord) -> Result<(), LogError> {
        self.append(record, false).map(|_| ())
    }

    fn flush(&self) -> Receipt {
        let mut inner = self.lock();
        if let Some(cause) = &inner.failure {
            return Receipt::ready(Err(LogError::Failed {
                cause: cause.clone(),
            }));
        }
        self.sync(&mut inner);
        Receipt::ready(Ok(inner.next_lsn - 1))
    }

    fn recover(&self) -> Result<RecoveredState, LogError> {
        Ok(self.lock().recovered.clone())
    }

    fn stats(&self) -> LogStats {
        self.lock().stats
    }

    fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.events.subscribe()
    }
}
