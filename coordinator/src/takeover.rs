//! Taking over the id of a coordinator that died.
//!
//! With the PostgreSQL decision log, every coordinator id is a lease in the log database
//! ([`crate::log::PgLog`]). A coordinator that crashes, is paused or loses its network stops
//! renewing; its lease expires by the database's clock. Its prepared transactions would then
//! hold their row and key locks until it came back, the one real weakness of two-phase
//! commit. So every serving coordinator watches the lease table ([`watch`]) and, when an id's
//! lease has expired without being released, starts a **takeover instance** for it in this
//! process: an ordinary coordinator core for that id, with its own participant connections and
//! the id's lease claimed at the next epoch, but no client API
//! (`Role::Takeover` in [`crate::server`]). Claiming is a conditional update, so of several
//! survivors exactly one wins (DTM claims overdue transactions the same way).
//!
//! The instance does what a restarted coordinator does, because it *is* one: it reads the
//! id's decisions after its claim (so it sees every COMMIT its predecessor wrote, and the
//! predecessor can write none after it: fencing), sends Commit for every logged COMMIT without
//! END, and aborts every transaction a participant reports prepared under the id with no
//! logged COMMIT (presumed abort). Participants route DecisionRequests for the id to whoever
//! answers for it; every other coordinator answers `pending`.
//!
//! When the id has nothing left (no transaction, nothing prepared for it at any participant,
//! twice in a row, and at least a prepare timeout after the claim, so a Prepare the dead
//! holder sent just before it died has settled), the instance closes its log, which marks the
//! lease released: the id's own coordinator, when it comes back, claims it at once. A released
//! lease is taken over again only if a participant asks about one of its transactions (a
//! Prepare that reached a participant after all), so idle ids of stopped coordinators do not
//! change hands forever.
//!
//! Recovery of a taken-over id runs beside this coordinator's own work and never blocks it:
//! separate core, separate connections, separate lease (Citus #1669). Only its transaction
//! events cross over: they are published on the serving coordinator's event stream, marked
//! `on_behalf_of` the id ([`Handle::forward_events_to`]), so its web page draws what the
//! takeover finishes.

use crate::config::Config;
use crate::driver::{Command, Handle};
use crate::log::{LeaseReader, LogError};
use crate::server::{start_takeover, StartError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};
use twopc_protocol::event::EventKind;
use twopc_protocol::CoordinatorId;

/// Takeover instances this process started (`twopc_takeovers_total`).
pub(crate) static TAKEOVERS: AtomicU64 = AtomicU64::new(0);
/// Takeover instances running now (`twopc_takeovers_active`).
pub(crate) static TAKEOVERS_ACTIVE: AtomicU64 = AtomicU64::new(0);

/// Watches every coordinator id's lease and takes over those whose holder died, until
/// `shutdown`.
pub(crate) async fn watch(
    config: Config,
    reader: std::sync::Arc<LeaseReader>,
    handle: Handle,
    mut shutdown: broadcast::Receiver<()>,
) {
    let interval = Duration::from_millis(config.decision_log.lease_renew_ms);
    let (stop_all, _) = broadcast::channel::<()>(1);
    let mut running: HashMap<CoordinatorId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.recv() => break,
        }
        running.retain(|_, t| !t.is_finished());
        let asked = handle.take_foreign_asks();
        let rows = match reader.list().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("cannot read the coordinator leases: {e}");
                continue;
            }
        };
        for row in rows {
            let id = row.coordinator.clone();
            if id == config.coordinator_id || row.live() || running.contains_key(&id) {
                continue;
            }
            if row.released && !asked.contains(&id) {
                continue;
            }
            tracing::info!(
                "coordinator id {id}: lease expired {} ms ago (holder {}, epoch {}){}; taking it over",
                -row.expires_in_ms,
                row.holder,
                row.epoch,
                if row.released { ", asked about by a participant" } else { "" }
            );
            running.insert(
                id.clone(),
                tokio::spawn(take_over(
                    config.clone(),
                    id,
                    handle.clone(),
                    stop_all.subscribe(),
                )),
            );
        }
    }
    let _ = stop_all.send(());
    for (_, t) in running {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
}

/// Runs a takeover instance for `id` until the id has nothing left to do (or `stop`); tells
/// the event stream of the serving coordinator (`serving`) when it starts and ends.
async fn take_over(
    config: Config,
    id: CoordinatorId,
    serving: Handle,
    mut stop: broadcast::Receiver<()>,
) {
    let own = config.coordinator_id.clone();
    let prepare_timeout = Duration::from_millis(config.prepare_timeout_ms);
    let mut cfg = config;
    cfg.coordinator_id = id.clone();
    cfg.fault_injection = false;
    cfg.web_dir = None;
    let instance = match start_takeover(cfg, &own).await {
        Ok(i) => i,
        // Another survivor claimed it first (or its holder came back): nothing to do.
        Err(StartError::Log(LogError::LeaseHeld { .. })) => return,
        Err(e) => {
            tracing::warn!("cannot take over coordinator id {id}: {e}");
            return;
        }
    };
    tracing::info!("coordinator {own} holds coordinator id {id} now and finishes its transactions");
    TAKEOVERS.fetch_add(1, Ordering::Relaxed);
    TAKEOVERS_ACTIVE.fetch_add(1, Ordering::Relaxed);
    let epoch = instance.lease_epoch().unwrap_or(0);
    instance.handle().forward_events_to(&serving);
    serving
        .send(Command::Event {
            txid: None,
            kind: EventKind::Takeover {
                coordinator: id.to_string(),
                epoch,
                recovering: instance.recovering() as u32,
            },
        })
        .await;
    let claimed = Instant::now();
    let mut settled_in_a_row = 0;
    let mut finished = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.recv() => break,
        }
        let (reply, answer) = oneshot::channel();
        if !instance.handle().send(Command::Settled { reply }).await {
            break; // the instance stopped (its lease went to someone else)
        }
        match answer.await {
            Ok(true) => settled_in_a_row += 1,
            Ok(false) => settled_in_a_row = 0,
            Err(_) => break,
        }
        if settled_in_a_row >= 2 && claimed.elapsed() >= prepare_timeout {
            tracing::info!(
                "coordinator id {id} has nothing left to do after {} ms; releasing it",
                claimed.elapsed().as_millis()
            );
            finished = true;
            break;
        }
    }
    instance.shutdown().await;
    TAKEOVERS_ACTIVE.fetch_sub(1, Ordering::Relaxed);
    if !finished {
        return;
    }
    serving
        .send(Command::Event {
            txid: None,
            kind: EventKind::TakeoverEnded {
                coordinator: id.to_string(),
                epoch,
            },
        })
        .await;
}
