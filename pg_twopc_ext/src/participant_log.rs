//! The participant endpoint's warnings, into the server log.
//!
//! The endpoint (the shared participant server and the Postgres resource) reports what goes
//! wrong through `tracing`, on tokio threads, where no Postgres function may be called:
//! `ereport` is not thread-safe. So its events are formatted there, queued, and logged by the
//! worker's main thread, which polls the queue with its status every 100 ms ([`drain`]).
//!
//! Only warnings and errors are kept (the server log is an operator's, not a trace). The queue
//! is bounded: when a flood outruns the main thread, the excess is counted and reported as
//! one line instead of growing memory without limit.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// Lines queued at most before new ones are dropped (and counted).
const QUEUE: usize = 1024;

/// The main thread's end of the queue.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    dropped: Arc<AtomicU64>,
}

/// Installs the process-wide `tracing` subscriber that queues WARN and ERROR events; returns
/// the queue to [`drain`]. Called once, in the worker process, before its endpoint starts.
pub fn install() -> Lines {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = QueueWriter {
        tx,
        dropped: dropped.clone(),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(writer)
        .finish();
    // A second install (cannot happen: one endpoint per process) would keep the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Lines { rx, dropped }
}

/// Logs every queued line through `log` (the caller's `log!`, on the main thread).
pub fn drain(lines: &Lines, mut log: impl FnMut(&str)) {
    while let Ok(line) = lines.rx.try_recv() {
        log(&line);
    }
    let dropped = lines.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        log(&format!(
            "{dropped} more warnings were dropped (more than {QUEUE} at once)"
        ));
    }
}

/// Hands out one [`EventBuffer`] per event.
#[derive(Clone)]
struct QueueWriter {
    tx: mpsc::SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueueWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> EventBuffer {
        EventBuffer {
            bytes: Vec::new(),
            queue: self.clone(),
        }
    }
}

/// One formatted event, queued as one line when the formatter is done with it.
struct EventBuffer {
    bytes: Vec<u8>,
    queue: QueueWriter,
}

impl io::Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.bytes).trim().to_owned();
        if line.is_empty() {
            return;
        }
        if self.queue.tx.try_send(line).is_err() {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
