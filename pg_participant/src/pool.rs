//! The connection pool: connections logged in as the participant's role, each with its
//! session settings and its prepared-statement cache.

use crate::pg_error::describe;
use crate::PgConfig;
use std::collections::HashMap;
use tokio::sync::Mutex;
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
}

impl Conn {
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
}

impl Pool {
    pub(crate) fn new(cfg: PgConfig) -> Pool {
        Pool {
            cfg,
            idle: Mutex::new(Vec::new()),
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
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
        })
    }

    /// A connection, reused when one is idle.
    pub(crate) async fn checkout(&self) -> Result<Conn, ParticipantError> {
        while let Some(c) = self.idle.lock().await.pop() {
            if !c.client.is_closed() {
                return Ok(c);
            }
        }
        self.connect().await
    }

    /// Back to the pool, unless its session is in doubt or the pool is full.
    pub(crate) async fn checkin(&self, c: Conn) {
        if c.broken || c.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().await;
        if idle.len() < self.cfg.pool_size {
            idle.push(c);
        }
    }
}
