//! The connection pool: connections logged in as the participant's role, each with its
//! session settings and its prepared-statement cache.
//!
//! At most `pool_size` connections are in use at once: a checkout beyond that waits for one to
//! come back, so a burst of transactions cannot exhaust the server's `max_connections`. A
//! quarter of them (at least one) is kept for everything but Prepare: a prepare can wait a
//! long time for a row lock, and the Commit that would release that lock must still find a
//! connection (otherwise waiting prepares could hold every connection while the holders they
//! wait for cannot commit).
//!
//! A connection found lost (the server restarted, an administrator ended the role's sessions,
//! the network dropped it) takes the idle ones with it: they are most likely victims of the
//! same event, and a dead idle connection is otherwise only found by the next transaction
//! that sends on it. The caller runs its (idempotent) work once more on a new connection, so
//! a client never sees a connection the pool should have replaced.

use crate::pg_error::{connection_lost, describe};
use crate::PgConfig;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use twopc_participant::ParticipantError;

/// Most prepared statements cached per connection before the cache is cleared.
const STATEMENT_CACHE: usize = 256;

/// A pooled connection with its prepared-statement cache: after the first use, a statement
/// costs one round trip instead of two (no Parse/Describe).
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
    /// Its session can no longer be trusted to be clean and idle: dropped, not pooled.
    pub(crate) broken: bool,
    /// The connection itself is gone (see [`connection_lost`]): dropped with the idle ones,
    /// and the work retried elsewhere.
    pub(crate) lost: bool,
    /// The backend's process id (to find its lock waits in `pg_locks`).
    pub(crate) backend_pid: i32,
    /// When the backend started, in microseconds since the epoch: with the pid, names this
    /// session and no later one that reuses the pid.
    pub(crate) backend_start_us: i64,
    /// Its place in the pool's limits while checked out.
    permits: Vec<OwnedSemaphorePermit>,
    /// Whether the extension's schema has the eight-argument `twopc.run_and_prepare()` (it
    /// lacks it while the library is upgraded and `ALTER EXTENSION ... UPDATE` has not run),
    /// and when this connection looked; unknown until the first transaction that names its
    /// client.
    pub(crate) records_submitters: Option<(bool, std::time::Instant)>,
}

/// What a connection is checked out for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Phase 1: may wait for row locks; cannot take the reserved connections.
    Prepare,
    /// Anything else (phase 2, listings): may take any connection.
    Other,
}

impl Conn {
    /// `e` as the error a participant reports, noting on the way whether it lost the
    /// connection.
    pub(crate) fn failed(&mut self, e: &tokio_postgres::Error) -> ParticipantError {
        if connection_lost(e) {
            self.lost = true;
            self.broken = true;
        }
        ParticipantError::resource(describe(e))
    }

    pub(crate) async fn statement(
        &mut self,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_opt(&st, params).await
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query(&st, params).await
    }
}

/// Idle connections kept for reuse, opened lazily.
pub(crate) struct Pool {
    cfg: PgConfig,
    idle: Mutex<Vec<Conn>>,
    /// Connections in use, at most `pool_size`.
    in_use: Arc<Semaphore>,
    /// Connections in use for prepares, at most `pool_size` less the reserve.
    preparing: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(cfg: PgConfig) -> Pool {
        let size = cfg.pool_size.max(2);
        let reserve = (size / 4).max(1);
        Pool {
            cfg,
            idle: Mutex::new(Vec::new()),
            in_use: Arc::new(Semaphore::new(size)),
            preparing: Arc::new(Semaphore::new(size - reserve)),
        }
    }

    async fn connect(&self) -> Result<Conn, ParticipantError> {
        let (client, conn) = tokio_postgres::connect(&self.cfg.conninfo, NoTls)
            .await
            .map_err(|e| {
                ParticipantError::resource(format!(
                    "cannot connect to PostgreSQL: {}",
                    describe(&e)
                ))
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // Asynchronous commit only affects this session's *ordinary* commits: the decision
        // and history bookkeeping. PREPARE TRANSACTION and COMMIT PREPARED flush the WAL
        // unconditionally (twophase.c: "nor is there any support for async commit of a
        // prepared xact"), so every YES vote and every acknowledged commit stays durable, and
        // a commit's outcome is recoverable from its tracking row anyway.
        // Timeouts are session settings so that no transaction pays for SET LOCAL statements;
        // they bound the lock waits and statements of every transaction on this connection.
        let settings = format!(
            "SET synchronous_commit = off; SET lock_timeout = {}; SET statement_timeout = {}",
            self.cfg.lock_timeout.as_millis(),
            self.cfg.statement_timeout.as_millis()
        );
        client
            .batch_execute(&settings)
            .await
            .map_err(|e| ParticipantError::resource(describe(&e)))?;
        let me = client
            .query_one(
                "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| ParticipantError::resource(describe(&e)))?;
        let (backend_pid, backend_start_us) = (me.get(0), me.get(1));
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
            lost: false,
            backend_pid,
            backend_start_us,
            permits: Vec::new(),
            records_submitters: None,
        })
    }

    /// A connection for `purpose`, reused when one is idle; waits while the pool's limit for
    /// that use is reached.
    pub(crate) async fn checkout(&self, purpose: Use) -> Result<Conn, ParticipantError> {
        let closed = |_| ParticipantError::resource("the connection pool is closed");
        let mut permits = Vec::with_capacity(2);
        if purpose == Use::Prepare {
            permits.push(
                self.preparing
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(closed)?,
            );
        }
        permits.push(self.in_use.clone().acquire_owned().await.map_err(closed)?);
        while let Some(mut c) = self.idle.lock().await.pop() {
            if !c.client.is_closed() {
                c.permits = permits;
                return Ok(c);
            }
        }
        let mut c = self.connect().await?;
        c.permits = permits;
        Ok(c)
    }

    /// Back to the pool, unless its session is in doubt or the pool is full. A lost
    /// connection empties the idle list (see the module docs).
    pub(crate) async fn checkin(&self, mut c: Conn) {
        c.permits.clear();
        if c.lost {
            let dropped = std::mem::take(&mut *self.idle.lock().await);
            if !dropped.is_empty() {
                tracing::info!(
                    "a PostgreSQL connection was lost: {} idle ones are replaced too",
                    dropped.len()
                );
            }
            return;
        }
        if c.broken || c.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().await;
        if idle.len() < self.cfg.pool_size {
            idle.push(c);
        }
    }
}
