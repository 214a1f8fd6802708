//! [`PgLog`]: the decision log in a PostgreSQL database, shared by several coordinators.
//!
//! The file log ties a coordinator's decisions to one disk; when that machine is gone, every
//! transaction it left prepared holds its locks until someone resolves it by hand. This log
//! keeps the decisions in a PostgreSQL database instead, so they are as durable and as
//! available as that database: with synchronous streaming replication a COMMIT record survives
//! the loss of the primary, and a multi-host URL with `target_session_attrs=read-write` follows
//! a promoted standby. No consensus of our own: PostgreSQL's commit is the decision's
//! durability, as in Citus (commit records in the coordinator's own database) and DTM (many
//! servers on one highly available database).
//!
//! # What is stored
//!
//! One row per decided transaction in `twopc_log.decision` ([`schema`]), keyed by
//! (coordinator id, txid): the same facts the file log's records carry, with the same rules.
//! COMMIT is forced: its receipt resolves only after the database committed the row; so is a
//! client's ABORT, before the client is told (participants never wait for it: presumed abort).
//! End is lazy: written with the next batch, within `linger` when nothing forces one, and may
//! be lost in a crash before that (a lost End only costs a repeated Commit).
//! The first decision for a txid wins. Rows of finished transactions (ended commits, aborts)
//! outside the outcome window (newest `max_outcomes`, none older than `max_outcome_age_ms`) are
//! deleted in batches by the lease task, so the table does not grow without bound (Citus's
//! commit-record bloat, #4186 / #7246). Pending commits are never deleted.
//!
//! # Group commit
//!
//! One task writes ([`writer`]): everything queued goes into one statement, one round trip,
//! one commit. Concurrency fills the batches, as with the file log's fsync.
//!
//! # Owning the id: lease and fencing
//!
//! A coordinator id is owned through a lease row ([`lease`]) with an epoch that every new
//! holder raises and an expiry by the database's clock. [`PgLog::open`] claims the lease first
//! (waiting, if another process still holds it, until it expires or is released) and reads the
//! id's decisions only after the claim, so it sees everything its predecessors wrote. Every
//! decision write checks the lease in the same statement; a holder that lost its lease (paused
//! past it, cut off from the database, or replaced) writes nothing more, ever: its appends fail
//! with [`LogError::Fenced`], and the coordinator halts rather than decide anything
//! ([`crate::core`] halts on a failed COMMIT append). The lease task renews the lease every
//! `lease_renew`; when a renewal finds another holder, or no renewal succeeded for a whole
//! `lease_ttl`, it reports the lease lost ([`PgLog::lease_lost`]) and the server stops
//! serving the id.
//!
//! The lease gives fencing, not liveness of anyone else's work: taking over another id's
//! transactions is the job of a coordinator that claims that id.

mod lease;
mod schema;
pub(crate) mod tls;
mod writer;

pub use lease::{Lease, LeaseRow, LeaseState};

use super::state::{LiveState, Window};
use super::{
    DecisionLog, LogError, LogEvent, LogRecord, LogStats, Receipt, RecoveredState, EVENT_CAPACITY,
};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use twopc_protocol::api::{HeuristicReport, Outcome, TransactionResponse};
use twopc_protocol::{CoordinatorId, Decision, ParticipantName, TxId};
use writer::{Request, Writer};

/// Tuning and identity of a [`PgLog`].
#[derive(Clone)]
pub struct PgLogConfig {
    /// libpq connection URI or key/value string (may hold a password: never logged).
    pub url: String,
    /// The coordinator id whose decisions this log holds.
    pub coordinator: String,
    /// This coordinator's API address, recorded with the lease (who holds the id, where).
    pub address: String,
    /// The id of the coordinator process that holds the lease, when it is not `coordinator`
    /// itself (a survivor that takes the id over): the holder name starts with it.
    pub holder_id: Option<String>,
    /// How long a lease lasts without renewal. Default 3 s.
    pub lease_ttl: Duration,
    /// Renewal interval (well under the TTL). Default 1 s.
    pub lease_renew: Duration,
    /// How long [`PgLog::open`] waits for a lease that another process holds; `None`: as long
    /// as it takes.
    pub lease_wait: Option<Duration>,
    /// Most records per write. Default 4096.
    pub max_batch_records: usize,
    /// How long a batch of lazy records only waits for company. Default 5 ms.
    pub linger: Duration,
    /// Finished outcomes kept (newest first). Default 100 000.
    pub max_outcomes: usize,
    /// Finished outcomes older than this (against the newest decision) are deleted. Default
    /// 24 hours.
    pub max_outcome_age_ms: u64,
    /// How often finished rows outside the window are deleted. Default 10 s.
    pub retention_interval: Duration,
    /// Rows deleted per statement (each its own short transaction). Default 1000.
    pub retention_batch: i64,
    /// Connect in plain text to a host other than loopback (no verifying `sslmode`) anyway.
    pub allow_plain_text_off_loopback: bool,
}

impl std::fmt::Debug for PgLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLogConfig")
            .field("url", &"<redacted>")
            .field("coordinator", &self.coordinator)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl PgLogConfig {
    /// Defaults for `coordinator` on the database at `url`.
    pub fn new(url: impl Into<String>, coordinator: impl Into<String>) -> Self {
        PgLogConfig {
            url: url.into(),
            coordinator: coordinator.into(),
            address: String::new(),
            holder_id: None,
            lease_ttl: Duration::from_secs(3),
            lease_renew: Duration::from_secs(1),
            lease_wait: None,
            max_batch_records: 4096,
            linger: Duration::from_millis(5),
            max_outcomes: 100_000,
            max_outcome_age_ms: 24 * 60 * 60 * 1000,
            retention_interval: Duration::from_secs(10),
            retention_batch: 1000,
            allow_plain_text_off_loopback: false,
        }
    }
}

/// Opens connections to the log database.
#[derive(Clone)]
pub(super) struct Connector {
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` asked (see [`tls`]); `None`: plain text.
    tls: Option<tls::RustlsConnect>,
}

impl Connector {
    fn new(url: &str, coordinator: &str) -> Result<Self, LogError> {
        let (url, mode) = tls::split_url(url)?;
        let tls = match &mode {
            tls::PgTlsMode::Plain => None,
            tls::PgTlsMode::Verify { full, files } => Some(tls::RustlsConnect::new(*full, files)?),
        };
        let mut config =
            tokio_postgres::Config::from_str(&url).map_err(|e| LogError::Database {
                op: "parse the decision log URL",
                // The parser's message names the offending part, never the whole string (which
                // may carry a password).
                detail: e.to_string(),
            })?;
        if config.get_application_name().is_none() {
            config.application_name(format!("twopc-coordinator {coordinator}"));
        }
        config.connect_timeout(Duration::from_secs(5));
        if tls.is_some() {
            if config
                .get_hosts()
                .iter()
                .any(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)))
            {
                return Err(LogError::Database {
                    op: "parse the decision log URL",
                    detail: "sslmode asks for TLS, which PostgreSQL does not offer on a Unix \
                             socket; use a TCP host, or no sslmode for a socket"
                        .into(),
                });
            }
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(Connector { config, tls })
    }

    /// Whether the connections are encrypted and the server verified.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether every host is this machine: loopback or a Unix socket.
    pub(crate) fn is_local(&self) -> bool {
        self.config.get_hosts().iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => crate::config::is_loopback_host(name),
            #[allow(unreachable_patterns)]
            _ => true,
        })
    }

    pub(super) async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let client = match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("decision log connection ended: {e}");
                    }
                });
                client
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("decision log connection ended: {e}");
                    }
                });
                client
            }
        };
        Ok(client)
    }
}

/// Whether an error is worth a reconnect and another try: connection trouble, a server
/// shutting down or in recovery (a standby, or a primary before promotion), too many clients,
/// a serialization or lock failure. Anything else (a constraint, a permission) is a fault of
/// the setup that retrying cannot fix.
pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => {
            let s = c.code();
            s.starts_with("08")
                || s.starts_with("53")
                || s.starts_with("57P")
                || matches!(s, "25006" | "40001" | "40P01" | "55P03" | "57014")
        }
    }
}

/// A database error for people: SQLSTATE and message, no connection details.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        // tokio-postgres says only "error performing TLS handshake"; the cause (an untrusted
        // certificate, say) is its source, which names neither the URL nor a password.
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn db(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> LogError {
    move |e| LogError::Database {
        op,
        detail: describe(&e),
    }
}

/// State shared by the handle, the writer and the lease task.
pub(super) struct PgShared {
    pub(super) records: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) fenced_writes: AtomicU64,
    pub(super) renewals: AtomicU64,
    pub(super) deleted: AtomicU64,
    pub(super) failure: OnceLock<LogError>,
    pub(super) events: broadcast::Sender<LogEvent>,
    /// The clock of `valid_until_ms`.
    base: Instant,
    /// Until when, in ms since `base`, the lease is surely valid by this process's own
    /// monotonic clock: a TTL after the last successful renewal (or the claim) was sent.
    valid_until_ms: AtomicU64,
    /// Set once, with why, when the lease is lost.
    lost: watch::Sender<Option<String>>,
}

impl PgShared {
    /// A renewal (or the claim) sent at `sent` succeeded: the lease is surely valid for a TTL
    /// from then.
    fn valid_from(&self, sent: Instant, ttl: Duration) {
        let until = sent.saturating_duration_since(self.base) + ttl;
        self.valid_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether that TTL has not run out yet, by this process's monotonic clock.
    fn surely_valid(&self) -> bool {
        (self.base.elapsed().as_millis() as u64) < self.valid_until_ms.load(Ordering::Relaxed)
    }

    /// The lease is gone: nothing more is written, and whoever watches is told why.
    pub(super) fn lose(&self, lease: &Lease, why: String) -> LogError {
        let e = LogError::Fenced {
            coordinator: lease.coordinator.clone(),
            epoch: lease.epoch as u64,
        };
        let _ = self.failure.set(e.clone());
        self.lost.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why);
                true
            } else {
                false
            }
        });
        e
    }
}

/// The decision log in PostgreSQL (see the module docs).
pub struct PgLog {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<PgShared>,
    lease: Lease,
    recovered: RecoveredState,
    connector: Connector,
    keeper: tokio::task::JoinHandle<()>,
}

/// A name for this process run, unique across machines and restarts: the id of the
/// coordinator it serves, host, pid, start time and random bits. A lease holder is a process
/// run, never a coordinator id.
fn holder_name(coordinator: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{coordinator}@{host}:{}:{:x}:{:016x}",
        std::process::id(),
        nanos,
        u64::from_le_bytes(bytes)
    )
}

impl PgLog {
    /// Connects, creates the tables if needed, claims the coordinator id's lease (waiting while
    /// another process holds it, up to `lease_wait`), reads the id's decisions and starts the
    /// writer and the lease task. Needs a tokio runtime.
    pub async fn open(config: PgLogConfig) -> Result<PgLog, LogError> {
        let connector = Connector::new(&config.url, &config.coordinator)?;
        if !connector.is_tls() && !connector.is_local() && !config.allow_plain_text_off_loopback {
            return Err(LogError::Database {
                op: "open the decision log",
                detail: "the URL names a host other than loopback without sslmode=verify-full \
                         (or verify-ca): decisions and the password would cross the network \
                         readable; add sslmode=verify-full&sslrootcert=<CA file>, or set \
                         allow_plain_text_off_loopback = true"
                    .into(),
            });
        }
        let mut client = connector
            .connect()
            .await
            .map_err(db("connect to the decision log database"))?;
        schema::ensure(&mut client)
            .await
            .map_err(db("create the decision log tables"))?;
        let holder = holder_name(config.holder_id.as_deref().unwrap_or(&config.coordinator));
        let started = Instant::now();
        let mut told = false;
        let mut claimed_at;
        let lease = loop {
            let ttl = config.lease_ttl.as_millis() as u64;
            // Before the claim is sent: the database's expiry is a TTL after it arrives.
            claimed_at = Instant::now();
            match lease::claim(&client, &config.coordinator, &holder, ttl, &config.address)
                .await
                .map_err(db("claim the coordinator id's lease"))?
            {
                Ok(lease) => break lease,
                Err(held) => {
                    if config.lease_wait.is_some_and(|w| started.elapsed() >= w) {
                        return Err(LogError::LeaseHeld {
                            coordinator: config.coordinator.clone(),
                            holder: held.holder,
                            expires_in_ms: held.expires_in_ms.max(0) as u64,
                        });
                    }
                    if !told {
                        tracing::warn!(
                            "coordinator id {} is held by {} (epoch {}) for {} ms more; \
                             waiting for its lease to expire",
                            config.coordinator,
                            held.holder,
                            held.epoch,
                            held.expires_in_ms
                        );
                        told = true;
                    }
                    let wait = Duration::from_millis(held.expires_in_ms.clamp(10, 500) as u64);
                    tokio::time::sleep(wait).await;
                }
            }
        };
        tracing::info!(
            "decision log in PostgreSQL: holding coordinator id {} at epoch {}",
            lease.coordinator,
            lease.epoch
        );
        let window = Window {
            max_outcomes: config.max_outcomes,
            max_age_ms: config.max_outcome_age_ms,
        };
        let (state, max_seq) = read_state(&client, &config.coordinator, window).await?;
        let next_lsn = max_seq + 1;
        let recovered = state.recovered(next_lsn);

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(PgShared {
            records: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fenced_writes: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            failure: OnceLock::new(),
            events,
            base: claimed_at,
            valid_until_ms: AtomicU64::new(0),
            lost,
        });
        shared.valid_from(claimed_at, config.lease_ttl);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            connector: connector.clone(),
            client: None,
            lease: lease.clone(),
            shared: shared.clone(),
            next_lsn,
            max_batch: config.max_batch_records.max(1),
            linger: config.linger,
        };
        tokio::spawn(writer.run(rx));
        let keeper = tokio::spawn(keep_lease(
            connector.clone(),
            client,
            lease.clone(),
            config,
            shared.clone(),
        ));
        Ok(PgLog {
            tx,
            shared,
            lease,
            recovered,
            connector,
            keeper,
        })
    }

    /// The lease this log writes under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The epoch this process holds its coordinator id at.
    pub fn epoch(&self) -> u64 {
        self.lease.epoch.max(0) as u64
    }

    /// A reader of every coordinator id's lease, on a connection of its own.
    pub fn lease_reader(&self) -> LeaseReader {
        LeaseReader {
            connector: self.connector.clone(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Finished rows retention deleted since the log was opened (the other counters are in
    /// [`DecisionLog::stats`]).
    pub fn deleted_rows(&self) -> u64 {
        self.shared.deleted.load(Ordering::Relaxed)
    }

    /// Whether this process may start new work under the id: the lease is surely still valid
    /// by its own monotonic clock (a TTL after the last renewal that succeeded was sent) and
    /// nothing failed. A process that was paused past its lease sees `false` the moment it
    /// runs again, before its lease task has noticed anything. Every write is fenced by the
    /// database anyway; this keeps a paused coordinator from starting transactions that only
    /// a takeover could then finish.
    pub fn lease_fresh(&self) -> bool {
        self.shared.failure.get().is_none() && self.shared.surely_valid()
    }

    /// Resolves, with the reason, once the lease is lost (another holder has the id, or no
    /// renewal succeeded for a whole TTL). From then on nothing can be written.
    pub fn lease_lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut rx = self.shared.lost.subscribe();
        async move {
            loop {
                if let Some(why) = rx.borrow_and_update().clone() {
                    return why;
                }
                if rx.changed().await.is_err() {
                    // The log is gone: nothing will be written under the lease any more.
                    return "the decision log was closed".into();
                }
            }
        }
    }

    /// Writes what is queued, then releases the lease so a successor need not wait for it to
    /// expire. Appends after this fail with [`LogError::Closed`].
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Close(done)).is_ok() {
            let _ = wait.await;
        }
        self.keeper.abort();
        if self.shared.failure.get().is_some() {
            return;
        }
        let _ = self.shared.failure.set(LogError::Closed);
        if let Ok(Ok(client)) =
            tokio::time::timeout(Duration::from_secs(2), self.connector.connect()).await
        {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), lease::release(&client, &self.lease))
                    .await;
        }
    }

    fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<u64, LogError>>) -> Request,
    ) -> Receipt {
        if let Some(e) = self.shared.failure.get() {
            return Receipt::ready(Err(e.clone()));
        }
        let (done, rx) = oneshot::channel();
        match self.tx.send(make(done)) {
            Ok(()) => Receipt::from_oneshot(rx),
            Err(_) => Receipt::ready(Err(LogError::Closed)),
        }
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl DecisionLog for PgLog {
    fn append_durable(&self, record: LogRecord) -> Receipt {
        self.request(|done| Request::Append {
            record,
            done: Some(done),
        })
    }

    fn append_lazy(&self, record: LogRecord) -> Result<(), LogError> {
        if let Some(e) = self.shared.failure.get() {
            return Err(e.clone());
        }
        self.tx
            .send(Request::Append { record, done: None })
            .map_err(|_| LogError::Closed)
    }

    fn flush(&self) -> Receipt {
        self.request(Request::Flush)
    }

    fn recover(&self) -> Result<RecoveredState, LogError> {
        Ok(self.recovered.clone())
    }

    fn stats(&self) -> LogStats {
        let s = &self.shared;
        LogStats {
            records: s.records.load(Ordering::Relaxed),
            // One database commit per batch: this log's "fsync".
            fsyncs: s.commits.load(Ordering::Relaxed),
            bytes: 0,
            segments: 0,
            checkpoints: 0,
            lease_epoch: self.epoch(),
            lease_renewals: s.renewals.load(Ordering::Relaxed),
            fenced_writes: s.fenced_writes.load(Ordering::Relaxed),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.shared.events.subscribe()
    }
}

/// Reads every decision of `coordinator` into the live state (in write order), applying the
/// outcome window. Returns it with the highest row sequence number seen.
async fn read_state(
    client: &tokio_postgres::Client,
    coordinator: &str,
    window: Window,
) -> Result<(LiveState, u64), LogError> {
    let rows = client
        .query(
            "SELECT txid, decision, participants::text, body_hash, at_ms, reason, client, ended,
                    heuristics::text, seq
             FROM twopc_log.decision WHERE coordinator_id = $1 ORDER BY seq",
            &[&coordinator],
        )
        .await
        .map_err(db("read the decision log"))?;
    let mut state = LiveState::default();
    let mut max_seq = 0u64;
    for row in rows {
        let bad = |what: &str| LogError::Database {
            op: "read the decision log",
            detail: format!("a row of twopc_log.decision has an unusable {what}"),
        };
        let txid = TxId::new(row.get::<_, String>(0)).map_err(|_| bad("txid"))?;
        let seq = row.get::<_, i64>(9).max(0) as u64;
        max_seq = max_seq.max(seq);
        let body_hash = row.get::<_, i64>(3) as u64;
        let at_ms = row.get::<_, i64>(4).max(0) as u64;
        let client_id = match row.get::<_, Option<String>>(6) {
            Some(c) => Some(TxId::new(c).map_err(|_| bad("client"))?),
            None => None,
        };
        let record = match row.get::<_, &str>(1) {
            "commit" => LogRecord::Commit {
                txid: txid.clone(),
                participants: serde_json::from_str::<Vec<ParticipantName>>(row.get(2))
                    .map_err(|_| bad("participants"))?,
                body_hash,
                at_ms,
                client: client_id,
            },
            _ => LogRecord::Abort {
                txid: txid.clone(),
                body_hash,
                reason: row.get(5),
                at_ms,
                client: client_id,
            },
        };
        state.apply(seq, &record);
        if row.get::<_, bool>(7) {
            let heuristics: Vec<HeuristicReport> =
                serde_json::from_str(row.get(8)).map_err(|_| bad("heuristics"))?;
            state.apply(seq, &LogRecord::End { txid, heuristics });
        }
    }
    state.prune(window);
    Ok((state, max_seq))
}

/// Renews the lease every `lease_renew` and deletes finished rows outside the window every
/// `retention_interval`, on a connection of its own (so neither waits behind a batch). Reports
/// the lease lost when a renewal finds another holder, or when no renewal succeeded within a
/// TTL of the last one that did (by then the database may have let it expire).
async fn keep_lease(
    connector: Connector,
    client: tokio_postgres::Client,
    lease: Lease,
    config: PgLogConfig,
    shared: Arc<PgShared>,
) {
    let ttl_ms = config.lease_ttl.as_millis() as u64;
    let mut client = Some(client);
    let mut next_retention = Instant::now() + config.retention_interval;
    let lost = |why: String| {
        shared.lose(&lease, why);
    };
    loop {
        tokio::time::sleep(config.lease_renew).await;
        if client.is_none() {
            match tokio::time::timeout(config.lease_renew, connector.connect()).await {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => tracing::warn!("decision log: cannot reconnect: {}", describe(&e)),
                Err(_) => tracing::warn!("decision log: reconnecting timed out"),
            }
        }
        if let Some(c) = &client {
            let sent = Instant::now();
            match tokio::time::timeout(config.lease_renew, lease::renew(c, &lease, ttl_ms)).await {
                Ok(Ok(true)) => {
                    shared.valid_from(sent, config.lease_ttl);
                    shared.renewals.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(false)) => {
                    lost(format!(
                        "coordinator id {} has another holder now (this process held it at \
                         epoch {})",
                        lease.coordinator, lease.epoch
                    ));
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!("decision log: lease renewal failed: {}", describe(&e));
                    client = None;
                }
                Err(_) => {
                    tracing::warn!("decision log: lease renewal timed out");
                    client = None;
                }
            }
        }
        if !shared.surely_valid() {
            lost(format!(
                "no lease renewal for coordinator id {} succeeded for {} ms: its lease may \
                 have expired",
                lease.coordinator, ttl_ms
            ));
            return;
        }
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + config.retention_interval;
            if let Some(c) = &client {
                match delete_finished(c, &lease.coordinator, &config).await {
                    Ok(n) => {
                        shared.deleted.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(
                        "decision log: deleting finished records failed: {}",
                        describe(&e)
                    ),
                }
            }
        }
    }
}

/// Deletes finished rows outside the outcome window, `retention_batch` per statement, until
/// none is left (or 100 batches: the rest waits for the next round). Returns how many went.
async fn delete_finished(
    client: &tokio_postgres::Client,
    coordinator: &str,
    config: &PgLogConfig,
) -> Result<u64, tokio_postgres::Error> {
    let age = config.max_outcome_age_ms as i64;
    let keep = config.max_outcomes as i64;
    let mut deleted = 0u64;
    for _ in 0..100 {
        let n = client
            .execute(
                "DELETE FROM twopc_log.decision WHERE coordinator_id = $1 AND ctid = ANY(ARRAY(
                    SELECT ctid FROM twopc_log.decision
                    WHERE coordinator_id = $1 AND (ended OR decision = 'abort')
                      AND (at_ms < (SELECT max(at_ms) FROM twopc_log.decision
                                    WHERE coordinator_id = $1) - $2
                           OR seq <= (SELECT seq FROM twopc_log.decision
                                      WHERE coordinator_id = $1 AND (ended OR decision = 'abort')
                                      ORDER BY seq DESC OFFSET $3 LIMIT 1))
                    ORDER BY seq LIMIT $4))",
                &[&coordinator, &age, &keep, &config.retention_batch],
            )
            .await?;
        deleted += n;
        if (n as i64) < config.retention_batch {
            break;
        }
    }
    Ok(deleted)
}

/// Reads the lease table (who holds which coordinator id) on a connection of its own, opened
/// on first use and again after an error.
pub struct LeaseReader {
    connector: Connector,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl LeaseReader {
    /// Every coordinator id's lease, by id.
    pub async fn list(&self) -> Result<Vec<LeaseRow>, LogError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        match lease::list(client).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                *guard = None;
                Err(db("read the coordinator leases")(e))
            }
        }
    }

    /// The outcome any coordinator logged for client txid `txid` (its own decision, or that of
    /// the last attempt of a retried transaction), as the API reports it; `None` if no
    /// coordinator's log holds it (never run, still undecided, aborted and the Abort lost —
    /// presumed abort — or deleted by retention).
    pub async fn find(&self, txid: &TxId) -> Result<Option<TransactionResponse>, LogError> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let row = client
            .query_opt(
                "SELECT coordinator_id, decision, reason, heuristics::text
                 FROM twopc_log.decision
                 WHERE txid = $1 OR client = $1
                 ORDER BY (txid = $1) DESC, seq DESC LIMIT 1",
                &[&txid.as_str()],
            )
            .await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                *guard = None;
                return Err(db("read the decision log")(e));
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let decision = match row.get::<_, &str>(1) {
            "commit" => Decision::Commit,
            _ => Decision::Abort,
        };
        let heuristics: Vec<HeuristicReport> = serde_json::from_str(row.get(3)).unwrap_or_default();
        Ok(Some(TransactionResponse {
            submitted_by: None,
            id: txid.clone(),
            outcome: Outcome::of(decision, &heuristics),
            reason: row.get(2),
            abort_class: None,
            timings: Default::default(),
            attempts: 1,
            decision: (!heuristics.is_empty()).then_some(decision),
            heuristics,
            coordinator: CoordinatorId::new(row.get::<_, String>(0)).ok(),
        }))
    }

    async fn connected<'a>(
        &self,
        guard: &'a mut Option<tokio_postgres::Client>,
    ) -> Result<&'a tokio_postgres::Client, LogError> {
        if guard.is_none() {
            *guard = Some(
                self.connector
                    .connect()
                    .await
                    .map_err(db("connect to the decision log database"))?,
            );
        }
        Ok(guard.as_ref().expect("connected above"))
    }
}
