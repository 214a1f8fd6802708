//! Wiring: open the decision log, recover, start the connection tasks, the driver and the
//! HTTP server; shut all of it down cleanly.
//!
//! Shutdown follows mini-redis: one broadcast channel tells every task to stop; the server
//! then waits for the driver and the HTTP server to finish. A crash (kill -9) skips all of it,
//! which is what the decision log is for.

use crate::api::{router, AppState};
use crate::config::{Config, LogKind};
use crate::conn::{self, Dial};
use crate::core::{Core, CoreConfig};
use crate::driver::{self, Command, Handle, Outboxes};
use crate::faults::Faults;
use crate::log::{DecisionLog, FileLog, LogError, LogEvent, PgLog, PgLogConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use twopc_protocol::event::EventKind;
use twopc_protocol::{CoordinatorId, ParticipantName};

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be created.
    #[error("decision log: {}: {source}", path.display())]
    DataDir {
        /// The data directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The decision log could not be opened or recovered.
    #[error("decision log: {0}")]
    Log(#[from] LogError),
    /// A certificate, key or CA file of `[api_tls]` or `[participant_tls]` is unusable.
    #[error("{section}: {source}")]
    Tls {
        /// Which section named the files.
        section: &'static str,
        /// What is wrong.
        source: twopc_tls::TlsError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running coordinator.
pub struct RunningCoordinator {
    addr: SocketAddr,
    handle: Handle,
    shutdown: broadcast::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The PostgreSQL decision log, when that is the one in use (closed at shutdown).
    pg_log: Option<Arc<PgLog>>,
    /// Commits without End found in the log at start.
    recovering: usize,
}

impl RunningCoordinator {
    /// The HTTP address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The driver handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The epoch of its lease on its id (PostgreSQL decision log only).
    pub fn lease_epoch(&self) -> Option<u64> {
        self.pg_log.as_ref().map(|l| l.epoch())
    }

    /// Transactions with a logged COMMIT and no END it found at start.
    pub fn recovering(&self) -> usize {
        self.recovering
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(pg) = self.pg_log {
            // Written out, and the id's lease released: a successor starts at once.
            pg.close().await;
        }
    }
}

/// What a coordinator instance in this process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Serves its own id: the client API, the event stream and the web app; with the
    /// PostgreSQL log it also takes over the ids of coordinators that died ([`crate::takeover`]).
    Serve,
    /// Holds another coordinator's id only to finish its transactions: no listener, no new
    /// transactions, and a lost lease stops this instance, not the process.
    Takeover,
}

/// Serves the API on `listener` until shutdown.
async fn serve_http<L>(listener: L, app: axum::Router, mut stop: broadcast::Receiver<()>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.recv().await;
    });
    if let Err(e) = serve.await {
        tracing::error!("http server: {e}");
    }
}

/// Serves the API over TLS until shutdown, each request carrying its connection's
/// [`crate::api::tls_listener::ApiPeer`] (the client certificate's name).
async fn serve_https(
    listener: crate::api::tls_listener::TlsListener,
    app: axum::Router,
    mut stop: broadcast::Receiver<()>,
) {
    let app = app.into_make_service_with_connect_info::<crate::api::tls_listener::ApiPeer>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.recv().await;
    });
    if let Err(e) = serve.await {
        tracing::error!("https server: {e}");
    }
}

/// Starts the coordinator described by `config`.
pub async fn start(config: Config) -> Result<RunningCoordinator, StartError> {
    start_as(config, Role::Serve, None).await
}

/// Starts a takeover instance. Boxed with a named type: a serving instance starts the
/// watcher that starts these, so the future types would otherwise contain themselves.
pub(crate) fn start_takeover(
    config: Config,
    by: &CoordinatorId,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<RunningCoordinator, StartError>> + Send>,
> {
    Box::pin(start_as(config, Role::Takeover, Some(by.to_string())))
}

/// Starts one coordinator instance.
/// `takeover_by`: the id of the serving coordinator that runs a takeover instance.
async fn start_as(
    config: Config,
    role: Role,
    takeover_by: Option<String>,
) -> Result<RunningCoordinator, StartError> {
    config.validate()?;
    let known = config.client_names();
    let clients = Arc::new(crate::clients::Clients::from_config(
        &config.clients,
        &known,
    )?);
    let config = Arc::new(config);
    // TLS material is read before anything else starts: a bad file stops the start-up here.
    let participant_tls = match &config.participant_tls {
        None => None,
        Some(files) => Some(
            twopc_tls::client_config(files).map_err(|source| StartError::Tls {
                section: "[participant_tls]",
                source,
            })?,
        ),
    };
    let api_tls = match (&config.api_tls, role) {
        (Some(files), Role::Serve) => Some(
            twopc_tls::server_config_with(
                files,
                &[b"h2", b"http/1.1"],
                twopc_tls::ClientCerts::Optional,
            )
            .map_err(|source| StartError::Tls {
                section: "[api_tls]",
                source,
            })?,
        ),
        _ => None,
    };
    // Bound first, so the lease can name the address clients reach this coordinator at.
    let (listener, addr) = match role {
        Role::Serve => {
            let listener =
                tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: config.listen,
                        source,
                    })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
            (Some(listener), addr)
        }
        Role::Takeover => (None, config.listen),
    };
    let (log, pg_log): (Arc<dyn DecisionLog>, Option<Arc<PgLog>>) = match config.decision_log.kind {
        LogKind::File => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
            let log = FileLog::open(&config.data_dir, crate::log::FileLogConfig::default())?;
            (Arc::new(log), None)
        }
        LogKind::Postgres => {
            let dl = &config.decision_log;
            let mut pg = PgLogConfig::new(dl.resolve_url()?, config.coordinator_id.as_str());
            if role == Role::Serve {
                let scheme = if api_tls.is_some() { "https" } else { "http" };
                pg.address = format!("{scheme}://{addr}");
            } else {
                // A takeover claims an expired lease or none: never waits for a live holder.
                pg.lease_wait = Some(Duration::ZERO);
                pg.holder_id = takeover_by.clone();
            }
            pg.allow_plain_text_off_loopback = config.allow_plain_text_off_loopback;
            pg.lease_ttl = Duration::from_millis(dl.lease_ttl_ms);
            pg.lease_renew = Duration::from_millis(dl.lease_renew_ms);
            let log = Arc::new(PgLog::open(pg).await?);
            (log.clone(), Some(log))
        }
    };
    let state = log.recover()?;
    let recovering = state.pending.len();
    if let Some(t) = &state.torn_tail {
        tracing::warn!("decision log had a torn tail, truncated: {t:?}");
    }
    tracing::info!(
        pending = state.pending.len(),
        outcomes = state.outcomes.len(),
        "decision log recovered"
    );

    let mut tokens = HashMap::new();
    for p in &config.participants {
        tokens.insert(p.name.clone(), p.resolve_token()?);
    }

    let (shutdown, _) = broadcast::channel(1);
    let faults = Arc::new(Faults::new(config.fault_injection));
    let mut core_cfg = CoreConfig::new(config.coordinator_id.clone());
    core_cfg.prepare_timeout_ms = config.prepare_timeout_ms;
    core_cfg.retry_base_ms = config.retry_base_ms;
    core_cfg.retry_max_ms = config.retry_max_ms;
    core_cfg.ack_wait_ms = config.ack_wait_ms;
    core_cfg.conflict_retry = config.conflict_retry();
    core_cfg.ordered_prepare = config.ordered_prepare;
    core_cfg.parallel_when_idle = config.parallel_prepare_when_idle;
    core_cfg.parallel_hold_ms = config.parallel_prepare_hold_ms;
    core_cfg.epoch = pg_log.as_ref().map(|l| l.epoch());
    let core = Core::new(core_cfg);

    let mut outboxes: Outboxes = HashMap::new();
    let mut inboxes = Vec::new();
    for p in &config.participants {
        let (tx, rx) = mpsc::channel(65_536);
        outboxes.insert(p.name.clone(), tx);
        inboxes.push((p.clone(), rx));
    }
    let names: Vec<ParticipantName> = config.participants.iter().map(|p| p.name.clone()).collect();
    let (handle, driver_task) = driver::spawn(
        core,
        state,
        log.clone(),
        outboxes,
        names,
        faults.clone(),
        config.event_buffer,
        shutdown.subscribe(),
    );
    let mut tasks = vec![driver_task];

    // Log writes and fsyncs go to the event stream (the log lane of the web app).
    {
        let mut log_events = log.subscribe();
        let driver_tx = handle.sender();
        let mut stop = shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = log_events.recv() => ev,
                    _ = stop.recv() => return,
                };
                let (txid, kind) = match ev {
                    Ok(LogEvent::Write { kind, txid, lsn }) => {
                        (txid, EventKind::LogWrite { record: kind, lsn })
                    }
                    Ok(LogEvent::Fsync { records, micros }) => {
                        (None, EventKind::LogFsync { records, micros })
                    }
                    Ok(LogEvent::Checkpoint { .. }) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if driver_tx.send(Command::Event { txid, kind }).await.is_err() {
                    return;
                }
            }
        }));
    }

    let dial_errors = Arc::new(conn::DialErrors::default());
    for (p, rx) in inboxes {
        let dial = Dial {
            token: tokens.remove(&p.name).unwrap_or_default(),
            name: p.name,
            url: p.url,
            tls: participant_tls.clone(),
            heartbeat: Duration::from_millis(config.heartbeat_ms),
        };
        tasks.push(tokio::spawn(conn::run(
            dial,
            rx,
            handle.sender(),
            faults.clone(),
            dial_errors.clone(),
            shutdown.subscribe(),
        )));
    }

    // One reader of the lease table, for `GET /v1/coordinators`, lookups of other
    // coordinators' transactions and the takeover watcher (a serving coordinator's only).
    let leases = match (role, &pg_log) {
        (Role::Serve, Some(pg)) => Some(Arc::new(pg.lease_reader())),
        _ => None,
    };
    if let Some(listener) = listener {
        let app = router(AppState {
            handle: handle.clone(),
            config: config.clone(),
            faults,
            subscribers: Arc::new(crate::api::Subscribers::default()),
            pg_log: pg_log.clone(),
            leases: leases.clone(),
            clients: clients.clone(),
            dial_errors,
        });
        let stop = shutdown.subscribe();
        tasks.push(match api_tls {
            None => tokio::spawn(serve_http(listener, app, stop)),
            Some(tls) => {
                let listener = crate::api::tls_listener::TlsListener::new(listener, tls)
                    .map_err(|source| StartError::Bind { addr, source })?;
                tokio::spawn(serve_https(listener, app, stop))
            }
        });
    }
    if let Some(pg) = &pg_log {
        let lost = pg.lease_lost();
        let mut stop = shutdown.subscribe();
        let stop_all = shutdown.clone();
        let id = config.coordinator_id.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                why = lost => match role {
                    // A coordinator that lost its id's lease must not go on serving it: it
                    // could no longer log a decision anyway (every write is fenced), and
                    // another coordinator now drives its transactions. Halt as after a
                    // failed COMMIT append.
                    Role::Serve => {
                        tracing::error!("decision log lease lost: {why}");
                        eprintln!("twopc coordinator halting: {why}");
                        std::process::abort();
                    }
                    // Someone else holds the id now; this instance has nothing more to do.
                    Role::Takeover => {
                        tracing::warn!("takeover of coordinator id {id} ends: {why}");
                        let _ = stop_all.send(());
                    }
                },
                _ = stop.recv() => {}
            }
        }));
    }
    if let Some(reader) = leases {
        tasks.push(tokio::spawn(crate::takeover::watch(
            (*config).clone(),
            reader,
            handle.clone(),
            shutdown.subscribe(),
        )));
    }
    if role == Role::Serve {
        tracing::info!(%addr, "coordinator {} listening", config.coordinator_id);
    }
    Ok(RunningCoordinator {
        addr,
        handle,
        shutdown,
        tasks,
        pg_log,
        recovering,
    })
}
